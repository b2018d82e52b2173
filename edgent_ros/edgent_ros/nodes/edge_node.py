"""edge_node: the PC side of co-inference.

Subscribes ``tensor`` (activations from one or more devices, told apart by
their ``source_id``), checks each against the model (exit and partition in
range, shape, data type, finite values), runs layers [p, N) of the exit, and
replies on ``reply`` with the top-k classes and the time the tensor spent
here. A malformed tensor is logged (rate-limited), counted in /diagnostics
and dropped; the node keeps serving.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque

import torch
from diagnostic_msgs.msg import DiagnosticArray

from edgent_ros import diagnostics, tensor_codec
from edgent_ros import model as m
from edgent_ros.inference import ActivationError, CoInferenceModel, top_k
from edgent_ros.nodes.params import MODEL, THREADS, ParamSchema, ParamSpec
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, Tensor

# Bounds on what spoofed tensors can make the edge hold: devices counted by
# name (others in one figure), and the length of a device's name.
MAX_SOURCES = 32
MAX_ID_CHARS = 128


PARAMS = ParamSchema(
    MODEL,
    THREADS,
    ParamSpec('top_k', 3, 'Classes sent back per tensor (from the next tensor).', 1, 1000),
)


class EdgeNode(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('edge', **kwargs)
        p = PARAMS.attach(self, {'top_k': lambda k: setattr(self, 'top_k', int(k))})
        model, threads, self.top_k = p['model'], p['threads'], p['top_k']
        torch.set_num_threads(threads)
        net, card = m.load(m.resolve_model_path(model))
        self.model = CoInferenceModel(net, card)
        self.model.warm_up()
        self.served = diagnostics.BoundedCounts(MAX_SOURCES)
        self.malformed = 0
        self.malformed_why: Counter[str] = Counter()
        self.compute_ms: deque[float] = deque(maxlen=200)
        self.reply_pub = self.create_publisher(EdgeReply, 'reply', TENSOR_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(Tensor, 'tensor', self.on_tensor, TENSOR_QOS)
        self.create_timer(1.0, self.publish_diagnostics)
        self.get_logger().info(f'serving model {card.name}')

    def on_tensor(self, msg: Tensor) -> None:
        start = time.perf_counter()
        try:
            if len(msg.source_id) > MAX_ID_CHARS:
                raise tensor_codec.TensorCodecError(
                    f'source_id of {len(msg.source_id)} characters (at most {MAX_ID_CHARS})')
            array = tensor_codec.from_msg(msg)
            self.model.check_activation(msg.exit_point, msg.partition_point, array)
            compute_start = time.perf_counter()
            logits = self.model.tail(msg.exit_point, msg.partition_point,
                                     torch.from_numpy(array.copy()))
            compute_ms = (time.perf_counter() - compute_start) * 1e3
            result = top_k(logits, self.top_k)
        except (tensor_codec.TensorCodecError, ActivationError) as exc:
            self.malformed += 1
            self.malformed_why[type(exc).__name__] += 1
            self.get_logger().error(
                f"dropping tensor {msg.frame_seq} from '{msg.source_id[:64]}': {exc}",
                throttle_duration_sec=5.0)
            return
        reply = EdgeReply()
        reply.header = msg.header
        reply.frame_seq = msg.frame_seq
        reply.source_id = msg.source_id
        reply.plan_id = msg.plan_id
        reply.exit_point = msg.exit_point
        reply.partition_point = msg.partition_point
        reply.top_k_class_ids = result.class_ids
        reply.top_k_scores = result.scores
        reply.received_bytes = len(msg.data)
        reply.edge_compute_ms = compute_ms
        reply.edge_total_ms = (time.perf_counter() - start) * 1e3
        self.reply_pub.publish(reply)
        self.served.add(msg.source_id)
        self.compute_ms.append(compute_ms)

    def publish_diagnostics(self) -> None:
        values: dict[str, object] = {
            'callback_errors': self.callback_errors,
            'tensors_served': self.served.total, 'devices': len(self.served.counts),
            'served_from_sources_over_limit': self.served.over_limit,
            'malformed': self.malformed,
            'compute_ms_median': statistics.median(self.compute_ms) if self.compute_ms else 0.0,
        }
        values.update({f'served[{k}]': v for k, v in self.served.counts.items()})
        values.update({f'malformed[{k}]': v for k, v in self.malformed_why.items()})
        level = diagnostics.WARN if self.malformed else diagnostics.OK
        text = f'{self.malformed} malformed tensors dropped' if self.malformed else 'serving'
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: co-inference', level,
                               text, values)))


def main(args: list[str] | None = None) -> int:
    return run_node(EdgeNode, args, refused=(m.ModelError, ValueError))


if __name__ == '__main__':
    raise SystemExit(main())

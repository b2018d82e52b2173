"""edge_node: the PC side of co-inference.

Subscribes ``tensor`` (activations from one or more devices, told apart by
their ``source_id``), checks each against the model (exit and partition in
range, shape, data type, finite values), runs layers [p, N) of the exit, and
replies on ``reply`` with the top-k classes and the time the tensor spent
here. A malformed tensor is logged (rate-limited), counted in /diagnostics
and dropped; the node keeps serving.

A tensor may come coded (``Tensor.codec``, edgent_ros.payload_codec): it is
decoded to what the model expects before the checks and the tail run. The
edge listens to the devices' plans (``plan``) and remembers the last
``KEEP_PLANS`` of them: a tensor of a known plan must come as that plan
codes it, or lossless (raw anywhere: what the device sends when its codec
cannot code a frame; pixels of the input: what its trials send). A codec
that cannot code the partition, one the plan did not ask for, or a payload
that does not decode to exactly what the model expects is refused, counted
by reason (``malformed[codec_invalid]``, ``malformed[codec_unplanned]``,
``malformed[codec_payload]``).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, OrderedDict, deque

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray

from edgent_ros import codec_names, diagnostics, payload_codec, tensor_codec
from edgent_ros import model as m
from edgent_ros.inference import ActivationError, CoInferenceModel, top_k
from edgent_ros.nodes.params import MODEL, THREADS, ParamSchema, ParamSpec
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, Plan, Tensor

# Bounds on what spoofed tensors can make the edge hold: devices counted by
# name (others in one figure), and the length of a device's name.
MAX_SOURCES = 32
MAX_ID_CHARS = 128
# Plans remembered (partition and codec by plan_id), the newest.
KEEP_PLANS = 16
# What a plan's codec is remembered as when it is no codec at all.
NOT_A_CODEC = '?'
# Input codecs that decode to pixels (raw carries the network's input itself).
PIXEL_CODECS = tuple(c for c in codec_names.INPUT_CODECS if c != codec_names.RAW)


class CodecRefusedError(ValueError):
    """A coded tensor the edge does not run; ``reason`` is its diagnostics key."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def effective_codec(codec: str, partition: int, num_layers: int) -> str:
    """A codec as named in a Plan or Tensor: empty is raw where something
    crosses (a planner or device from before codecs), none on a device-only plan."""
    if not codec and partition < num_layers:
        return codec_names.RAW
    return codec


def lossless_at(codec: str, partition: int) -> bool:
    """Whether ``codec`` loses nothing of what crosses at ``partition``: raw
    anywhere, pixels of the input at 0. The edge takes these under any plan."""
    return codec == codec_names.RAW or (partition == 0 and codec == codec_names.PIXELS)


def unplanned(planned: tuple[int, str] | None, partition: int, codec: str) -> str | None:
    """Why a tensor at ``partition`` coded ``codec`` contradicts its plan
    (``planned``: the plan's partition and codec; None: plan not known), or None."""
    if planned is None or (partition, codec) == planned or lossless_at(codec, partition):
        return None
    plan_partition, plan_codec = planned
    return (f'codec {codec[:32]!r} at partition {partition}, but its plan sends '
            f'{plan_codec!r} at partition {plan_partition}')


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
        self.layers = {e.exit_point: e.num_layers for e in card.exits}
        self.served = diagnostics.BoundedCounts(MAX_SOURCES)
        self.served_codec: Counter[str] = Counter()  # keys: codec_names.CODECS
        self.malformed = 0
        self.malformed_why: Counter[str] = Counter()
        # plan_id -> (partition, codec) of the last KEEP_PLANS plans heard
        self.plans: OrderedDict[int, tuple[int, str]] = OrderedDict()
        self.compute_ms: deque[float] = deque(maxlen=200)
        self.reply_pub = self.create_publisher(EdgeReply, 'reply', TENSOR_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)
        self.create_subscription(Tensor, 'tensor', self.on_tensor, TENSOR_QOS)
        self.create_timer(1.0, self.publish_diagnostics)
        self.get_logger().info(f'serving model {card.name}')

    def on_plan(self, plan: Plan) -> None:
        """Remember how a plan codes its upload (the newest KEEP_PLANS plans)."""
        partition = int(plan.partition_point)
        codec = effective_codec(plan.codec, partition, int(plan.num_layers))
        if codec and codec not in codec_names.CODECS:
            codec = NOT_A_CODEC  # bounded: no long string kept
        self.plans[int(plan.plan_id)] = (partition, codec)
        self.plans.move_to_end(int(plan.plan_id))
        while len(self.plans) > KEEP_PLANS:
            self.plans.popitem(last=False)

    def decode(self, msg: Tensor) -> tuple[np.ndarray, str]:
        """The network's activation a tensor carries, float32 as the model
        takes it at its partition, and the codec it came in; CodecRefusedError,
        TensorCodecError or ActivationError if it is not one to run."""
        exit_point, partition = int(msg.exit_point), int(msg.partition_point)
        if not 1 <= exit_point <= self.model.num_exits:
            raise ActivationError(f'exit point {exit_point} is outside 1..{self.model.num_exits}')
        n = self.layers[exit_point]
        if not 0 <= partition < n:
            raise ActivationError(f'partition point {partition} is outside 0..{n - 1} for '
                                  f'exit {exit_point} (the edge runs at least one layer)')
        codec = effective_codec(msg.codec, partition, n)
        if not codec_names.valid_at(codec, partition, n):
            shown = codec if len(codec) <= 32 else f'{codec[:32]}...'  # the log stays short
            raise CodecRefusedError('codec_invalid', str(codec_names.codec_problem(
                shown, partition, n)))
        why = unplanned(self.plans.get(int(msg.plan_id)), partition, codec)
        if why is not None:
            raise CodecRefusedError('codec_unplanned', f'plan {msg.plan_id}: {why}')
        if codec == codec_names.RAW:
            if len(msg.channel_scales) or len(msg.channel_zero_points):
                raise tensor_codec.TensorCodecError('channel scales on a raw tensor')
            return tensor_codec.from_msg(msg), codec
        try:
            if partition > 0:
                array = tensor_codec.coded_from_msg(
                    msg, self.model.expected_shape(exit_point, partition),
                    allowed=codec_names.ACTIVATION_CODECS)
            else:
                card = self.model.card
                rgb = tensor_codec.coded_from_msg(
                    msg, (card.input_shape[1], card.input_shape[2], 3), allowed=PIXEL_CODECS)
                array = payload_codec.normalise(rgb, card.mean, card.std)
        except tensor_codec.TensorCodecError as exc:
            raise CodecRefusedError('codec_payload', f'{codec}: {exc}') from None
        return array, codec

    def on_tensor(self, msg: Tensor) -> None:
        start = time.perf_counter()
        try:
            if len(msg.source_id) > MAX_ID_CHARS:
                raise tensor_codec.TensorCodecError(
                    f'source_id of {len(msg.source_id)} characters (at most {MAX_ID_CHARS})')
            array, codec = self.decode(msg)
            self.model.check_activation(msg.exit_point, msg.partition_point, array)
            compute_start = time.perf_counter()
            x = torch.from_numpy(array if array.flags.writeable else array.copy())
            logits = self.model.tail(msg.exit_point, msg.partition_point, x)
            compute_ms = (time.perf_counter() - compute_start) * 1e3
            result = top_k(logits, self.top_k)
        except (CodecRefusedError, tensor_codec.TensorCodecError, ActivationError) as exc:
            self.malformed += 1
            self.malformed_why[getattr(exc, 'reason', type(exc).__name__)] += 1
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
        self.served_codec[codec] += 1
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
        values.update({f'served_codec[{k}]': v for k, v in self.served_codec.items()})
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

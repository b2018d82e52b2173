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
``malformed[codec_payload]``). Plans are told apart by device: besides
``plan``, the edge listens to ``<source_id>/plan`` of each device it serves
whose id is its namespace (the default), at most ``MAX_SOURCES`` of them.

Several devices may share the edge (``edgent_ros.edge_service``). A tensor
that passes the checks waits in its source's queue (``queue_per_source``
long; a full one answers the newest busy); a thread of its own computes
them earliest deadline first (``Tensor.deadline_ms``), answers at once as
late the ones that can no longer meet their deadline, and runs tensors of
the same (exit, partition, codec) as one batch when that is measured to be
faster (``max_batch``, ``batch_window_ms``). ``rate_limit_hz`` and
``allowed_sources`` keep one publisher from starving the rest: what they
refuse is dropped unanswered and counted. The edge's load (queue, busy
share, wait, service time per configuration) goes out on ``edge_load``
(transient local) every ``load_period_s`` and at once on a big change.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidNamespaceException, InvalidTopicNameException
from std_msgs.msg import Header

from edgent_ros import codec_names, diagnostics, payload_codec, tensor_codec
from edgent_ros import edge_service as es
from edgent_ros import model as m
from edgent_ros import torch_device as td
from edgent_ros.inference import ActivationError, CoInferenceModel, TopK, top_k
from edgent_ros.nodes.params import MODEL, THREADS, ParamSchema, ParamSpec, Value
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeLoad, EdgeReply, Plan, Tensor

# Bounds on what spoofed tensors can make the edge hold: devices counted by
# name (others in one figure), and the length of a device's name.
MAX_SOURCES = 32
MAX_ID_CHARS = 128
# Plans remembered per device (partition and codec by plan_id), the newest.
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


def sources_problem(value: str) -> str | None:
    names = [s.strip() for s in value.split(',') if s.strip()]
    long = [n for n in names if len(n) > MAX_ID_CHARS]
    if long:
        return f'allowed_sources: a source id is {len(long[0])} characters (at most {MAX_ID_CHARS})'
    if len(names) > MAX_SOURCES:
        return f'allowed_sources: {len(names)} sources (at most {MAX_SOURCES})'
    return None


def parse_sources(value: str) -> list[str]:
    return [s.strip() for s in str(value).split(',') if s.strip()]


PARAMS = ParamSchema(
    MODEL,
    THREADS,
    ParamSpec('top_k', 3, 'Classes sent back per tensor (from the next tensor).', 1, 1000),
    ParamSpec('service', 'edf',
              'How queued tensors are served: edf (earliest deadline first; one that can no '
              'longer meet its deadline is answered late at once, not computed) or fifo '
              '(arrival order, every one computed).', choices=es.SERVICES),
    ParamSpec('queue_per_source', 4,
              'Tensors held per source (device) waiting for the edge; a full queue answers '
              'the newest busy (the device answers it alone).', 1, 1000),
    ParamSpec('rate_limit_hz', 0.0,
              'Most tensors per second taken from one source (a burst of as many, at least '
              'one); more are dropped unanswered and counted (rate_limited). 0: no limit.',
              0.0, 100000.0),
    ParamSpec('allowed_sources', '',
              'Comma-separated source_ids served (device namespaces, e.g. /robot1,/robot2); '
              'tensors of any other are dropped unanswered and counted (not_allowed). Empty: '
              'every source. Not security: DDS Security (SROS 2) is that.',
              check=lambda v: sources_problem(str(v))),
    ParamSpec('max_batch', 8,
              'Most tensors of the same exit, partition and codec run as one batch (1: never '
              'batch). A batch size is used only while measured faster per frame than one '
              'by one.', 1, 256),
    ParamSpec('batch_window_ms', 0.0,
              'How long the first tensor of a batch may wait for more of its kind, ms (only '
              'while its deadline allows); 0: batch only what is already queued.',
              0.0, 1000.0),
    ParamSpec('torch_device', 'auto',
              'Where the tails run: auto (a CUDA GPU when torch sees one, else the CPU), cpu, '
              'or cuda (refused at start where there is none).', choices=td.CHOICES,
              read_only=True),
    ParamSpec('emulated_slowdown', 1.0,
              'Testbeds only: run the tails this many times slower than this machine, to '
              'emulate a smaller edge (as the device node\'s); 1 = off.', 1.0, 100000.0,
              read_only=True),
    ParamSpec('load_period_s', 1.0,
              'Period of edge_load, s (it also goes at once, at most 10 times a second, on '
              'a big change).', 0.1, 60.0, read_only=True),
)
# How often the load is looked at for a big change, s.
LOAD_CHECK_S = 0.1


@dataclass
class Work:
    """What a queued tensor's reply needs (es.Job.payload)."""

    msg: Tensor  # the tensor, its data dropped once decoded
    array: np.ndarray
    codec: str
    nbytes: int


class EdgeNode(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('edge', **kwargs)
        p = PARAMS.attach(self, {
            'top_k': lambda k: setattr(self, 'top_k', int(k)),
            'service': lambda v: self.configure(service=str(v)),
            'queue_per_source': lambda v: self.configure(queue_per_source=int(v)),
            'rate_limit_hz': lambda v: self.configure(rate_hz=float(v)),
            'allowed_sources': self.set_allowed,
            'max_batch': lambda v: self.configure(max_batch=int(v)),
            'batch_window_ms': lambda v: self.configure(batch_window_s=float(v) / 1e3),
        })
        model, threads, self.top_k = p['model'], p['threads'], p['top_k']
        torch.set_num_threads(threads)
        net, card = m.load(m.resolve_model_path(model))
        device = td.resolve(str(p['torch_device']))  # ValueError: refused, saying why
        self.model = CoInferenceModel(net, card, device=device,
                                      slowdown=float(p['emulated_slowdown']))
        self.model.warm_up()
        self.device_text = td.describe(device)
        self.layers = {e.exit_point: e.num_layers for e in card.exits}
        self.lock = threading.Condition()
        self.scheduler = es.EdgeScheduler(
            service=str(p['service']), queue_per_source=int(p['queue_per_source']),
            rate_hz=float(p['rate_limit_hz']), allowed=parse_sources(str(p['allowed_sources'])),
            max_sources=MAX_SOURCES, max_batch=int(p['max_batch']),
            batch_window_s=float(p['batch_window_ms']) / 1e3)
        self.publishing = es.LoadPublishing(float(p['load_period_s']), LOAD_CHECK_S)
        self.served = diagnostics.BoundedCounts(MAX_SOURCES)
        self.served_codec: Counter[str] = Counter()  # keys: codec_names.CODECS
        self.malformed = 0
        self.malformed_why: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # es.Admit values, 'late', 'serve_errors'
        self.batches: Counter[int] = Counter()  # batch size -> batches
        # source -> plan_id -> (partition, codec) of its last KEEP_PLANS plans
        self.plans: dict[str, OrderedDict[int, tuple[int, str]]] = {}
        self.plan_subs: dict[str, object] = {}
        self.compute_ms: deque[float] = deque(maxlen=200)
        self.stopping = False
        self.reply_pub = self.create_publisher(EdgeReply, 'reply', TENSOR_QOS)
        self.load_pub = self.create_publisher(EdgeLoad, 'edge_load', LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        plan_topic = self.resolve_topic_name('plan')
        # The plans on `plan` are the device's whose namespace holds that topic.
        self.plan_key = plan_topic.rpartition('/')[0] or '/'
        self.plan_subs[self.plan_key] = self.create_subscription(
            Plan, 'plan', lambda msg, t=plan_topic: self.on_plan(msg, t), LATCHED_QOS)
        self.create_subscription(Tensor, 'tensor', self.on_tensor, TENSOR_QOS)
        self.create_timer(1.0, self.publish_diagnostics)
        self.create_timer(LOAD_CHECK_S, self.publish_load)
        self.worker = threading.Thread(target=self.serve, name='edge-serve', daemon=True)
        self.worker.start()
        self.get_logger().info(f'serving model {card.name} (tails on {self.device_text})')

    # --- parameters at run time ----------------------------------------------------
    def configure(self, **settings: object) -> None:
        with self.lock:
            for name, value in settings.items():
                if name == 'rate_hz':
                    self.scheduler.set_rate(float(value))
                else:
                    setattr(self.scheduler, name, value)
            self.lock.notify()

    def set_allowed(self, value: Value) -> None:
        with self.lock:
            dropped = self.scheduler.set_allowed(parse_sources(str(value)))
            self.refused['not_allowed'] += len(dropped)  # under the lock already

    def count(self, what: str) -> None:
        """Count a tensor not served; the executor and the serving thread both do."""
        with self.lock:
            self.refused[what] += 1

    def destroy_node(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.worker.join(timeout=5.0)
        super().destroy_node()

    # --- plans -----------------------------------------------------------------------
    def on_plan(self, plan: Plan, topic: str) -> None:
        """Remember how a device's plan codes its upload (its newest KEEP_PLANS plans)."""
        partition = int(plan.partition_point)
        codec = effective_codec(plan.codec, partition, int(plan.num_layers))
        if codec and codec not in codec_names.CODECS:
            codec = NOT_A_CODEC  # bounded: no long string kept
        plans = self.plans.setdefault(topic.rpartition('/')[0] or '/', OrderedDict())
        plans[int(plan.plan_id)] = (partition, codec)
        plans.move_to_end(int(plan.plan_id))
        while len(plans) > KEEP_PLANS:
            plans.popitem(last=False)

    def follow_plans(self, source: str) -> None:
        """Listen to ``<source>/plan`` for a device first served: plan ids are
        each device's own, so the edge must know whose plan a tensor names."""
        if source in self.plan_subs or len(self.plan_subs) > MAX_SOURCES or \
                not source.startswith('/'):
            return
        topic = f'{source.rstrip("/")}/plan'
        try:
            self.plan_subs[source] = self.create_subscription(
                Plan, topic, lambda msg, t=topic: self.on_plan(msg, t), LATCHED_QOS)
        except (InvalidTopicNameException, InvalidNamespaceException):  # its plans stay unknown
            self.plan_subs[source] = None

    def planned(self, source: str, plan_id: int) -> tuple[int, str] | None:
        """The partition and codec of a source's plan, if known. A source whose
        own plans were never heard takes those on ``plan`` (one device whose
        source_id is not its namespace)."""
        plans = self.plans.get(source.rstrip('/') or '/')
        if plans is None:
            plans = self.plans.get(self.plan_key, {})
        return plans.get(plan_id)

    # --- tensors in --------------------------------------------------------------------
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
        why = unplanned(self.planned(msg.source_id, int(msg.plan_id)), partition, codec)
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
        """Check a tensor and queue it for the serving thread (or answer it at
        once: late already, its queue full)."""
        now = time.monotonic()
        try:
            if len(msg.source_id) > MAX_ID_CHARS:
                raise tensor_codec.TensorCodecError(
                    f'source_id of {len(msg.source_id)} characters (at most {MAX_ID_CHARS})')
            if math.isnan(msg.deadline_ms):
                raise tensor_codec.TensorCodecError('deadline_ms is NaN')
            with self.lock:
                admit = self.scheduler.admit(msg.source_id, now)
            if admit is not es.Admit.OK:
                self.count(admit.value)
                self.get_logger().warning(
                    f"dropping tensors from '{msg.source_id[:64]}': {admit.value}",
                    throttle_duration_sec=5.0)
                return
            self.follow_plans(msg.source_id)
            array, codec = self.decode(msg)
            self.model.check_activation(msg.exit_point, msg.partition_point, array)
        except (CodecRefusedError, tensor_codec.TensorCodecError, ActivationError) as exc:
            self.malformed += 1
            self.malformed_why[getattr(exc, 'reason', type(exc).__name__)] += 1
            self.get_logger().error(
                f"dropping tensor {msg.frame_seq} from '{msg.source_id[:64]}': {exc}",
                throttle_duration_sec=5.0)
            return
        nbytes = len(msg.data)
        msg.data = []  # decoded: the queue holds the activation only
        budget = float(msg.deadline_ms)
        job = es.Job(source=msg.source_id, key=(int(msg.exit_point), int(msg.partition_point),
                                                 codec),
                     arrival_s=now, deadline_s=math.inf if budget == 0 else now + budget / 1e3,
                     payload=Work(msg, array, codec, nbytes))
        if budget < 0:
            self.count('late')
            self.reply(job, EdgeReply.STATUS_LATE, now)
            return
        with self.lock:
            queued = self.scheduler.push(job)
            self.lock.notify()
        if queued is es.Admit.QUEUE_FULL:
            self.count(queued.value)
            self.reply(job, EdgeReply.STATUS_BUSY, now)

    # --- serving -------------------------------------------------------------------------
    def serve(self) -> None:
        """The serving thread: compute what the scheduler says, until the node stops."""
        while True:
            with self.lock:
                while True:
                    if self.stopping:
                        return
                    todo = self.scheduler.next(time.monotonic())
                    if todo.jobs or todo.late:
                        break
                    self.lock.wait(None if math.isinf(todo.wait_s) else todo.wait_s)
            try:
                for job in todo.late:
                    self.count('late')
                    self.reply(job, EdgeReply.STATUS_LATE, time.monotonic())
                if todo.jobs:
                    self.compute(todo.jobs)
            except Exception as exc:  # one bad batch must not end the service
                self.count('serve_errors')
                self.get_logger().error(f'serving failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5.0)

    def compute(self, jobs: list[es.Job]) -> None:
        """Run one batch (one configuration) and reply to each of its tensors."""
        exit_point, partition, _ = jobs[0].key
        works: list[Work] = [j.payload for j in jobs]
        start = time.monotonic()
        xs = [torch.from_numpy(w.array if w.array.flags.writeable else w.array.copy())
              for w in works]
        logits = self.model.tail_batch(exit_point, partition, xs)
        end = time.monotonic()
        with self.lock:
            self.scheduler.done(jobs, start, end)
        compute_ms = (end - start) * 1e3
        self.compute_ms.append(compute_ms / len(jobs))
        self.batches[len(jobs)] += 1
        for job, out in zip(jobs, logits, strict=True):
            try:
                result = top_k(out, self.top_k)
            except ActivationError as exc:  # the tail overflowed on this input
                self.malformed += 1
                self.malformed_why[type(exc).__name__] += 1
                self.get_logger().error(
                    f"dropping tensor {job.payload.msg.frame_seq} from "
                    f"'{job.source[:64]}': {exc}", throttle_duration_sec=5.0)
                continue
            self.reply(job, EdgeReply.STATUS_OK, start, result=result,
                       compute_ms=compute_ms, batch=len(jobs))
            self.served.add(job.source)
            self.served_codec[job.payload.codec] += 1

    def reply(self, job: es.Job, status: int, start: float, *, result: TopK | None = None,
              compute_ms: float = 0.0, batch: int = 0) -> None:
        w: Work = job.payload
        msg = w.msg
        reply = EdgeReply()
        reply.header = msg.header
        reply.frame_seq = msg.frame_seq
        reply.source_id = msg.source_id
        reply.plan_id = msg.plan_id
        reply.exit_point = msg.exit_point
        reply.partition_point = msg.partition_point
        reply.status = status
        if result is not None:
            reply.top_k_class_ids = result.class_ids
            reply.top_k_scores = result.scores
        reply.received_bytes = w.nbytes
        reply.edge_compute_ms = compute_ms
        reply.edge_queue_ms = max(0.0, (start - job.arrival_s) * 1e3)
        reply.edge_total_ms = (time.monotonic() - job.arrival_s) * 1e3
        reply.batch_size = batch
        self.reply_pub.publish(reply)

    # --- load and health -------------------------------------------------------------
    def publish_load(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            load = self.scheduler.load(now)
        if not (self.publishing.due(load, now) or force):
            return
        keys = sorted(load.service_ms)
        # Every float field as a float: the message's C conversion aborts the
        # process on an int (sum([]) is 0).
        self.load_pub.publish(EdgeLoad(
            header=Header(stamp=self.get_clock().now().to_msg()),
            edge_id=self.get_fully_qualified_name(), torch_device=self.device_text,
            queue_length=load.queue_length, queued_work_ms=float(load.queued_work_ms),
            busy_share=float(load.busy_share), wait_ms=float(load.wait_ms),
            served_per_s=float(load.served_per_s), late_per_s=float(load.late_per_s),
            refused_per_s=float(load.refused_per_s), batches_per_s=float(load.batches_per_s),
            devices_served=load.devices_served, window_s=float(load.window_s),
            exit_points=[k[0] for k in keys], partition_points=[k[1] for k in keys],
            codecs=[k[2] for k in keys], service_ms=[float(load.service_ms[k]) for k in keys]))

    def publish_diagnostics(self) -> None:
        with self.lock:
            load = self.scheduler.load(time.monotonic())
        batches = sum(self.batches.values())
        values: dict[str, object] = {
            'callback_errors': self.callback_errors,
            'tensors_served': self.served.total, 'devices': len(self.served.counts),
            'served_from_sources_over_limit': self.served.over_limit,
            'malformed': self.malformed,
            'compute_ms_median': statistics.median(self.compute_ms) if self.compute_ms else 0.0,
            'queue_length': load.queue_length, 'busy_share': load.busy_share,
            'wait_ms': load.wait_ms, 'served_per_s': load.served_per_s,
            'devices_served_now': load.devices_served,
            'batches': batches,
            'mean_batch_size': (sum(k * v for k, v in self.batches.items()) / batches
                                if batches else 0.0),
            'service': self.scheduler.service, 'torch_device': self.device_text,
        }
        values.update({f'served[{k}]': v for k, v in self.served.counts.items()})
        values.update({f'served_codec[{k}]': v for k, v in self.served_codec.items()})
        values.update({f'malformed[{k}]': v for k, v in self.malformed_why.items()})
        values.update({f'not_served[{k}]': v for k, v in self.refused.items()})
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

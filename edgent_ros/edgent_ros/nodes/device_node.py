"""device_node: the robot side of co-inference.

For each frame on ``image`` (any sensor_msgs/Image in rgb8, bgr8 or mono8;
remap it to a real camera driver's topic) it runs layers [0, p) of the
planned exit and sends the activation to the edge on ``tensor``, or, when
p = N (device only), answers itself. Replies come back on ``reply``
(matched to frames by sequence number and this device's id). Every frame's
answer goes out on ``result`` (InferenceResult: top-k, measured latency by
part, predicted latency, deadline met). Plans arrive on ``plan``; a new plan
applies from the next frame on. Each real transfer also yields a bandwidth
sample on ``link/samples`` for the bandwidth monitor.

No frame is left without an answer. A frame sent to the edge whose reply
has not come by the latest moment the device can still answer it alone in
time (deadline - age - the quicker local answer's predicted time; never
before twice the predicted remote part, never after ``reply_timeout_s``;
until the deadline when a local answer would be late anyway) is answered on
the device: its exit finished from the activation it sent when that meets
the deadline, else the plan's fallback exit (the most accurate exit that
meets the deadline on the device alone, else the fastest). The edge is then
taken as down: the following frames are answered on the device at once, and
every ``edge_retry_s`` one frame is also sent to the edge as a trial (one at
a time): its activation at the plan's partition when finishing the exit
from it on the device is no slower than the fallback or meets the deadline
(so a trial loads the link no more than a frame), else its input. The first
reply (or any late one) brings co-inference back. The one exception: a frame already older than the
deadline when the device takes it (the device fell behind) is skipped and
counted (``skip_late_frames``).

Layers run on a thread of their own: while a frame is computed, the
executor keeps serving labels, replies, plans and the timer that gives
frames up and bounds an overdue transfer's bandwidth. (Callback groups on a
multi-threaded executor did the same in the evaluation runs, but stalled
the node for up to a second at a time on 2 cores.)
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from edgent_ros import diagnostics, image_codec, tensor_codec
from edgent_ros import model as m
from edgent_ros.bandwidth import (
    MIN_SAMPLE_BYTES,
    SOURCE_PASSIVE,
    overdue_bound,
    transfer_sample,
)
from edgent_ros.inference import (
    CoInferenceModel,
    TopK,
    exit_and_partition_ok,
    preprocess,
    reply_wait_ms,
    top_k,
)
from edgent_ros.nodes.params import declare_bool, declare_float, declare_int, declare_str
from edgent_ros.nodes.runner import run_node
from edgent_ros.qos import IMAGE_QOS, LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import (
    BandwidthEstimate,
    EdgeReply,
    FrameLabel,
    InferenceResult,
    Plan,
    Tensor,
)

RESULT_DEPTH = 50
# While a reply is overdue, an upper bound on the bandwidth goes out this often
# (each revises the last for that transfer), for at most this long.
BOUND_PERIOD_S = 0.1
BOUND_FOR_S = 10.0


def local_ms(plan: Plan) -> float:
    """Predicted time of the quicker local answer to a frame sent under a plan:
    finishing its exit on the device, or the fallback exit from the input."""
    return min(plan.predicted_device_tail_ms, plan.predicted_fallback_ms)


@dataclass
class Pending:
    """A frame whose tail runs on the edge (or a trial, already answered)."""

    seq: int
    header: object
    plan: Plan
    device_ms: float
    sent: float
    nbytes: int
    label: int
    x: torch.Tensor | None = None  # the input, to answer alone if the edge fails
    h: torch.Tensor | None = None  # the activation sent, to finish the exit alone
    partition: int = 0
    give_up_at: float = float('inf')
    trial: bool = False
    sent_stamp: object = None  # builtin_interfaces/Time of the send (wall clock)
    bounded_at: float | None = None  # when the last upper-bound sample went out


class DeviceNode(Node):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('device', **kwargs)
        model = declare_str(self, 'model', m.DEFAULT_MODEL,
                            'Model name (in the package models/) or path to its YAML.',
                            read_only=True)
        threads = declare_int(self, 'threads', 1, 'torch CPU threads.', 1, 256, read_only=True)
        self.top_k = declare_int(self, 'top_k', 3, 'Classes reported per frame.', 1, 1000)
        self.reply_timeout_s = declare_float(
            self, 'reply_timeout_s', 5.0,
            'Longest wait for an edge reply before the device answers the frame alone, s '
            '(it answers sooner when the deadline requires).', 0.01, 3600.0)
        self.edge_retry_s = declare_float(
            self, 'edge_retry_s', 1.0,
            'While the edge does not answer, send one frame to it this often to see whether '
            'it is back, s.', 0.05, 3600.0)
        self.skip_late = declare_bool(
            self, 'skip_late_frames', True,
            'Skip a frame that is already older than the deadline when the device takes it '
            '(it has fallen behind): computing it would make the frames queued behind it '
            'late too. Skipped frames are counted in diagnostics (skipped_late).')
        self.source_id = declare_str(self, 'source_id', '',
                                     'This device\'s id in tensors (default: its namespace).',
                                     read_only=True) or self.get_namespace()
        slowdown = declare_float(
            self, 'emulated_slowdown', 1.0,
            'Testbeds only: run the layers this many times slower than this CPU (sleeping '
            '(f-1) x their CPU time) to emulate a slower device; 1 = off.', 1.0, 100000.0,
            read_only=True)
        torch.set_num_threads(threads)
        net, card = m.load(m.resolve_model_path(model))
        self.model = CoInferenceModel(net, card, slowdown=slowdown)
        self.layers = {e.exit_point: e.num_layers for e in card.exits}
        best = max(card.exits, key=lambda e: (e.accuracy, e.exit_point))
        # Until the planner speaks: device only, most accurate exit.
        self.plan = Plan(plan_id=0, exit_point=best.exit_point, num_exits=len(card.exits),
                         partition_point=best.num_layers, num_layers=best.num_layers,
                         expected_accuracy=best.accuracy)
        self.seq = 0
        # Frames out at the edge and frames given up on are shared between the
        # compute thread (frames, answers alone) and the I/O thread (replies,
        # timers): both under this lock, which no computation holds.
        self.lock = threading.Lock()
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self.labels: OrderedDict[tuple[int, int, str], int] = OrderedDict()
        self.stats = {'frames': 0, 'results': 0, 'sent': 0, 'replies': 0, 'malformed_images':
                      0, 'malformed_replies': 0, 'bad_plans': 0, 'edge_timeouts': 0,
                      'late_replies': 0, 'fallback': 0, 'trials': 0, 'edge_recoveries': 0,
                      'correct': 0, 'labelled': 0, 'skipped_late': 0, 'dropped_behind': 0,
                      'compute_errors': 0}
        self.edge_ok = True
        self.last_trial = -float('inf')
        # Frames given up on, kept a while: a late reply still measures the link.
        self.gave_up: OrderedDict[int, Pending] = OrderedDict()
        self.latencies: deque[float] = deque(maxlen=200)
        self.deadline_hits: deque[bool] = deque(maxlen=200)
        self.bandwidth_kbps = 0.0

        self.tensor_pub = self.create_publisher(Tensor, 'tensor', TENSOR_QOS)
        self.result_pub = self.create_publisher(InferenceResult, 'result', RESULT_DEPTH)
        self.sample_pub = self.create_publisher(BandwidthEstimate, 'link/samples', 50)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # Labels first: when a label and its image are both waiting, the
        # executor takes the label first (it serves subscriptions in order).
        # In a group of their own, so that a multi-threaded executor (all nodes
        # in one process) can take a label while a frame is being computed;
        # answer() looks the label up again.
        self.create_subscription(FrameLabel, 'labels', self.on_label, 50,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        # Layers run on a thread of their own (compute_loop): while a frame is
        # computed (long, on a Pi), the executor keeps serving labels, replies,
        # plans and the timer that gives frames up and bounds overdue transfers.
        self.images: deque[Image] = deque(maxlen=IMAGE_QOS.depth)
        self.to_answer: deque[Pending] = deque()  # given up on: the device answers them
        self.wake = threading.Condition()
        self.stopping = False
        self.create_subscription(Image, 'image', self.on_image, IMAGE_QOS)
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)
        self.create_subscription(EdgeReply, 'reply', self.on_reply, TENSOR_QOS)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth, LATCHED_QOS)
        self.create_timer(0.02, self.expire_pending)
        self.create_timer(1.0, self.publish_diagnostics)
        self.worker = threading.Thread(target=self.compute_loop, name='device_compute',
                                       daemon=True)
        self.worker.start()
        self.get_logger().info(f'model {card.name}; device {self.source_id}; until a plan '
                               f'arrives: exit {best.exit_point}, device only')

    def destroy_node(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.worker.join(timeout=10.0)
        super().destroy_node()

    def compute_loop(self) -> None:
        """The compute thread: frames given up on first (their deadline is
        nearest), then camera frames in order. An error in one frame is logged
        and counted, and the thread goes on with the next."""
        while True:
            with self.wake:
                while not (self.stopping or self.to_answer or self.images):
                    self.wake.wait()
                if self.stopping:
                    return
                given_up = self.to_answer.popleft() if self.to_answer else None
                image = None if given_up is not None else self.images.popleft()
            try:
                if given_up is not None:
                    self.finish_alone(given_up)
                else:
                    self.process_image(image)
            except Exception as exc:  # one bad frame must not stop the robot seeing
                self.stats['compute_errors'] += 1
                self.get_logger().error(f'computing a frame failed: {exc!r}',
                                        throttle_duration_sec=5.0)

    # --- inputs ----------------------------------------------------------------------
    def on_plan(self, plan: Plan) -> None:
        why = exit_and_partition_ok(self.model.num_exits, self.layers, plan.exit_point,
                                    plan.partition_point)
        if why is None and plan.num_layers != self.layers[plan.exit_point]:
            why = (f'plan says exit {plan.exit_point} has {plan.num_layers} layers; the model '
                   f'has {self.layers[plan.exit_point]} (another model?)')
        if why is None and plan.fallback_exit_point != 0:
            why = exit_and_partition_ok(self.model.num_exits, self.layers,
                                        plan.fallback_exit_point, plan.fallback_num_layers)
            if why is None and plan.fallback_num_layers != self.layers[plan.fallback_exit_point]:
                why = f'fallback exit {plan.fallback_exit_point} has the wrong layer count'
            why = None if why is None else f'fallback: {why}'
        if why is not None:
            self.stats['bad_plans'] += 1
            self.get_logger().error(f'refusing plan {plan.plan_id}: {why}',
                                    throttle_duration_sec=5.0)
            return
        self.plan = plan  # takes effect from the next frame

    def on_label(self, msg: FrameLabel) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        self.labels[key] = int(msg.label)
        while len(self.labels) > 512:
            self.labels.popitem(last=False)

    def label_of(self, header: object) -> int:
        """The frame's ground truth if the source sent one (-1 otherwise)."""
        key = (header.stamp.sec, header.stamp.nanosec, header.frame_id)
        return self.labels.pop(key, -1)

    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        self.bandwidth_kbps = float(msg.bandwidth_kbps)

    def on_image(self, msg: Image) -> None:
        """Hand the frame to the compute thread (the oldest waiting frame is
        dropped, and counted, if the device is that far behind)."""
        with self.wake:
            if len(self.images) == self.images.maxlen:
                self.stats['dropped_behind'] += 1
            self.images.append(msg)
            self.wake.notify()

    def process_image(self, msg: Image) -> None:
        self.stats['frames'] += 1
        try:
            rgb = image_codec.to_rgb(msg)
        except image_codec.ImageError as exc:
            self.stats['malformed_images'] += 1
            self.get_logger().error(f'dropping image: {exc}', throttle_duration_sec=5.0)
            return
        plan = self.plan
        self.seq += 1
        label = self.label_of(msg.header)
        if self.skip_late and plan.latency_requirement_ms > 0 and \
                self.frame_age_ms(msg.header) > plan.latency_requirement_ms:
            # Late before it started (the device fell behind): computing it would
            # only make the frames behind it late too.
            self.stats['skipped_late'] += 1
            self.get_logger().warn('skipping frames already older than the deadline (the '
                                   'device is behind)', throttle_duration_sec=5.0)
            self.answer(msg.header, self.seq, plan, TopK([], []), label, device_ms=0.0,
                        transfer_ms=0.0, edge_ms=0.0, exit_point=0, partition=0,
                        skipped=True)
            return
        start = time.perf_counter()
        x = preprocess(rgb)
        if plan.partition_point == self.layers[plan.exit_point]:
            h = self.model.head(plan.exit_point, plan.partition_point, x)
            device_ms = (time.perf_counter() - start) * 1e3
            self.answer(msg.header, self.seq, plan, top_k(h, self.top_k), label,
                        device_ms=device_ms, transfer_ms=0.0, edge_ms=0.0)
            return
        connected = self.tensor_pub.get_subscription_count() > 0
        if not connected or not self.edge_ok:
            # No edge matched (not started, not yet discovered, or gone), or the
            # edge stopped answering: the device answers alone, now.
            if not connected:
                self.get_logger().warn('no edge connected: answering frames on the device',
                                       throttle_duration_sec=5.0)
            with self.lock:
                trial_out = any(p.trial for p in self.pending.values())
            if connected and not trial_out and start - self.last_trial >= self.edge_retry_s:
                self.last_trial = start
                self.trial(msg.header, self.seq, plan, x, label, start)
            else:
                self.answer_alone(msg.header, self.seq, plan, x, label, start)
            return
        h = self.model.head(plan.exit_point, plan.partition_point, x)
        device_ms = (time.perf_counter() - start) * 1e3
        self.send(msg.header, self.seq, plan, plan.partition_point, h, device_ms, label, x=x)

    def trial(self, header: object, seq: int, plan: Plan, x: torch.Tensor, label: int,
              start: float) -> None:
        """Answer a frame on the device while the edge is taken as down, and send
        it to the edge as a trial. If finishing the plan's exit on the device is
        no slower than the fallback, or meets the deadline, the trial carries
        the plan's activation (no more load on the link than a frame) and the
        device finishes the exit from it; else the fallback exit answers and
        the trial carries the input."""
        tail_ms = plan.predicted_device_tail_ms
        own_ms = plan.predicted_device_ms + tail_ms
        if tail_ms > 0 and (own_ms <= plan.predicted_fallback_ms or
                            self.frame_age_ms(header) + own_ms <= plan.latency_requirement_ms):
            h = self.model.head(plan.exit_point, plan.partition_point, x)
            device_ms = (time.perf_counter() - start) * 1e3
            p = self.send(header, seq, plan, plan.partition_point, h, device_ms, label, x=x,
                          trial=True)
            p.h = h
            self.finish_alone(p)
            p.h = p.x = None  # answered: the trial only waits for its reply
            return
        self.answer_alone(header, seq, plan, x, label, start)
        self.send(header, seq, plan, 0, x, 0.0, label, trial=True)

    def send(self, header: object, seq: int, plan: Plan, partition: int, h: torch.Tensor,
             device_ms: float, label: int, *, x: torch.Tensor | None = None,
             trial: bool = False) -> Pending:
        """Send an activation to the edge and remember the frame until it answers."""
        out = tensor_codec.to_msg(h.numpy(), name='activation')
        out.header = header
        out.frame_seq = seq
        out.source_id = self.source_id
        out.plan_id = plan.plan_id
        out.exit_point = plan.exit_point
        out.partition_point = partition
        now = time.perf_counter()
        give_up_at = now + self.reply_wait_s(header, plan)
        pending = Pending(seq, header, plan, device_ms, now, len(out.data), label, x=x,
                          h=None if trial else h, partition=partition,
                          give_up_at=give_up_at, trial=trial,
                          sent_stamp=self.get_clock().now().to_msg())
        with self.lock:
            self.pending[seq] = pending
        self.tensor_pub.publish(out)
        self.stats['trials' if trial else 'sent'] += 1
        return pending

    def reply_wait_s(self, header: object, plan: Plan) -> float:
        """How long a frame sent now may wait for the edge before the device
        answers it alone: until the last moment a local answer still meets the
        deadline, but not before twice the predicted remote part (a slow link
        is not a dead edge). If a local answer would be late by then (the
        device part took most of the budget, or the fallback is slower than
        the deadline), the edge is the frame's best chance: wait until the
        deadline. Never longer than reply_timeout_s."""
        wait_ms = reply_wait_ms(
            remote_ms=plan.predicted_latency_ms - plan.predicted_device_ms,
            fallback_ms=local_ms(plan), deadline_ms=plan.latency_requirement_ms,
            age_ms=self.frame_age_ms(header))
        return min(wait_ms / 1e3, self.reply_timeout_s)

    def frame_age_ms(self, header: object) -> float:
        return (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6

    def fallback_exit(self, plan: Plan) -> int:
        if plan.fallback_exit_point != 0:
            return int(plan.fallback_exit_point)
        return max(self.model.card.exits, key=lambda e: (e.accuracy, e.exit_point)).exit_point

    def answer_alone(self, header: object, seq: int, plan: Plan, x: torch.Tensor, label: int,
                     start: float) -> None:
        """Answer a frame on the device with the plan's fallback exit."""
        exit_point = self.fallback_exit(plan)
        n = self.layers[exit_point]
        logits = self.model.head(exit_point, n, x)
        device_ms = (time.perf_counter() - start) * 1e3
        self.stats['fallback'] += 1
        self.answer(header, seq, plan, top_k(logits, self.top_k), label, device_ms=device_ms,
                    transfer_ms=0.0, edge_ms=0.0, fallback=True, exit_point=exit_point,
                    partition=n, predicted_ms=plan.predicted_fallback_ms)

    def on_reply(self, reply: EdgeReply) -> None:
        if reply.source_id != self.source_id:
            return  # another device's answer
        if not self.edge_ok:
            self.edge_ok = True  # any answer, even a late one, shows the edge is back
            self.stats['edge_recoveries'] += 1
            self.get_logger().info('the edge answers again: resuming co-inference')
        with self.lock:
            pending = self.pending.pop(reply.frame_seq, None)
            gave_up = self.gave_up.pop(reply.frame_seq, None) if pending is None else None
        if pending is None or pending.trial:
            late = gave_up if pending is None else pending
            if late is not None:  # answered already, but the transfer was real
                self.publish_sample(late, reply)
            if pending is None:
                self.stats['late_replies'] += 1
            return
        if len(reply.top_k_class_ids) == 0 or \
                len(reply.top_k_class_ids) != len(reply.top_k_scores):
            self.stats['malformed_replies'] += 1
            self.get_logger().error(f'frame {reply.frame_seq}: malformed edge reply; '
                                    'answering it on the device', throttle_duration_sec=5.0)
            self.answer_later(pending)
            return
        self.stats['replies'] += 1
        round_trip_ms = (time.perf_counter() - pending.sent) * 1e3
        transfer_ms = max(0.0, round_trip_ms - reply.edge_total_ms)
        self.publish_sample(pending, reply)
        result = TopK(list(reply.top_k_class_ids), list(reply.top_k_scores))
        label = pending.label if pending.label >= 0 else self.label_of(pending.header)
        self.answer(pending.header, pending.seq, pending.plan, result, label,
                    device_ms=pending.device_ms, transfer_ms=transfer_ms,
                    edge_ms=float(reply.edge_total_ms))

    def publish_sample(self, pending: Pending, reply: EdgeReply | None) -> None:
        """A bandwidth sample for the monitor: from a reply's round trip, or (no
        reply yet) an upper bound from how long the frame has been out."""
        elapsed_ms = (time.perf_counter() - pending.sent) * 1e3
        if reply is not None and pending.nbytes < MIN_SAMPLE_BYTES:
            # Too small to measure the rate, but it tells the monitor when frames
            # leave, so that its probes keep out of their way.
            kbps = pending.nbytes * 8.0 / max(0.5, elapsed_ms - reply.edge_total_ms)
        elif reply is not None:
            kbps = transfer_sample(pending.nbytes, elapsed_ms, reply.edge_total_ms)
        else:  # as transfer_sample: small messages say nothing of the rate
            kbps = pending.nbytes * 8.0 / elapsed_ms \
                if elapsed_ms > 0 and pending.nbytes >= MIN_SAMPLE_BYTES else None
            if kbps is not None and 0 < self.bandwidth_kbps <= kbps:
                return  # an upper bound above the estimate says nothing new
        if kbps is None:
            return
        sample = BandwidthEstimate(bandwidth_kbps=kbps, last_sample_kbps=kbps,
                                   source=SOURCE_PASSIVE, sample_count=1, confidence=0.0,
                                   sample_bytes=pending.nbytes, upper_bound=reply is None)
        sample.header.stamp = pending.sent_stamp  # when the transfer started
        self.sample_pub.publish(sample)

    def expire_pending(self) -> None:
        """Give up on every frame the edge did not answer in time (the device
        answers it alone); keep telling the bandwidth monitor how slow the link
        is at most while replies are out."""
        now = time.perf_counter()
        bounds, expired = [], []
        with self.lock:
            for p in self.gave_up.values():
                if p.bounded_at is not None and now - p.bounded_at >= BOUND_PERIOD_S and \
                        now - p.sent < BOUND_FOR_S:
                    p.bounded_at = now
                    bounds.append(p)  # same send stamp: it revises the last
            for seq, p in list(self.pending.items()):
                if now < p.give_up_at:
                    # Overdue but still waited for: bound the link already, so a
                    # step down shows before the frame is given up on.
                    remote_ms = max(0.0, p.plan.predicted_latency_ms -
                                    p.plan.predicted_device_ms)
                    due = now >= p.bounded_at + BOUND_PERIOD_S if p.bounded_at is not None \
                        else overdue_bound(p.nbytes, (now - p.sent) * 1e3, remote_ms) is not None
                    if due:
                        p.bounded_at = now
                        bounds.append(p)
                    continue
                del self.pending[seq]
                self.gave_up[seq] = p
                while len(self.gave_up) > 64:
                    self.gave_up.popitem(last=False)
                if p.bounded_at is None or now - p.bounded_at >= BOUND_PERIOD_S:
                    # The link carried at most this much: tell the monitor now.
                    p.bounded_at = now
                    bounds.append(p)
                expired.append(p)
        for p in bounds:
            self.publish_sample(p, None)
        for p in expired:
            if p.trial:
                continue
            self.stats['edge_timeouts'] += 1
            if self.edge_ok:
                self.edge_ok = False
                self.get_logger().warn(
                    f'frame {p.seq}: no edge reply in {1e3 * (now - p.sent):.0f} ms; answering '
                    'on the device until the edge answers again', throttle_duration_sec=5.0)
            self.answer_later(p)

    def answer_later(self, p: Pending) -> None:
        """Have the compute thread answer a frame alone (the executor keeps
        serving replies and timers)."""
        with self.wake:
            self.to_answer.append(p)
            self.wake.notify()

    def finish_alone(self, p: Pending) -> None:
        """Answer a frame the edge did not: finish the plan's exit on the device
        from the activation it sent when that still meets the deadline (or is
        no slower than the fallback), else run the fallback exit."""
        plan, start = p.plan, time.perf_counter()
        tail_ms = plan.predicted_device_tail_ms
        deadline = plan.latency_requirement_ms
        if p.h is not None and (tail_ms <= plan.predicted_fallback_ms or deadline <= 0 or
                                self.frame_age_ms(p.header) + tail_ms <= deadline):
            logits = self.model.tail(plan.exit_point, p.partition, p.h)
            device_ms = p.device_ms + (time.perf_counter() - start) * 1e3
            self.stats['fallback'] += 1
            self.answer(p.header, p.seq, plan, top_k(logits, self.top_k), p.label,
                        device_ms=device_ms, transfer_ms=0.0, edge_ms=0.0, fallback=True,
                        partition=plan.num_layers,
                        predicted_ms=plan.predicted_device_ms + tail_ms)
        elif p.x is not None:
            self.answer_alone(p.header, p.seq, plan, p.x, p.label, start)

    # --- outputs ---------------------------------------------------------------------
    def answer(self, header: object, seq: int, plan: Plan, result: TopK, label: int, *,
               device_ms: float, transfer_ms: float, edge_ms: float, fallback: bool = False,
               exit_point: int | None = None, partition: int | None = None,
               predicted_ms: float | None = None, skipped: bool = False) -> None:
        latency_ms = self.frame_age_ms(header)
        if label < 0:  # the frame's label may have come while it was computed
            label = self.label_of(header)
        msg = InferenceResult()
        msg.header = header
        msg.frame_seq = seq
        msg.source_id = self.source_id
        msg.class_id = result.class_ids[0] if result.class_ids else -1
        msg.score = result.scores[0] if result.scores else 0.0
        msg.top_k_class_ids = result.class_ids
        msg.top_k_scores = result.scores
        msg.label = label
        msg.plan_id = plan.plan_id
        msg.exit_point = plan.exit_point if exit_point is None else exit_point
        msg.partition_point = plan.partition_point if partition is None else partition
        msg.fallback = fallback
        msg.latency_ms = latency_ms
        msg.device_ms = device_ms
        msg.transfer_ms = transfer_ms
        msg.edge_ms = edge_ms
        msg.predicted_latency_ms = plan.predicted_latency_ms if predicted_ms is None \
            else predicted_ms
        msg.latency_requirement_ms = plan.latency_requirement_ms
        msg.deadline_met = not skipped and (plan.latency_requirement_ms <= 0 or
                                            latency_ms <= plan.latency_requirement_ms)
        msg.skipped = skipped
        self.result_pub.publish(msg)
        self.stats['results'] += 1
        self.latencies.append(latency_ms)
        self.deadline_hits.append(msg.deadline_met)
        if label >= 0:
            self.stats['labelled'] += 1
            self.stats['correct'] += int(label == msg.class_id)

    def publish_diagnostics(self) -> None:
        s = self.stats
        lat = sorted(self.latencies)
        values: dict[str, object] = dict(s)
        values.update({
            'plan_id': self.plan.plan_id, 'exit_point': self.plan.exit_point,
            'partition_point': self.plan.partition_point, 'in_flight': len(self.pending),
            'edge_answering': self.edge_ok,
            'bandwidth_kbps': self.bandwidth_kbps,
            'latency_ms_median': statistics.median(lat) if lat else 0.0,
            'latency_ms_p95': lat[int(0.95 * (len(lat) - 1))] if lat else 0.0,
            'deadline_hit_rate': (sum(self.deadline_hits) / len(self.deadline_hits))
            if self.deadline_hits else 0.0,
            'accuracy': s['correct'] / s['labelled'] if s['labelled'] else 0.0,
        })
        bad = s['malformed_images'] + s['malformed_replies'] + s['bad_plans']
        level = diagnostics.WARN if bad or not self.edge_ok else diagnostics.OK
        if not self.edge_ok:
            text = 'the edge does not answer: answering frames on the device'
        elif bad:
            text = f'{bad} malformed inputs dropped'
        else:
            text = 'co-inference running'
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: co-inference', level,
                               text, values)))


def main(args: list[str] | None = None) -> int:
    return run_node(DeviceNode, args, refused=(m.ModelError, ValueError))


if __name__ == '__main__':
    raise SystemExit(main())

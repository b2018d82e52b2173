"""device_node: the robot side of co-inference.

For each frame on ``image`` (sensor_msgs/Image: rgb8, bgr8 or mono8) it runs
layers [0, p) of the planned exit and sends the activation to the edge on
``tensor``, or answers alone; replies come on ``reply``. Every frame's
answer goes out on ``result``; plans come on ``plan`` and apply from the
next frame; each transfer is reported on ``link/transfers`` for the
bandwidth monitor. An I/O shell: every decision (what to do with a frame,
how long to wait for the edge, when it is down, how to answer alone) is
``edgent_ros.device_policy``'s, given the node clock's time (sim time under
use_sim_time); layers' compute time is measured on the monotonic clock.
Layers run on a thread of their own, so the executor keeps serving replies,
plans and the timer that gives frames up while a frame is computed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks, QoSPublisherMatchedInfo
from rclpy.serialization import deserialize_message

try:
    from rclpy.subscription_content_filter_options import ContentFilterOptions
except ImportError:  # Jazzy's rclpy has no content filters (Kilted brought them)
    ContentFilterOptions = None
from rclpy.time import Time
from sensor_msgs.msg import Image

from edgent_ros import codec_names, datasets, diagnostics, image_codec, payload_codec
from edgent_ros import device_policy as dp
from edgent_ros import model as m
from edgent_ros.inference import CoInferenceModel, TopK, preprocess, top_k
from edgent_ros.nodes import device_messages as msgs
from edgent_ros.nodes.params import MODEL, THREADS, ParamSchema, ParamSpec
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import LATCHED_QOS, NEWEST_IMAGE_QOS, TENSOR_QOS
from edgent_ros.tensor_codec import TensorCodecError
from edgent_ros_interfaces.msg import (
    BandwidthEstimate,
    EdgeReply,
    FrameLabel,
    InferenceResult,
    Plan,
    Tensor,
    TransferReport,
)

RESULT_DEPTH = 50
MAX_IMAGE_BYTES = 3840 * 2160 * 4
# An Image's serialized fields beside its pixels (header, encoding), at most
# this many bytes before the size check needs the message deserialized.
IMAGE_FIELDS_MAX_BYTES = 64 * 1024
# Camera frames waiting for the compute thread: the newest only. A frame that
# comes while one waits replaces it (counted as dropped_behind), so the device
# answers at its own pace under any input rate and holds at most this many
# frames beside the one it computes.
FRAMES_WAITING = 1

# Ranges, types and read-only are checked from these; a change that passes
# them applies from the next frame.
PARAMS = ParamSchema(
    MODEL,
    THREADS,
    ParamSpec('top_k', 3, 'Classes reported per frame.', 1, 1000),
    ParamSpec('reply_timeout_s', 5.0,
              'Longest wait for an edge reply before the device answers the frame alone, s '
              '(it answers sooner when the deadline requires; from the next frame sent).',
              0.01, 3600.0),
    ParamSpec('edge_retry_s', 1.0, 'While the edge does not answer, send one frame to it '
              'this often to see whether it is back, s.', 0.05, 3600.0),
    ParamSpec('skip_late_frames', True,
              'Skip a frame that is already older than the deadline when the device takes it '
              '(it has fallen behind): computing it would make the frames queued behind it '
              'late too. Skipped frames are counted in diagnostics (skipped_late).'),
    ParamSpec('max_image_bytes', MAX_IMAGE_BYTES,
              'Largest image taken, bytes of pixel data; a larger one is dropped before it is '
              'converted, logged and counted (oversized_images). Default: a 4K RGBA frame.',
              1, 2**31 - 1),
    ParamSpec('max_image_width', 3840,
              'Widest image taken, pixels. With Fast DDS the reader filters wider ones out '
              '(a content filter): they are never copied into this node, so a flood of them '
              'costs it nothing; they are not counted.', 1, 65535),
    ParamSpec('max_image_height', 2160, 'Tallest image taken, pixels (as max_image_width).',
              1, 65535),
    ParamSpec('source_id', '', 'This device\'s id in tensors (default: its namespace).',
              read_only=True),
    ParamSpec('emulated_slowdown', 1.0,
              'Testbeds only: run the layers this many times slower than this CPU to emulate '
              'a slower device; 1 = off.', 1.0, 100000.0, read_only=True),
)
# What an edge reply's status says when the edge did not run the tensor.
NOT_RUN = {EdgeReply.STATUS_LATE: 'late', EdgeReply.STATUS_BUSY: 'busy'}
NOT_RUN_WHY = {'late': 'its deadline was out of reach there',
               'busy': 'its queue for this device was full'}
TICK_S = 0.02  # how often frames out at the edge are checked
MAX_EDGES = 16  # edges a device keeps publishers to (plans naming more are refused)
WARM_POLL_S = 0.05  # how often, until the model is warm, whether to subscribe to images
# The image reader's content filter (DDS SQL; %0, %1: max_image_width, _height).
IMAGE_FILTER = 'width <= %0 AND height <= %1'
# How a trial that carries a frame's input (to see whether a new or silent
# edge answers) codes it, whatever the plan's codec: its uint8 pixels at the
# network's input size. Lossless (the edge answers as from the float32 input),
# a quarter of raw's bytes (the trial holds the link a quarter as long, and
# fits input_trial_fits on a 4x slower link), a copy to encode, and accepted
# by the edge under any plan.
TRIAL_INPUT_CODEC = codec_names.PIXELS


class DeviceNode(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('device', **kwargs)
        self.work = dp.WorkQueue(FRAMES_WAITING)
        self.worker: threading.Thread | None = None
        p = PARAMS.attach(self, {
            'top_k': lambda v: setattr(self, 'top_k', v),
            'reply_timeout_s': lambda v: setattr(self.policy, 'reply_timeout_s', v),
            'edge_retry_s': lambda v: setattr(self.policy, 'edge_retry_s', v),
            'skip_late_frames': lambda v: setattr(self.policy, 'skip_late', v),
            'max_image_bytes': lambda v: setattr(self, 'max_image_bytes', v),
            'max_image_width': lambda v: self.filter_images(width=v),
            'max_image_height': lambda v: self.filter_images(height=v)})
        self.top_k, threads = p['top_k'], p['threads']
        self.max_image_bytes = p['max_image_bytes']
        self.max_image_size = (p['max_image_width'], p['max_image_height'])
        self.policy = dp.DevicePolicy(reply_timeout_s=p['reply_timeout_s'],
                                      edge_retry_s=p['edge_retry_s'],
                                      skip_late=p['skip_late_frames'])
        self.stats = self.policy.stats
        self.source_id = p['source_id'] or self.get_namespace()
        model, slowdown = p['model'], p['emulated_slowdown']
        torch.set_num_threads(threads)
        net, card = m.load(m.resolve_model_path(model))
        self.model = CoInferenceModel(net, card, slowdown=slowdown)
        self.layers = {e.exit_point: e.num_layers for e in card.exits}
        self.input_size = (card.input_shape[1], card.input_shape[2])
        self.best = max(card.exits, key=lambda e: (e.accuracy, e.exit_point))
        # Until the planner speaks: device only, most accurate exit.
        self.plan = Plan(plan_id=0, exit_point=self.best.exit_point, num_exits=len(card.exits),
                         partition_point=self.best.num_layers,
                         num_layers=self.best.num_layers, expected_accuracy=self.best.accuracy)
        self.seq = 0
        self.edge_matched = False
        self.edge_pubs: dict[str, object] = {}  # edge namespace -> its tensor publisher
        self.labels = dp.Labels()
        self.gaps = dp.FrameGaps()
        self.bandwidth_kbps = 0.0
        self.tensor_pub = self.create_publisher(
            Tensor, 'tensor', TENSOR_QOS,
            event_callbacks=PublisherEventCallbacks(matched=self.on_edge_matched))
        self.result_pub = self.create_publisher(InferenceResult, 'result', RESULT_DEPTH)
        self.transfer_pub = self.create_publisher(TransferReport, 'link/transfers', 50)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # Labels first (the executor serves subscriptions in order), in a group of
        # their own so a multi-threaded executor takes one while a frame computes.
        self.create_subscription(FrameLabel, 'labels', self.on_label, 50,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        # The image subscription is made once the compute thread has warmed the
        # model up (subscribe_images): a frame that came before would wait behind
        # the warm-up and be displaced by the next (a counted replay lost its
        # first frame so under load), and a camera with wait_for_subscribers
        # holds its first frame until then.
        self.image_sub = None
        self.warm = threading.Event()
        self.subscribe_timer = self.create_timer(
            WARM_POLL_S, self.subscribe_images, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)
        self.create_subscription(EdgeReply, 'reply', self.on_reply, TENSOR_QOS)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth, LATCHED_QOS)
        # Runs only while a frame is out: send() starts it, on_tick() stops it,
        # each under tick_lock with the policy's change, so neither misses the other.
        self.tick_lock = threading.Lock()
        self.tick_timer = self.create_timer(TICK_S, self.on_tick)
        self.tick_timer.cancel()
        self.create_timer(1.0, self.publish_diagnostics)
        self.worker = threading.Thread(target=self.compute_loop, name='device_compute',
                                       daemon=True)
        self.worker.start()
        slowed = f'; layers emulated {slowdown:g}x slower (emulated_slowdown)' \
            if slowdown > 1 else ''
        self.get_logger().info(f'model {card.name}; device {self.source_id}; until a plan '
                               f'arrives: exit {self.best.exit_point}, device only{slowed}')

    def subscribe_images(self) -> None:
        if not self.warm.is_set() or self.image_sub is not None:
            return
        self.subscribe_timer.cancel()
        # Serialized: an image's size is checked before rclpy spends time
        # deserializing it (60 ms for a 12-megapixel frame on the machine
        # measured, which a flood of them at 30 Hz would spend every second of).
        # Images larger than max_image_width x max_image_height are filtered out
        # by DDS (a content filter), before this node copies them: a flood of
        # 12-megapixel frames otherwise costs it a copy of each (36 MB) and
        # takes the place of camera frames in the reader (docs/flood.md).
        filtered = {} if ContentFilterOptions is None else {'content_filter_options': (
            ContentFilterOptions(IMAGE_FILTER, self.image_filter_args()))}
        self.image_sub = self.create_subscription(
            Image, 'image', self.on_image_raw, NEWEST_IMAGE_QOS, raw=True, **filtered)
        if not getattr(self.image_sub, 'is_cft_enabled', False):
            self.get_logger().warning('this rclpy or RMW has no content filters: images over '
                                   'max_image_width x max_image_height are dropped here, after '
                                   'they were received')
        self.get_logger().info('model warmed up: taking images')

    def destroy_node(self) -> None:
        self.work.stop()
        if self.worker is not None:  # None: refused while starting
            self.worker.join(timeout=10.0)
        super().destroy_node()

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def age_ms(self, header: object) -> float:
        return (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6

    def compute_loop(self) -> None:
        """The compute thread. An error in one frame is logged and counted, and
        the thread goes on with the next."""
        # On this thread: torch's first run of each exit on a thread is slow
        # (measured: exit 1 at 10x its prediction the first time it ran as a
        # fallback, after a warm-up on the main thread).
        try:
            self.model.warm_up()
        except Exception as exc:  # frames then pay the first runs; they still run
            self.get_logger().error(f'warming the model up failed: {exc!r}')
        self.warm.set()
        while (work := self.work.next()) is not None:
            given_up, item = work
            try:
                if given_up:
                    how = self.policy.route(item, self.age_ms(item.header),
                                            fallback_exit=self.fallback_exit(item.plan),
                                            behind=self.work.waiting())
                    self.answer_alone(item, how, time.perf_counter())
                else:
                    self.process_image(item)
            except Exception as exc:  # one bad frame must not stop the robot seeing
                self.stats.inc('compute_errors')
                self.get_logger().error(f'computing a frame failed: {exc!r}',
                                        throttle_duration_sec=5.0)

    # --- inputs ----------------------------------------------------------------------
    def on_plan(self, plan: Plan) -> None:
        why = dp.plan_problem(plan, self.model.num_exits, self.layers)
        if why is not None:
            self.stats.inc('bad_plans')
            self.get_logger().error(f'refusing plan {plan.plan_id}: {why[:300]}',
                                    throttle_duration_sec=5.0)
            return
        if dp.edge_of(plan) != dp.edge_of(self.plan) and plan.partition_point < plan.num_layers:
            if dp.edge_of(plan) not in self.edge_pubs and len(self.edge_pubs) >= MAX_EDGES:
                self.stats.inc('bad_plans')
                self.get_logger().error(f'refusing plan {plan.plan_id}: more than {MAX_EDGES} '
                                        'edges', throttle_duration_sec=5.0)
                return
            self.link(dp.edge_of(plan))
            self.policy.edge_appeared()  # another edge: try it at once, whatever the last did
            self.get_logger().info(f'plan {plan.plan_id}: frames go to edge '
                                   f'{dp.edge_of(plan) or "(tensor)"}')
        self.plan = plan  # takes effect from the next frame

    def link(self, edge: str) -> object:
        """The publisher of tensors to an edge ('' : ``tensor``, as remapped);
        one to another edge (a plan naming its namespace) is made on first use,
        with a subscription to its replies."""
        if not edge:
            return self.tensor_pub
        pub = self.edge_pubs.get(edge)
        if pub is None:
            pub = self.edge_pubs[edge] = self.create_publisher(
                Tensor, f'{edge.rstrip("/")}/tensor', TENSOR_QOS,
                event_callbacks=PublisherEventCallbacks(matched=self.on_edge_matched))
            self.create_subscription(EdgeReply, f'{edge.rstrip("/")}/reply', self.on_reply,
                                     TENSOR_QOS)
        return pub

    def on_label(self, msg: FrameLabel) -> None:
        if len(msg.header.frame_id) > dp.MAX_FRAME_ID_CHARS:
            self.stats.inc('bad_labels')
            return
        self.labels.put(key(msg.header), int(msg.label), int(msg.seq))

    def on_edge_matched(self, info: QoSPublisherMatchedInfo) -> None:
        """An edge subscribed to the activations (started, restarted, or
        discovered again), or one went away. A new one gets the next frame as
        a trial at once, not after ``edge_retry_s``: an edge back from a
        restart answers again within a frame."""
        if info.current_count_change > 0:
            self.policy.edge_appeared()
        if info.current_count_change > 0 or info.current_count == 0:
            self.matched_log(info.current_count > 0, info.current_count)

    def matched_log(self, matched: bool, count: int) -> None:
        self.edge_matched = matched
        if matched:
            self.get_logger().info(f'edge matched ({count} subscribing to the activations)')
        else:
            self.get_logger().warning('edge gone: none subscribes to the activations')

    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        self.bandwidth_kbps = float(msg.bandwidth_kbps)

    def on_image_raw(self, raw: bytes) -> None:
        self.stats.inc('received')
        if len(raw) > self.max_image_bytes + IMAGE_FIELDS_MAX_BYTES:
            self.oversized(f'{len(raw)} bytes serialized')
            return
        try:
            msg = deserialize_message(raw, Image)
        except Exception as exc:  # not an Image's CDR: a foreign type on the topic
            self.stats.inc('malformed_images')
            self.get_logger().error(f'dropping image: it does not deserialize ({exc!r})',
                                    throttle_duration_sec=5.0)
            return
        self.on_image(msg)

    def image_filter_args(self) -> list[str]:
        return [str(int(v)) for v in self.max_image_size]

    def filter_images(self, *, width: int | None = None, height: int | None = None) -> None:
        """A new max_image_width or max_image_height: the DDS filter follows."""
        w, h = self.max_image_size
        self.max_image_size = (w if width is None else width, h if height is None else height)
        if self.image_sub is not None and getattr(self.image_sub, 'is_cft_enabled', False):
            self.image_sub.set_content_filter(IMAGE_FILTER, self.image_filter_args())

    def oversized(self, what: str) -> None:
        self.stats.inc('oversized_images')
        w, h = self.max_image_size
        self.get_logger().error(f'dropping an image of {what}: over max_image_bytes '
                                f'({self.max_image_bytes}) or {w}x{h} (max_image_width, '
                                'max_image_height)', throttle_duration_sec=5.0)

    def on_image(self, msg: Image) -> None:
        seq = self.labels.seq(key(msg.header))
        if seq > 0:  # numbered by its camera: were frames lost before it?
            self.stats.inc('frames_lost', self.gaps.image(msg.header.frame_id, seq))
        w, h = self.max_image_size
        if len(msg.data) > self.max_image_bytes or msg.width > w or msg.height > h:
            self.oversized(f'{msg.width}x{msg.height} {msg.encoding[:32]!r}, {len(msg.data)} '
                          'bytes')
            return
        try:
            image_codec.check(msg)  # counted here: a malformed one must not displace a frame
        except image_codec.ImageError as exc:
            self.stats.inc('malformed_images')
            self.get_logger().error(f'dropping image: {exc}', throttle_duration_sec=5.0)
            return
        if not self.work.frame(msg):
            self.stats.inc('dropped_behind')

    def process_image(self, msg: Image) -> None:
        self.stats.inc('frames')
        try:
            rgb = image_codec.to_rgb(msg)
        except image_codec.ImageError as exc:
            self.stats.inc('malformed_images')
            self.get_logger().error(f'dropping image: {exc}', throttle_duration_sec=5.0)
            return
        plan, self.seq = self.plan, self.seq + 1
        p = dp.Pending(self.seq, msg.header, plan, self.labels.take(key(msg.header)), 0.0, 0,
                       plan.partition_point)
        connected = self.link(dp.edge_of(plan)).get_subscription_count() > 0
        if connected != self.edge_matched:  # also if a match event came before its handler
            self.matched_log(connected, int(connected))
        take = self.policy.take(plan, self.age_ms(p.header), self.now_s(), connected=connected)
        if take is dp.Take.SKIP:
            self.get_logger().warning('skipping frames already older than the deadline (the '
                                   'device is behind)', throttle_duration_sec=5.0)
            self.answer(p, TopK([], []), exit_point=0, partition=0, failed=True, skipped=True)
            return
        if not connected and take not in (dp.Take.DEVICE_ONLY, dp.Take.DEVICE_ONLY_TRIAL):
            self.get_logger().warning('no edge connected: answering frames on the device',
                                   throttle_duration_sec=5.0)
        start, p.trial = time.perf_counter(), take is dp.Take.TRIAL
        # At the network's input size: the pixels an input codec sends, and
        # (preprocess then resizes nothing) the network's input.
        rgb = datasets.resize_rgb(np.ascontiguousarray(rgb), self.input_size)
        p.x = preprocess(rgb, self.model.card)
        how = None
        if take in (dp.Take.ALONE, dp.Take.TRIAL):
            how = self.policy.route_now(take, plan, self.age_ms(p.header),
                                        fallback_exit=self.fallback_exit(plan),
                                        behind=self.work.waiting())
        if how is not None and how.route is not dp.Route.FINISH:
            x = p.x
            if p.trial and not dp.input_trial_fits(rgb.nbytes,  # as TRIAL_INPUT_CODEC
                                                   self.bandwidth_kbps,
                                                   plan.latency_requirement_ms):
                p.trial = False  # the input would hold the link for long
                self.policy.trial_withheld()
            self.answer_alone(p, how, start)
            if p.trial:  # the trial carries the input
                p.partition = 0
                self.send(p, x, rgb)
            return
        h = self.model.head(plan.exit_point, plan.partition_point, p.x)
        p.device_ms = (time.perf_counter() - start) * 1e3
        if take in (dp.Take.DEVICE_ONLY, dp.Take.DEVICE_ONLY_TRIAL):
            self.answer(p, top_k(h, self.top_k))
            if take is dp.Take.DEVICE_ONLY_TRIAL:  # its input, to a new edge
                x, p.trial, p.partition = p.x, True, 0
                self.send(p, x, rgb)
            return
        p.h = h if take is dp.Take.SEND else None
        self.send(p, h, rgb)  # its encoding counts in p.device_ms
        if p.trial:  # it carries the activation; the device finishes the exit from it
            self.answer_alone(p, how, time.perf_counter(), h=h)

    def send(self, p: dp.Pending, h: torch.Tensor, rgb: np.ndarray) -> None:
        """Send an activation (at partition 0: the input ``h``, whose pixels at
        the network's input size are ``rgb``) to the edge, coded as
        ``upload_codec`` says; the policy waits for its reply."""
        out = self.encode(p, h, rgb)
        p.nbytes = len(out.data)
        with self.tick_lock:
            self.policy.sent(p, self.now_s(), self.age_ms(p.header))
            if self.tick_timer.is_canceled():
                self.tick_timer.reset()
        out.deadline_ms = dp.edge_budget_ms(p.plan, p.give_up_s - p.sent_s)
        self.link(dp.edge_of(p.plan)).publish(out)

    def upload_codec(self, p: dp.Pending) -> str:
        """How a frame's upload is coded: a trial's input as TRIAL_INPUT_CODEC,
        anything else as its plan says (raw if the plan predates codecs)."""
        if p.trial and p.partition == 0:
            return TRIAL_INPUT_CODEC
        codec = dp.plan_codec(p.plan)
        # on_plan refused plans whose codec cannot code their partition
        return codec if codec_names.valid_at(codec, p.partition, p.plan.num_layers) else \
            codec_names.RAW

    def encode(self, p: dp.Pending, h: torch.Tensor, rgb: np.ndarray) -> Tensor:
        """The frame's Tensor message. Coding it (not raw) adds to
        p.device_ms (the planner predicts it as device time) and, on an
        emulated slower device, is slowed as the layers are. A payload the
        codec cannot code (an activation holding NaN, or beyond float16's
        range) goes raw, counted (encode_fallbacks)."""
        codec = self.upload_codec(p)
        if codec != codec_names.RAW:
            start = time.perf_counter()
            try:
                if p.partition == 0:
                    enc = self.model.run_slowed(
                        ('encode', codec, 0), lambda: payload_codec.encode_input(rgb, codec))
                else:
                    a = h.numpy()
                    enc = self.model.run_slowed(
                        ('encode', codec, p.plan.exit_point, p.partition),
                        lambda: payload_codec.encode_activation(a, codec))
                return msgs.coded_tensor_msg(p, enc, self.source_id)
            except (payload_codec.CodecError, TensorCodecError) as exc:
                self.stats.inc('encode_fallbacks')
                self.get_logger().warning(f'frame {p.seq}: cannot code it as {codec} ({exc}); '
                                          'sending it raw', throttle_duration_sec=5.0)
            finally:
                p.device_ms += (time.perf_counter() - start) * 1e3
        return msgs.tensor_msg(p, h.numpy(), self.source_id)

    def on_reply(self, reply: EdgeReply) -> None:
        if reply.source_id != self.source_id:
            return  # another device's answer
        not_run = NOT_RUN.get(reply.status, '')
        if reply.status == EdgeReply.STATUS_OK:
            why = dp.reply_problem(reply.top_k_class_ids, reply.top_k_scores,
                                   reply.edge_total_ms, self.model.card.num_classes)
        elif not_run:
            why = dp.time_problem(reply.edge_total_ms)
        else:
            why = f'unknown status {reply.status}'
        edge_ms = float(reply.edge_total_ms) if why is None else 0.0
        r = self.policy.reply(reply.frame_seq, self.now_s(), edge_ms, well_formed=why is None,
                              not_run=not_run if why is None else '')
        if r.recovered:
            self.get_logger().info('the edge answers again: resuming co-inference')
        if r.fact is not None:
            self.report(r.fact)
        if r.kind is dp.ReplyKind.MALFORMED:
            self.get_logger().error(f'frame {reply.frame_seq}: malformed edge reply ({why}); '
                                    'answering it on the device', throttle_duration_sec=5.0)
            self.work.urgent(r.pending)
        elif r.kind is dp.ReplyKind.NOT_RUN:
            self.get_logger().warning(
                f'frame {reply.frame_seq}: the edge did not run it ({not_run}: '
                f'{NOT_RUN_WHY[not_run]}); answering it on the device', throttle_duration_sec=5.0)
            self.work.urgent(r.pending)
        elif r.kind is dp.ReplyKind.ANSWER:
            self.answer(r.pending, TopK(list(reply.top_k_class_ids), list(reply.top_k_scores)),
                        transfer_ms=r.transfer_ms, edge_ms=edge_ms)

    def on_tick(self) -> None:
        """Give up on the frames the edge did not answer in time (the device
        answers them alone); report the transfers still out."""
        now_s = self.now_s()
        tick = self.policy.tick(now_s)
        for fact in tick.facts:
            self.report(fact)
        if tick.edge_down is not None:
            p = tick.edge_down
            self.get_logger().warning(
                f'frame {p.seq}: no edge reply in {1e3 * (p.give_up_s - p.sent_s):.0f} ms; '
                'answering on the device until the edge answers again', throttle_duration_sec=5.0)
        for p in tick.expired:
            age_ms = self.age_ms(p.header)
            if self.policy.past_deadline(p, age_ms):  # nothing to compute: answered now
                self.answer_alone(p, self.policy.route(p, age_ms, fallback_exit=0),
                                  time.perf_counter())
            else:
                self.work.urgent(p)  # the compute thread answers it alone
        with self.tick_lock:
            if self.policy.idle(self.now_s()):
                self.tick_timer.cancel()

    # --- outputs ---------------------------------------------------------------------
    def report(self, fact: dp.TransferFact) -> None:
        self.transfer_pub.publish(msgs.transfer_msg(fact))

    def fallback_exit(self, plan: Plan) -> int:
        return plan.fallback_exit_point or self.best.exit_point

    def answer_alone(self, p: dp.Pending, how: dp.Alone, start: float, *,
                     h: torch.Tensor | None = None) -> None:
        """Answer a frame on the device as the policy chose (``h``: the
        activation, when the frame does not keep it)."""
        plan, route = p.plan, how.route
        if route is dp.Route.FINISH:  # the head's time is in p.device_ms already
            logits = self.model.tail(plan.exit_point, p.partition, p.h if h is None else h)
            exit_point, n = plan.exit_point, plan.num_layers
        elif route is dp.Route.FALLBACK:
            exit_point, n = how.exit_point, self.layers[how.exit_point]
            logits, p.device_ms = self.model.head(exit_point, n, p.x), 0.0
        # A frame given up on waited this long for the edge (the planner learns
        # from it, calibration item 6); one never sent, 0.
        waited_ms = dp.waited_ms(p)
        if route in (dp.Route.FINISH, dp.Route.FALLBACK):
            p.device_ms += (time.perf_counter() - start) * 1e3
            self.answer(p, top_k(logits, self.top_k), fallback=True, exit_point=exit_point,
                        partition=n, predicted_ms=how.predicted_ms, transfer_ms=waited_ms)
        elif route is dp.Route.LATE:
            self.get_logger().warning(f'frame {p.seq}: no time left for any exit and frames are '
                                      'waiting: answered at once as late',
                                      throttle_duration_sec=5.0)
            self.answer(p, TopK([], []), fallback=True, failed=True, skipped=True,
                        transfer_ms=waited_ms)
        else:
            self.get_logger().error(f'frame {p.seq}: neither its activation nor its input is '
                                    'kept; answering it as failed', throttle_duration_sec=5.0)
            self.answer(p, TopK([], []), fallback=True, failed=True)

    def answer(self, p: dp.Pending, result: TopK, **how: object) -> None:
        """Publish a frame's answer (``how``: as device_messages.result_msg takes)."""
        label = p.label if p.label >= 0 else self.labels.take(key(p.header))  # came since?
        latency_ms = self.age_ms(p.header)
        msg = msgs.result_msg(p, result, source_id=self.source_id, label=label,
                              latency_ms=latency_ms, **how)
        self.result_pub.publish(msg)
        self.stats.answered(latency_ms, msg.deadline_met, label, msg.class_id)

    def publish_diagnostics(self) -> None:
        values: dict[str, object] = dict(self.stats.snapshot())
        values.update({'plan_id': self.plan.plan_id, 'exit_point': self.plan.exit_point,
                       'partition_point': self.plan.partition_point,
                       'codec': dp.plan_codec(self.plan),
                       'in_flight': self.policy.in_flight, 'edge_answering': self.policy.edge_ok,
                       'callback_errors': self.callback_errors,
                       'bandwidth_kbps': self.bandwidth_kbps})
        ok, text = self.policy.health(values)
        level = diagnostics.OK if ok else diagnostics.WARN
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: co-inference', level,
                               text, values)))


def key(header: object) -> tuple[int, int, str]:
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


def main(args: list[str] | None = None) -> int:
    return run_node(DeviceNode, args, refused=(m.ModelError, ValueError))


if __name__ == '__main__':
    raise SystemExit(main())

"""bandwidth_monitor: the device-to-edge bandwidth, measured and published.

Device side. Takes passive samples that the device node publishes on
``link/samples`` (one BandwidthEstimate per real tensor transfer, with
``sample_count`` 1), and sends probes (``probe``, a Tensor of
``probe_bytes``) at most ``probe_rate_hz`` and spending at most
``probe_duty`` of the link's time, while no real transfer measured the link
for ``probe_idle_s`` (a device-only plan sends nothing); the edge's
probe_echo answers on ``probe/reply``. A probe and a frame that shared the
link (the device stamps each passive sample with its send time and size)
each measured a share of it: the probe's sample is dropped and the frame's
counts the probe's bytes too. A probe out twice as long as the
estimate predicts gives an upper-bound sample at once, so a step down is
seen before the slow probe lands. Publishes the smoothed estimate on
``bandwidth`` (transient local) and ``/diagnostics``.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from edgent_ros import diagnostics, tensor_codec
from edgent_ros.bandwidth import (
    SOURCE_PASSIVE,
    SOURCE_PROBE,
    BandwidthEstimator,
    ProbeScheduler,
    overdue_bound,
    transfer_sample,
)
from edgent_ros.msg import BandwidthEstimate, EdgeReply, Tensor
from edgent_ros.nodes.params import declare_float, declare_int
from edgent_ros.nodes.runner import run_node
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS

PROBE_NAME = 'probe'


class BandwidthMonitor(Node):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('bandwidth_monitor', **kwargs)
        self.probe_bytes = declare_int(self, 'probe_bytes', 8192,
                                       'Size of a probe message, bytes.', 4096, 1 << 22,
                                       read_only=True)
        rate = declare_float(self, 'probe_rate_hz', 5.0, 'Most probes per second.',
                             0.01, 50.0, read_only=True)
        duty = declare_float(self, 'probe_duty', 0.5,
                             'Most of the link\'s time spent on probes (fraction).', 0.01, 1.0,
                             read_only=True)
        idle = declare_float(self, 'probe_idle_s', 0.25,
                             'Probe only when no real transfer was measured for this long, s.',
                             0.0, 3600.0, read_only=True)
        window = declare_int(self, 'window', 8, 'Samples in the smoothing window.', 1, 1000,
                             read_only=True)
        self.min_bytes = declare_int(self, 'min_sample_bytes', 4096,
                                     'Transfers smaller than this are not measured, bytes.',
                                     0, 1 << 24, read_only=True)
        self.probe_timeout_s = declare_float(self, 'probe_timeout_s', 3.0,
                                             'A probe unanswered this long is lost, s.',
                                             0.1, 600.0, read_only=True)
        period = declare_float(self, 'publish_period_s', 0.25,
                               'How often the estimate is published, s.', 0.01, 60.0,
                               read_only=True)
        self.estimator = BandwidthEstimator(window=window)
        self.scheduler = ProbeScheduler(max_rate_hz=rate, idle_s=idle, duty=duty,
                                        probe_bytes=self.probe_bytes)
        self.outstanding: dict[int, float] = {}
        self.bounded: dict[int, float] = {}  # probe seq -> time of its provisional sample
        # Wall-clock flight of probes, to find those that shared the link with a
        # frame: outstanding (seq -> sent) and landed (sent, landed, sample time).
        self.flying: dict[int, float] = {}
        self.landed: deque[tuple[float, float, float | None]] = deque(maxlen=16)
        self.spoilt: set[int] = set()
        self.transfers: dict[tuple[int, int], float] = {}  # send stamp -> sample time
        self.overlapped = 0
        self.bound_samples = 0
        self.probes_sent = self.probes_answered = self.probes_lost = 0
        self.passive_samples = self.dropped_samples = 0
        self.seq = 0
        payload = np.random.default_rng(0).integers(0, 256, self.probe_bytes, dtype=np.uint8)
        self.probe_msg = tensor_codec.to_msg(payload, name=PROBE_NAME)
        self.probe_msg.source_id = self.get_namespace()
        self.estimate_pub = self.create_publisher(BandwidthEstimate, 'bandwidth', LATCHED_QOS)
        self.probe_pub = self.create_publisher(Tensor, 'probe', TENSOR_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(EdgeReply, 'probe/reply', self.on_reply, TENSOR_QOS)
        self.create_subscription(BandwidthEstimate, 'link/samples', self.on_passive, 50)
        self.create_timer(min(0.05, 1.0 / rate), self.maybe_probe)
        self.create_timer(period, self.publish_estimate)
        self.create_timer(1.0, self.publish_diagnostics)

    def now_s(self) -> float:
        return time.monotonic()

    def current_kbps(self) -> float | None:
        estimate = self.estimator.estimate(peek=True)
        return None if estimate is None else estimate.kbps

    def maybe_probe(self) -> None:
        now = self.now_s()
        kbps = self.current_kbps()
        for seq, sent in list(self.outstanding.items()):
            if now - sent > self.probe_timeout_s:
                del self.outstanding[seq]
                self.bounded.pop(seq, None)
                self.flying.pop(seq, None)
                self.spoilt.discard(seq)
                self.probes_lost += 1
            elif seq in self.bounded:  # still out: a lower bound now, revising the last
                if self.estimator.revise(self.bounded[seq],
                                         self.probe_bytes * 8.0 / ((now - sent) * 1e3)):
                    continue
            elif kbps is not None and seq not in self.spoilt:
                bound = overdue_bound(self.probe_bytes, (now - sent) * 1e3,
                                      self.probe_bytes * 8.0 / kbps)
                if bound is not None and bound < kbps:
                    self.bounded[seq] = now
                    self.bound_samples += 1
                    if self.estimator.add(bound, SOURCE_PROBE, now):
                        self.get_logger().info(f'bandwidth fell: a probe is overdue (at most '
                                               f'{bound:.0f} kbps)', throttle_duration_sec=10.0)
                        self.publish_estimate()  # a change goes out now, not next period
        if self.outstanding or not self.scheduler.due(now, kbps):
            return
        self.seq += 1
        self.probe_msg.frame_seq = self.seq
        self.probe_msg.header.stamp = self.get_clock().now().to_msg()
        self.outstanding[self.seq] = self.now_s()
        self.flying[self.seq] = time.time()
        self.probe_pub.publish(self.probe_msg)
        self.probes_sent += 1

    def on_reply(self, reply: EdgeReply) -> None:
        sent = self.outstanding.pop(reply.frame_seq, None)
        if sent is None:
            return
        provisional = self.bounded.pop(reply.frame_seq, None)
        sent_wall = self.flying.pop(reply.frame_seq, time.time())
        self.probes_answered += 1
        if reply.frame_seq in self.spoilt:  # a frame crossed the link meanwhile
            self.spoilt.discard(reply.frame_seq)
            self.landed.append((sent_wall, time.time(), None))
            return
        rtt_ms = (self.now_s() - sent) * 1e3
        self.scheduler.landed(rtt_ms / 1e3, self.current_kbps())
        kbps = transfer_sample(self.probe_bytes, rtt_ms, reply.edge_total_ms,
                               min_bytes=self.min_bytes)
        if kbps is None:
            self.dropped_samples += 1
            return
        if provisional is not None and self.estimator.revise(provisional, kbps):
            self.landed.append((sent_wall, time.time(), provisional))
            self.publish_estimate()  # the overdue bound is replaced by what the probe measured
            return
        now = self.now_s()
        self.landed.append((sent_wall, time.time(), now))
        if self.estimator.add(kbps, SOURCE_PROBE, now):
            self.get_logger().info(f'bandwidth changed: probe measured {kbps:.0f} kbps',
                                   throttle_duration_sec=10.0)
            self.publish_estimate()

    def on_passive(self, msg: BandwidthEstimate) -> None:
        kbps = float(msg.last_sample_kbps or msg.bandwidth_kbps)
        if not (math.isfinite(kbps) and kbps > 0):
            self.dropped_samples += 1
            return
        now = self.now_s()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        # When the transfer left, on this node's monotonic clock.
        self.scheduler.passive(now, now - (time.time() - stamp) if stamp > 0 else None)
        if 0 < msg.sample_bytes < self.min_bytes:
            self.dropped_samples += 1  # too small to say anything of the rate
            return
        shared = self.shared_the_link(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        if shared:
            self.overlapped += 1
            if msg.sample_bytes == 0:
                return  # cannot tell the frame's share
            # The frame and the probes together crossed in the frame's time.
            kbps *= 1.0 + shared / msg.sample_bytes
        self.passive_samples += 1
        # A transfer is known by its send stamp: a later sample of the same one
        # (the reply to a frame first reported as overdue) revises the earlier.
        transfer = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        earlier = self.transfers.get(transfer) if transfer != (0, 0) else None
        if earlier is not None:
            # Revise the transfer's sample if the estimate still holds it; if a
            # newer regime has replaced it, the old transfer says nothing now.
            if self.estimator.revise(earlier, kbps):
                self.publish_estimate()
            return
        if transfer != (0, 0):
            self.transfers[transfer] = now
            while len(self.transfers) > 64:
                self.transfers.pop(next(iter(self.transfers)))
        if self.estimator.add(kbps, SOURCE_PASSIVE, now):
            self.get_logger().info(f'bandwidth changed: transfer measured {kbps:.0f} kbps',
                                   throttle_duration_sec=10.0)
            self.publish_estimate()

    def shared_the_link(self, frame_sent: float) -> int:
        """Bytes of probes that crossed the link together with a frame sent at
        ``frame_sent`` (wall clock, s; 0 = unknown) and landed now. Such probes
        measured a share of the link, not the link: their samples are dropped
        (or will be, when they land)."""
        if frame_sent <= 0:
            return 0
        shared = 0
        for seq in self.flying:  # still out: it shares the link with this frame
            shared += self.probe_bytes
            self.spoilt.add(seq)
            if seq in self.bounded:
                self.estimator.discard(self.bounded.pop(seq))
        for _sent, landed, sample_time in self.landed:
            if landed > frame_sent:
                shared += self.probe_bytes
                if sample_time is not None:
                    self.estimator.discard(sample_time)
        if shared:
            self.landed = deque(((s, lnd, None) for s, lnd, _ in self.landed),
                                maxlen=self.landed.maxlen)
        return shared

    def publish_estimate(self) -> None:
        self.estimator.expire(self.now_s())
        estimate = self.estimator.estimate()
        if estimate is None:
            return
        msg = BandwidthEstimate()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.bandwidth_kbps = estimate.kbps
        msg.last_sample_kbps = estimate.last_kbps
        msg.source = estimate.source
        msg.sample_count = estimate.samples
        msg.confidence = estimate.confidence
        msg.change_detected = estimate.change
        self.estimate_pub.publish(msg)

    def publish_diagnostics(self) -> None:
        estimate = self.estimator.estimate(peek=True)
        level = diagnostics.OK if estimate is not None else diagnostics.WARN
        values: dict[str, object] = {
            'probes_sent': self.probes_sent, 'probes_answered': self.probes_answered,
            'probes_lost': self.probes_lost, 'passive_samples': self.passive_samples,
            'dropped_samples': self.dropped_samples, 'overdue_bounds': self.bound_samples,
            'overlapped_samples': self.overlapped,
            'regime_changes': self.estimator.changes,
        }
        if estimate is not None:
            values.update({'bandwidth_kbps': estimate.kbps, 'samples': estimate.samples,
                           'confidence': estimate.confidence})
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: link', level,
                               'measuring' if estimate else 'no sample yet', values)))


def main(args: list[str] | None = None) -> int:
    return run_node(BandwidthMonitor, args, refused=(ValueError,))


if __name__ == '__main__':
    raise SystemExit(main())

"""bandwidth_monitor: the device-to-edge bandwidth, measured and published.

Device side. Takes the device node's transfer reports on ``link/transfers``
(TransferReport: bytes, send stamp, round trip, the edge's time, still out;
``edgent_ros.bandwidth.transfer_report_kbps`` alone decides what one counts
as: a sample, an upper bound, or, under ``min_sample_bytes``, only when a
frame left), and sends probes (``probe``, a Tensor of at most ``probe_bytes``,
smaller if that is all that lands before the next frame) at most
``probe_rate_hz`` and spending at most ``probe_duty`` of the link's time,
while no real transfer measured the link for ``probe_idle_s`` (a
device-only plan sends nothing); the edge's probe_echo answers on
``probe/reply``. The link is first in, first out, and
the device stamps each transfer report with its send time and size: a probe
sent before a frame and still out then was ahead of it (the frame's sample
counts the probe's bytes too; the probe's stands), one sent while the frame
was out was behind it and measured a share of the link (its sample is
dropped). A probe out three times as long as the estimate predicts gives an
upper bound at once, revised as it stays out, so a step down is seen before
the slow probe lands; so does a frame's transfer reported still out.
Every time here is the node's clock (ROS time; sim time under use_sim_time),
the one the device stamps its reports with. Publishes the smoothed estimate on ``bandwidth``
(transient local: at once when a change or a bound moves it, else every
``publish_period_s``) and ``/diagnostics``.

Several edges (``edges``: auto, or their namespaces): this node then probes
none itself; it finds the edges (by their ``edge_load`` topics,
edgent_ros.edge_choice) and runs, in this process, one monitor per edge
(``bandwidth_monitor_<edge>``, probing ``<edge>/probe``, taking the transfer
reports of frames sent there), each publishing on ``bandwidth`` with
``edge_namespace`` set; a monitor whose edge leaves the graph is removed.
"""

from __future__ import annotations

import math

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks

from edgent_ros import diagnostics, tensor_codec
from edgent_ros.bandwidth import (
    SOURCE_PASSIVE,
    SOURCE_PROBE,
    BandwidthEstimator,
    ProbeLedger,
    ProbeScheduler,
    overdue_bound,
    transfer_report_kbps,
    transfer_sample,
)
from edgent_ros.edge_choice import edges_in_graph, edges_problem, parse_edges
from edgent_ros.nodes.params import ParamSchema, ParamSpec
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import BandwidthEstimate, EdgeReply, Tensor, TransferReport

PROBE_NAME = 'probe'
# After an echo matched: a probe unanswered for HURRY_PROBE_S is replaced by a
# new one, for at most HURRY_FOR_S or until one is answered.
HURRY_FOR_S = 5.0
HURRY_PROBE_S = 0.25


# All read-only: the estimator and the probe schedule are made from them at start.
PARAMS = ParamSchema(
    ParamSpec('probe_bytes', 8192, 'Largest probe message, bytes.', 4096, 1 << 22,
              read_only=True),
    ParamSpec('probe_rate_hz', 5.0, 'Most probes per second.', 0.01, 50.0, read_only=True),
    ParamSpec('probe_duty', 0.6, 'Most of the link\'s time spent on probes (fraction).',
              0.01, 1.0, read_only=True),
    ParamSpec('probe_idle_s', 0.25,
              'Probe only when no real transfer was measured for this long, s.', 0.0, 3600.0,
              read_only=True),
    ParamSpec('window', 8, 'Samples in the smoothing window.', 1, 1000, read_only=True),
    ParamSpec('min_sample_bytes', 4096, 'Transfers smaller than this are not measured, bytes.',
              0, 1 << 24, read_only=True),
    ParamSpec('probe_timeout_s', 3.0, 'A probe unanswered this long is lost, s.', 0.1, 600.0,
              read_only=True),
    ParamSpec('publish_period_s', 0.25, 'How often the estimate is published, s.', 0.01, 60.0,
              read_only=True),
    ParamSpec('edges', '',
              'Empty: measure the link to the one edge on `probe`. auto: to every edge found '
              'by its edge_load topic; or a comma-separated list of edge namespaces.',
              read_only=True, check=lambda v: edges_problem(str(v))),
    ParamSpec('edge_namespace', '',
              'The edge this monitor measures (set by a monitor of several edges for the one '
              'it runs per edge); its estimates carry it, and it takes only the transfer '
              'reports of frames sent there.', read_only=True),
)
# Parameters a monitor of several edges passes on to the one it runs per edge.
PER_EDGE = ('probe_bytes', 'probe_rate_hz', 'probe_duty', 'probe_idle_s', 'window',
            'min_sample_bytes', 'probe_timeout_s', 'publish_period_s')
DISCOVER_S = 1.0


class BandwidthMonitor(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('bandwidth_monitor', **kwargs)
        p = PARAMS.attach(self, {})
        self.edge_ns = str(p['edge_namespace'])
        self.edges = parse_edges(str(p['edges']))
        self.children: dict[str, BandwidthMonitor] = {}
        if self.edges != () and not self.edge_ns:
            self.params = p
            self.create_timer(DISCOVER_S, self.discover)
            self.get_logger().info('measuring the link to every edge: '
                                   f'{", ".join(self.edges) if self.edges else "auto"}')
            return
        self.probe_bytes, self.min_bytes = p['probe_bytes'], p['min_sample_bytes']
        self.probe_timeout_s = p['probe_timeout_s']
        rate, duty, idle = p['probe_rate_hz'], p['probe_duty'], p['probe_idle_s']
        window, period = p['window'], p['publish_period_s']
        self.estimator = BandwidthEstimator(window=window)
        self.scheduler = ProbeScheduler(max_rate_hz=rate, idle_s=idle, duty=duty,
                                        probe_bytes=self.probe_bytes,
                                        min_bytes=max(1, self.min_bytes))
        self.outstanding: dict[int, tuple[float, int]] = {}  # seq -> (sent, bytes)
        self.bounded: dict[int, float] = {}  # probe seq -> time of its provisional sample
        # Flight of probes, to find those that shared the link with a frame.
        self.ledger = ProbeLedger()
        self.transfers: dict[tuple[int, int], float] = {}  # send stamp -> sample time
        self.overlapped = 0
        self.bound_samples = 0
        self.probes_sent = self.probes_answered = self.probes_lost = 0
        self.hurry_until = -math.inf  # after an echo matched: until it answers a probe
        self.echo_since = -math.inf  # when an echo last matched
        self.stale_reports = 0
        self.passive_samples = self.dropped_samples = 0
        self.seq = 0
        self.payload = np.random.default_rng(0).integers(0, 256, self.probe_bytes,
                                                         dtype=np.uint8)
        self.estimate_pub = self.create_publisher(BandwidthEstimate, 'bandwidth', LATCHED_QOS)
        self.probe_pub = self.create_publisher(
            Tensor, 'probe', TENSOR_QOS,
            event_callbacks=PublisherEventCallbacks(matched=self.on_echo_matched))
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(
            EdgeReply, 'probe/reply', self.on_reply, TENSOR_QOS,
            event_callbacks=SubscriptionEventCallbacks(matched=self.on_echo_matched))
        self.create_subscription(TransferReport, 'link/transfers', self.on_transfer, 50)
        self.create_timer(min(0.05, 1.0 / rate), self.maybe_probe)
        self.create_timer(period, self.publish_estimate)
        self.create_timer(1.0, self.publish_diagnostics)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- several edges: one monitor per edge, in this process ---------------------
    def discover(self) -> None:
        found = list(self.edges) if self.edges else \
            edges_in_graph(self.get_topic_names_and_types())
        for ns in [n for n in self.children if n not in found]:
            child = self.children.pop(ns)
            if self.executor is not None:
                self.executor.remove_node(child)
            child.destroy_node()
            self.get_logger().info(f'edge {ns} gone: its link is no longer measured')
        for ns in [n for n in found if n not in self.children]:
            slug = ns.strip('/').replace('/', '_') or 'root'
            args = ['--ros-args', '-r', f'__node:={self.get_name()}_{slug}',
                    '-r', f'__ns:={self.get_namespace()}',
                    '-r', f'probe:={ns.rstrip("/")}/probe',
                    '-r', f'probe/reply:={ns.rstrip("/")}/probe/reply',
                    '-r', f'bandwidth:={self.resolve_topic_name("bandwidth")}',
                    '-r', f'link/transfers:={self.resolve_topic_name("link/transfers")}',
                    '-p', f'edge_namespace:={ns}']
            args += [a for k in PER_EDGE for a in ('-p', f'{k}:={self.params[k]!r}')]
            child = BandwidthMonitor(cli_args=args, use_global_arguments=False,
                                     context=self.context)
            self.children[ns] = child
            if self.executor is not None:
                self.executor.add_node(child)
            self.get_logger().info(f'edge {ns} found: measuring the link to it')

    def destroy_node(self) -> None:
        for child in self.children.values():
            child.destroy_node()
        self.children.clear()
        super().destroy_node()

    def current_kbps(self) -> float | None:
        estimate = self.estimator.estimate(peek=True)
        return None if estimate is None else estimate.kbps

    def maybe_probe(self) -> None:
        now = self.now_s()
        kbps = self.current_kbps()
        moved = False
        for seq, (sent, nbytes) in list(self.outstanding.items()):
            at_most = nbytes * 8.0 / ((now - sent) * 1e3)
            if now - sent > self.probe_timeout_s:
                del self.outstanding[seq]
                if seq in self.bounded:  # its last bound stays, as a plain sample
                    self.estimator.revise(self.bounded.pop(seq), at_most)
                self.ledger.lost(seq)
                self.probes_lost += 1
            elif seq in self.bounded:  # still out: a tighter bound, revising the last
                moved = self.estimator.revise(self.bounded[seq], at_most, bound=True) or moved
            elif kbps is not None and seq not in self.ledger.spoilt:
                bound = overdue_bound(nbytes, (now - sent) * 1e3, nbytes * 8.0 / kbps)
                if bound is not None and bound < kbps:
                    self.bounded[seq] = now
                    self.bound_samples += 1
                    moved = True
                    if self.estimator.add(bound, SOURCE_PROBE, now, bound=True):
                        self.get_logger().info(f'bandwidth fell: a probe is overdue (at most '
                                               f'{bound:.0f} kbps)', throttle_duration_sec=10.0)
        if moved:
            self.publish_estimate()  # a bound that moved goes out now, not next period
        if now < self.hurry_until and any(now - sent > HURRY_PROBE_S
                                          for sent, _ in self.outstanding.values()):
            # An echo just matched, but DDS matches the two sides of each
            # topic at slightly different times, and a probe (or its reply)
            # sent in between is not resent for seconds: send a new one.
            self.drop_outstanding()
        nbytes = 0 if self.outstanding else self.scheduler.probe_now(now, kbps)
        if nbytes == 0:
            return
        self.seq += 1
        probe = tensor_codec.to_msg(self.payload[:nbytes], name=PROBE_NAME)
        probe.source_id = self.get_namespace()
        probe.frame_seq = self.seq
        probe.header.stamp = self.get_clock().now().to_msg()
        self.outstanding[self.seq] = (now, nbytes)
        self.ledger.sent(self.seq, now, nbytes)
        self.probe_pub.publish(probe)
        self.probes_sent += 1

    def on_echo_matched(self, info: object) -> None:
        """A probe echo (the edge side) matched, either way: one that was
        (re)started or found again. Probes out before went to an edge that is
        gone or could not answer yet, and one sent at the estimate of a dead
        link would wait for many seconds: a new probe goes at once."""
        if info.current_count_change > 0:
            self.drop_outstanding()
            self.echo_since = self.now_s()
            self.hurry_until = self.echo_since + HURRY_FOR_S

    def drop_outstanding(self) -> None:
        """Take the probes out as lost (their bounds stay as samples), and
        probe again at the next chance."""
        for seq in list(self.outstanding):
            del self.outstanding[seq]
            self.bounded.pop(seq, None)
            self.ledger.lost(seq)
            self.probes_lost += 1
        self.scheduler.edge_appeared()

    def on_reply(self, reply: EdgeReply) -> None:
        out = self.outstanding.pop(reply.frame_seq, None)
        if out is None:
            return
        self.hurry_until = -math.inf  # the echo answers
        sent, nbytes = out
        provisional = self.bounded.pop(reply.frame_seq, None)
        self.probes_answered += 1
        now = self.now_s()
        if reply.frame_seq in self.ledger.spoilt:  # it was behind a frame
            self.ledger.land(reply.frame_seq, now, None)
            return
        rtt_ms = (now - sent) * 1e3
        self.scheduler.landed(rtt_ms / 1e3, self.current_kbps(), nbytes,
                              overdue=provisional is not None, now_s=now)
        kbps = transfer_sample(nbytes, rtt_ms, reply.edge_total_ms, min_bytes=self.min_bytes)
        if kbps is None:
            self.dropped_samples += 1
            self.ledger.land(reply.frame_seq, now, None)
            if provisional is not None:  # its bound said nothing either
                self.estimator.discard(provisional)
            return
        if provisional is not None and self.estimator.revise(provisional, kbps, mixed=True):
            self.ledger.land(reply.frame_seq, now, provisional)
            self.publish_estimate()  # the overdue bound is replaced by what the probe measured
            return
        self.ledger.land(reply.frame_seq, now, now)
        if self.estimator.add(kbps, SOURCE_PROBE, now):
            self.get_logger().info(f'bandwidth changed: probe measured {kbps:.0f} kbps',
                                   throttle_duration_sec=10.0)
            self.publish_estimate()

    def on_transfer(self, msg: TransferReport) -> None:
        if msg.edge_namespace != self.edge_ns:
            return  # a frame sent to another edge: that link's monitor takes it
        now = self.now_s()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # sent, same clock
        transfer = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if msg.still_out and stamp < self.echo_since:
            # Sent before the edge side (re)appeared: to an edge that is gone.
            # That it never came back says nothing of the link to the new one.
            self.stale_reports += 1
            return
        kbps = transfer_report_kbps(
            int(msg.bytes), float(msg.round_trip_ms), float(msg.edge_held_ms),
            still_out=bool(msg.still_out), given_up=bool(msg.given_up),
            expected_ms=float(msg.expected_ms), held=transfer in self.transfers,
            estimate_kbps=self.current_kbps(), min_bytes=self.min_bytes)
        self.scheduler.passive(now, stamp if stamp > 0 else None, measured=kbps is not None)
        if kbps is None and msg.still_out and msg.bytes >= self.min_bytes:
            # A frame large enough to measure the link is crossing it: a probe
            # sent after it waits behind it, and must not bound the link by
            # that wait (a 49 KB frame at 2 Mbit/s made each such probe cap the
            # estimate at a fifth of the link). Its landing is measured anyway.
            self.share_the_link(stamp)
        if kbps is None:
            if not msg.still_out:
                self.dropped_samples += 1  # says nothing of the rate, only the pace
            return
        bound = bool(msg.still_out)
        ahead, ahead_out = self.share_the_link(stamp)
        if ahead:
            self.overlapped += 1
            if bound and ahead_out:
                return  # the probe ahead, still out, bounds the link tighter itself
            # The frame waited for the probes ahead: their bytes crossed in its time too.
            kbps *= 1.0 + ahead / msg.bytes
        self.passive_samples += 1
        # A transfer is known by its send stamp: a later sample of the same one
        # (the reply to a frame first reported as overdue) revises the earlier.
        earlier = self.transfers.get(transfer) if transfer != (0, 0) else None
        if earlier is not None:
            # Revise the transfer's sample if the estimate still holds it; if a
            # newer regime has replaced it, the old transfer says nothing now.
            # A landing after bounds: the mean across the fall the bounds saw.
            if self.estimator.revise(earlier, kbps, bound=bound, mixed=not bound):
                self.publish_estimate()
            return
        if transfer != (0, 0):
            self.transfers[transfer] = now
            while len(self.transfers) > 64:
                self.transfers.pop(next(iter(self.transfers)))
        if self.estimator.add(kbps, SOURCE_PASSIVE, now, bound=bound):
            self.get_logger().info(f'bandwidth changed: transfer {"out" if bound else "measured"}'
                                   f' {"at most " if bound else ""}{kbps:.0f} kbps',
                                   throttle_duration_sec=10.0)
            self.publish_estimate()
        elif bound:
            self.publish_estimate()  # a bound caps the estimate: out now, not next period

    def share_the_link(self, frame_sent: float) -> tuple[int, bool]:
        """Probes that crossed the link with a frame sent at ``frame_sent`` (this
        node's clock, s; 0 = unknown): drop the samples of those behind it; return the
        bytes of those ahead of it, and whether one of them is still out."""
        if frame_sent <= 0:
            return 0, False
        ahead, ahead_out, behind, discard = self.ledger.frame(frame_sent)
        for seq in behind:
            if seq in self.bounded:
                self.estimator.discard(self.bounded.pop(seq))
        for sample_time in discard:
            self.estimator.discard(sample_time)
        return ahead, ahead_out

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
        msg.upper_bound = estimate.capped
        msg.edge_namespace = self.edge_ns
        self.estimate_pub.publish(msg)

    def publish_diagnostics(self) -> None:
        estimate = self.estimator.estimate(peek=True)
        level = diagnostics.OK if estimate is not None else diagnostics.WARN
        values: dict[str, object] = {
            'callback_errors': self.callback_errors,
            'probes_sent': self.probes_sent, 'probes_answered': self.probes_answered,
            'probes_lost': self.probes_lost, 'stale_reports': self.stale_reports,
            'passive_samples': self.passive_samples,
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

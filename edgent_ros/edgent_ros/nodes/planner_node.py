"""planner_node: publishes Edgent's exit/partition decision for the bandwidth now.

Subscribes ``bandwidth`` (BandwidthEstimate); publishes ``plan`` (Plan,
transient local: a device that starts late still gets the plan in force)
whenever the decision changes, and ``/diagnostics``. The decision is
Algorithm 1 (``edgent_ros.planner``); ``hysteresis`` keeps it from flapping
when the bandwidth hovers near a threshold.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from edgent_ros import card as m
from edgent_ros import diagnostics
from edgent_ros import latency as lat
from edgent_ros.bandwidth import MIN_SAMPLE_BYTES
from edgent_ros.nodes.params import accept, declare_bool, declare_float, declare_str, refuse
from edgent_ros.nodes.runner import run_node
from edgent_ros.planner import MODES, Decision, PlanBasis, Planner, should_switch
from edgent_ros.qos import LATCHED_QOS
from edgent_ros_interfaces.msg import BandwidthEstimate, InferenceResult, Plan


class PlannerNode(Node):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('planner', **kwargs)
        model = declare_str(self, 'model', m.DEFAULT_MODEL,
                            'Model name (in the package models/) or path to its YAML.',
                            read_only=True)
        device_profile = declare_str(self, 'device_profile', 'paper_pi3_device',
                                     'Latency profile of the device (name or YAML path); '
                                     'may be changed at run time (checked before use).')
        edge_profile = declare_str(self, 'edge_profile', 'paper_desktop_edge',
                                   'Latency profile of the edge (name or YAML path); may be '
                                   'changed at run time (checked before use).')
        self.deadline_ms = declare_float(
            self, 'latency_requirement_ms', 1000.0,
            'End-to-end latency deadline per frame, ms (> 0).', 1.0, 600000.0)
        self.hysteresis = declare_float(
            self, 'hysteresis', 0.1,
            'Upgrade to a more accurate plan only if it would still meet the deadline '
            'with this fraction less bandwidth.', 0.0, 0.9)
        self.message_ms = declare_float(
            self, 'message_latency_ms', 2.0,
            'Fixed latency per message crossing the link (each way together), ms.',
            0.0, 10000.0)
        self.bandwidth_kbps = declare_float(
            self, 'initial_bandwidth_kbps', 1000.0,
            'Bandwidth assumed until the first estimate arrives, kbps.', 0.001, 1e7)
        self.mode = declare_str(self, 'mode', 'edgent',
                                'edgent (Algorithm 1), or a baseline: device_only, edge_only, '
                                'partition_only (best partition of the most accurate exit).')
        self.learn_overhead = declare_bool(
            self, 'learn_overhead', True,
            'Calibrate from the measured results: the device compute\'s factor over its '
            'profile, and the fixed per-frame cost the layer profiles miss (image transport, '
            'conversion, callbacks); plan with both.')
        self.margin_quantile = declare_float(
            self, 'margin_quantile', 0.95,
            'Plan so that this fraction of frames meets the deadline: the deadline is '
            'shrunk by the measured/predicted ratio at this quantile of recent frames '
            '(0.5: plan on the median).', 0.5, 1.0)
        declare_float(self, 'diagnostics_period_s', 1.0, 'Period of /diagnostics, s.',
                      0.1, 60.0, read_only=True)

        if self.mode not in MODES:
            raise ValueError(f'mode must be one of {", ".join(MODES)}, got {self.mode!r}')
        # Load everything before going live; a bad file stops the node here
        # with the reason (the caller sees the exception text).
        card = m.load_card(m.resolve_model_path(model))
        self.card = card
        self.latency = self.load_latency(device_profile, edge_profile)
        device, edge = self.latency.device, self.latency.edge
        for warning in self.latency.warnings:
            self.get_logger().warn(f'outside the profiled range: {warning}')
        self.planner = Planner.from_latency(self.latency, message_ms=self.message_ms)
        self.pending_latency: lat.SubModelLatency | None = None

        self.current: Decision | None = None
        self.plan_id = 0
        self.bandwidth_source = 'initial'
        self.bandwidth_stamp = time.monotonic()
        self.estimates = 0
        self.decision_us: deque[float] = deque(maxlen=200)
        self.plan_pub = self.create_publisher(Plan, 'plan', LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth, LATCHED_QOS)
        self.create_subscription(InferenceResult, 'result', self.on_result, 50)
        self.residuals: deque[float] = deque(maxlen=30)
        self.device_ratios: deque[float] = deque(maxlen=30)
        self.transfer_ratios: deque[float] = deque(maxlen=20)
        self.ratios: deque[float] = deque(maxlen=40)  # measured / predicted latency
        self.margin = 0.0
        # plan id -> (overhead, predicted device ms, profiled device compute,
        # predicted upload ms without the per-message term, transfer scale) then
        self.made_with: dict[int, PlanBasis] = {}
        # (exit, partition) -> its frames' device time over the scaled prediction
        self.plan_ratios: dict[tuple[int, int], deque[float]] = {}
        self.fresh_residuals = 0
        self.add_on_set_parameters_callback(self.validate_parameters)
        self.add_post_set_parameters_callback(self.apply_parameters)
        self.create_timer(self.get_parameter('diagnostics_period_s').value,
                          self.publish_diagnostics)
        self.get_logger().info(
            f'model {card.name} ({len(card.exits)} exits), device profile {device.name}, '
            f'edge profile {edge.name}, deadline {self.deadline_ms:g} ms')
        self.replan(force=True)

    def load_latency(self, device_profile: str, edge_profile: str) -> lat.SubModelLatency:
        """Both profiles loaded and checked against the model (ProfileError if not)."""
        device = lat.load_profile(lat.resolve_profile_path(device_profile))
        edge = lat.load_profile(lat.resolve_profile_path(edge_profile))
        return lat.SubModelLatency(self.card, device, edge)

    # --- parameters --------------------------------------------------------------
    def validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        names = {p.name: p.value for p in params}
        if 'device_profile' in names or 'edge_profile' in names:
            try:
                self.pending_latency = self.load_latency(
                    str(names.get('device_profile',
                                  self.get_parameter('device_profile').value)),
                    str(names.get('edge_profile', self.get_parameter('edge_profile').value)))
            except (lat.ProfileError, ValueError, OSError) as exc:
                return refuse(f'profile not changed: {exc}')
        for p in params:
            if p.name in ('latency_requirement_ms', 'hysteresis', 'message_latency_ms',
                          'initial_bandwidth_kbps', 'margin_quantile'):
                if p.type_ not in (Parameter.Type.DOUBLE, Parameter.Type.INTEGER):
                    return refuse(f'{p.name} must be a number, got {p.type_.name}')
                if not math.isfinite(float(p.value)):
                    return refuse(f'{p.name} must be finite, got {p.value}')
            if p.name == 'latency_requirement_ms' and not float(p.value) > 0:
                return refuse(f'latency_requirement_ms must be > 0, got {p.value}')
            if p.name == 'mode' and p.value not in MODES:
                return refuse(f'mode must be one of {", ".join(MODES)}, got {p.value!r}')
        return accept()

    def apply_parameters(self, params: list[Parameter]) -> None:
        force = False
        for p in params:
            if p.name == 'latency_requirement_ms':
                self.deadline_ms = float(p.value)
                force = True
            elif p.name == 'mode':
                self.mode = str(p.value)
                force = True
            elif p.name == 'hysteresis':
                self.hysteresis = float(p.value)
            elif p.name == 'margin_quantile':
                self.margin_quantile = float(p.value)
                self.update_margin()
                force = True
            elif p.name in ('device_profile', 'edge_profile') and \
                    self.pending_latency is not None:
                self.latency, self.pending_latency = self.pending_latency, None
                self.planner = Planner.from_latency(self.latency, message_ms=self.message_ms)
                # A new profile starts a new calibration.
                self.device_ratios.clear()
                self.forget_relative_calibration()
                self.margin = 0.0
                self.get_logger().info(f'profiles now {self.latency.device.name} (device), '
                                       f'{self.latency.edge.name} (edge)')
                force = True
            elif p.name == 'message_latency_ms':
                self.message_ms = float(p.value)
                old = self.planner
                self.planner = Planner.from_latency(self.latency, message_ms=self.message_ms)
                self.planner.set_overhead(old.overhead_ms)
                self.planner.set_device_scale(old.device_scale)
                self.planner.set_transfer_scale(old.transfer_scale)
                self.forget_relative_calibration(residuals=False)
                force = True
        if force:
            self.replan(force=True)

    # --- decisions -----------------------------------------------------------------
    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        if not (math.isfinite(msg.bandwidth_kbps) and msg.bandwidth_kbps > 0):
            self.get_logger().warn(
                f'ignoring a bandwidth estimate of {msg.bandwidth_kbps} kbps',
                throttle_duration_sec=5.0)
            return
        self.bandwidth_kbps = float(msg.bandwidth_kbps)
        self.bandwidth_source = {1: 'passive', 2: 'probe', 3: 'mixed'}.get(msg.source, 'none')
        self.bandwidth_stamp = time.monotonic()
        self.estimates += 1
        self.replan()

    def on_result(self, msg: InferenceResult) -> None:
        """Calibrate online from measured frames: the device's compute relative to
        its profile (one factor, and one per plan actually run), the per-frame
        cost no profile holds (ms), and the spread of measured over predicted."""
        if not self.learn_overhead or msg.plan_id not in self.made_with or msg.skipped:
            return
        if not (math.isfinite(msg.latency_ms) and math.isfinite(msg.device_ms)):
            return
        key = (int(msg.exit_point), int(msg.partition_point))
        scale_now = self.planner.device_scale
        if msg.fallback:
            # Answered alone after waiting for the edge: its latency says nothing
            # of the plan, but its device time calibrates the fallback exit.
            try:
                base = self.planner.device_compute_ms(*key)
            except ValueError:
                return
            if base * scale_now >= 1.0:
                self.plan_ratios.setdefault(key, deque(maxlen=10)).append(
                    msg.device_ms / (base * scale_now))
                self.update_plan_factor(key)
            return
        basis = self.made_with[msg.plan_id]
        device_base = basis.device_base_ms
        # What bytes / bandwidth said, at the estimate now (the frame ran now,
        # under a plan perhaps made at another bandwidth), without the scale.
        # Uploads under MIN_SAMPLE_BYTES cross in the link's burst (as the
        # bandwidth monitor knows): they say nothing of bytes / bandwidth.
        upload_raw = basis.upload_at(self.bandwidth_kbps)
        if basis.upload_bytes >= MIN_SAMPLE_BYTES and upload_raw >= 5.0 and \
                msg.transfer_ms > 0:
            self.transfer_ratios.append(min(2.0, max(0.5, msg.transfer_ms / upload_raw)))
        if device_base * scale_now >= 1.0:
            self.device_ratios.append(msg.device_ms / device_base)
            ratios = self.plan_ratios.setdefault(key, deque(maxlen=10))
            ratios.append(msg.device_ms / (device_base * scale_now))
            self.update_plan_factor(key)
        # The prediction without the overhead, under today's device calibration.
        device_now = device_base * scale_now * self.planner.plan_factor(*key)
        upload_now = basis.upload_at(self.bandwidth_kbps, self.planner.transfer_scale)
        raw = msg.predicted_latency_ms - basis.overhead_ms - basis.device_ms + device_now \
            - basis.upload_ms + upload_now
        self.residuals.append(msg.latency_ms - raw)
        predicted_now = raw + self.planner.overhead_ms
        if predicted_now > 0:
            # One slow frame in a bandwidth step is not the spread: clip at 1.5x.
            self.ratios.append(min(1.5, msg.latency_ms / predicted_now))
        self.fresh_residuals += 1
        if self.fresh_residuals < 10:
            return
        self.fresh_residuals = 0
        changed = False
        if len(self.device_ratios) >= 5:
            new_scale = max(1e-6, statistics.median(self.device_ratios))
            if abs(math.log(new_scale / scale_now)) > math.log(1.15):
                self.get_logger().info(f'device compute {new_scale:.3g}x its profile (was '
                                       f'{scale_now:.3g}x)', throttle_duration_sec=10.0)
                self.planner.set_device_scale(new_scale)
                self.forget_relative_calibration()
                changed = True
        if len(self.transfer_ratios) >= 5:
            new_transfer = statistics.median(self.transfer_ratios)
            if abs(math.log(new_transfer / self.planner.transfer_scale)) > math.log(1.05):
                self.get_logger().info(f'transfers take {new_transfer:.2f}x bytes / bandwidth',
                                       throttle_duration_sec=10.0)
                self.planner.set_transfer_scale(new_transfer)
                self.residuals.clear()
                self.ratios.clear()
                changed = True
        if self.residuals:
            new_overhead = max(0.0, statistics.median(self.residuals))
            if abs(new_overhead - self.planner.overhead_ms) > \
                    max(2.0, 0.2 * self.planner.overhead_ms):
                self.get_logger().info(f'per-frame overhead now {new_overhead:.1f} ms (was '
                                       f'{self.planner.overhead_ms:.1f} ms)',
                                       throttle_duration_sec=10.0)
                self.planner.set_overhead(new_overhead)
                self.ratios.clear()
                changed = True
        changed = self.update_margin() or changed
        if changed:
            # Not forced: new figures go through the same hysteresis as a new
            # bandwidth (forcing them made the plan flap between edge and device);
            # a plan kept is sent again with its new predicted figures.
            self.replan(refresh=True)

    def forget_relative_calibration(self, residuals: bool = True) -> None:
        """Drop what was measured relative to the old device scale."""
        if residuals:
            self.residuals.clear()
        self.ratios.clear()
        self.plan_ratios.clear()
        self.planner.clear_plan_factors()

    def update_plan_factor(self, key: tuple[int, int]) -> None:
        """Set a plan's device factor from its frames (3 or more); plan again if
        it moved by more than 5%."""
        ratios = self.plan_ratios.get(key)
        if not ratios or len(ratios) < 3:
            return
        factor = statistics.median(ratios)
        if abs(math.log(factor / self.planner.plan_factor(*key))) < math.log(1.05):
            return
        self.planner.set_plan_factor(*key, factor)
        self.replan(refresh=True)

    def update_margin(self) -> bool:
        """The planning margin: how much slower than predicted the frames at
        ``margin_quantile`` ran (0 when they ran as predicted or faster).
        True if it moved enough to plan again."""
        if len(self.ratios) < 10:
            return False
        ordered = sorted(self.ratios)
        q = ordered[min(len(ordered) - 1, int(self.margin_quantile * len(ordered)))]
        margin = min(0.5, max(0.0, q - 1.0))
        if abs(margin - self.margin) < 0.03:
            return False
        self.get_logger().info(f'planning margin now {100 * margin:.0f}% (frames at the '
                               f'{self.margin_quantile:g} quantile ran {q:.2f}x predicted)',
                               throttle_duration_sec=10.0)
        self.margin = margin
        return True

    @property
    def planning_deadline_ms(self) -> float:
        """The deadline the planner plans against: shrunk by the margin."""
        return self.deadline_ms / (1.0 + self.margin)

    def replan(self, force: bool = False, refresh: bool = False) -> None:
        """Decide again; publish a new plan if it should replace the one in force.

        ``force``: publish the decision whatever it is (a new deadline or mode).
        ``refresh``: if the plan in force is kept, publish it again with figures
        predicted under the current conditions (done anyway when they moved by
        more than a tenth, e.g. with the bandwidth: a plan's predicted latency
        is what the device waits by and what users compare frames with).
        """
        start = time.perf_counter()
        candidate = self.planner.plan_mode(self.mode, self.bandwidth_kbps,
                                           self.planning_deadline_ms)
        if not candidate.feasible and self.margin > 0:
            # Nothing meets the deadline with the margin: the most accurate plan
            # predicted to meet it without, before the fastest of all.
            unguarded = self.planner.plan_mode(self.mode, self.bandwidth_kbps,
                                               self.deadline_ms)
            if unguarded.feasible:
                candidate = unguarded
        self.decision_us.append((time.perf_counter() - start) * 1e6)
        if force or should_switch(self.planner, self.current, candidate, self.hysteresis):
            self.publish(candidate)
        elif self.current is not None:
            kept = self.planner.evaluate(*self.current.key, self.bandwidth_kbps,
                                         self.planning_deadline_ms)
            if refresh or abs(kept.total_ms - self.current.total_ms) > \
                    max(5.0, 0.1 * self.current.total_ms):
                self.publish(kept)

    def publish(self, d: Decision) -> None:
        self.plan_id += 1
        self.current = d
        self.made_with[self.plan_id] = PlanBasis(
            overhead_ms=self.planner.overhead_ms,
            device_ms=d.device_ms - self.planner.overhead_ms,
            device_base_ms=self.planner.device_compute_ms(d.exit_point, d.partition),
            upload_ms=d.upload_ms - (self.message_ms if d.partition < d.num_layers else 0.0),
            upload_bytes=d.upload_bytes, transfer_scale=self.planner.transfer_scale,
            bandwidth_kbps=d.bandwidth_kbps)
        while len(self.made_with) > 64:
            self.made_with.pop(min(self.made_with))
        msg = Plan()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.card.name
        msg.plan_id = self.plan_id
        msg.exit_point = d.exit_point
        msg.num_exits = len(self.card.exits)
        msg.partition_point = d.partition
        msg.num_layers = d.num_layers
        msg.predicted_latency_ms = d.total_ms
        msg.predicted_device_ms = d.device_ms
        msg.predicted_upload_ms = d.upload_ms
        msg.predicted_edge_ms = d.edge_ms
        msg.predicted_download_ms = d.download_ms
        msg.upload_bytes = d.upload_bytes
        msg.bandwidth_kbps = d.bandwidth_kbps
        msg.latency_requirement_ms = self.deadline_ms
        msg.deadline_met = d.feasible
        msg.expected_accuracy = d.accuracy
        fallback = self.planner.device_alone(d.deadline_ms)
        msg.fallback_exit_point = fallback.exit_point
        msg.fallback_num_layers = fallback.num_layers
        msg.predicted_fallback_ms = fallback.total_ms
        msg.predicted_device_tail_ms = self.planner.device_tail_ms(d.exit_point, d.partition)
        self.plan_pub.publish(msg)
        verdict = 'meets' if d.feasible else 'CANNOT meet (best effort: fastest plan)'
        self.get_logger().info(
            f'plan {self.plan_id}: exit {d.exit_point}, partition {d.partition}/{d.num_layers}, '
            f'predicted {d.total_ms:.1f} ms at {d.bandwidth_kbps:.0f} kbps, {verdict} the '
            f'{self.deadline_ms:g} ms deadline (planned against {d.deadline_ms:.0f} ms)')

    def publish_diagnostics(self) -> None:
        d = self.current
        age = time.monotonic() - self.bandwidth_stamp
        if d is None:
            level, text = diagnostics.WARN, 'no plan yet'
        elif not d.feasible:
            level, text = diagnostics.WARN, 'no plan meets the deadline; sending the fastest'
        elif self.estimates == 0:
            level, text = diagnostics.WARN, 'no bandwidth estimate yet; planning on the initial'
        else:
            level, text = diagnostics.OK, 'plan meets the deadline'
        values: dict[str, object] = {
            'plan_id': self.plan_id, 'deadline_ms': self.deadline_ms,
            'bandwidth_kbps': self.bandwidth_kbps, 'bandwidth_source': self.bandwidth_source,
            'bandwidth_age_s': age, 'estimates_received': self.estimates,
            'frame_overhead_ms': self.planner.overhead_ms,
            'device_scale': self.planner.device_scale,
            'transfer_scale': self.planner.transfer_scale,
            'planning_margin': self.margin,
            'decision_time_us_median': statistics.median(self.decision_us)
            if self.decision_us else 0.0,
        }
        if d is not None:
            values.update({'exit_point': d.exit_point, 'partition_point': d.partition,
                           'num_layers': d.num_layers, 'predicted_latency_ms': d.total_ms,
                           'expected_accuracy': d.accuracy, 'deadline_met': d.feasible})
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: plan', level, text, values)))


def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, args, refused=(m.ModelError, lat.ProfileError, ValueError))


if __name__ == '__main__':
    raise SystemExit(main())

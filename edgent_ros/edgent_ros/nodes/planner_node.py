"""planner_node: publishes Edgent's exit/partition decision for the bandwidth now.

Subscribes ``bandwidth`` (BandwidthEstimate), ``result`` (InferenceResult,
for the online calibration, ``edgent_ros.calibration``) and ``edge_load``
(EdgeLoad: with ``load_aware``, the predicted wait at a shared edge is added
to every remote plan, ``edgent_ros.edge_service.EdgeWait``); publishes ``plan``
(Plan, transient local: a device that starts late still gets the plan in
force) whenever the decision changes, and ``/diagnostics``. The decision is
Algorithm 1 (``edgent_ros.planner``); ``hysteresis`` keeps it from flapping
when the bandwidth hovers near a threshold. Every parameter but ``model`` and
``diagnostics_period_s`` (read-only) takes effect when set at run time;
``initial_bandwidth_kbps`` only until the first estimate arrives.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection

from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header

from edgent_ros import card as m
from edgent_ros import diagnostics
from edgent_ros import latency as lat
from edgent_ros.calibration import Calibrator, FrameResult
from edgent_ros.codec_names import CODECS, RAW
from edgent_ros.edge_choice import (
    LOAD_TOPIC,
    EdgeChoice,
    EdgeState,
    edges_in_graph,
    edges_problem,
    parse_edges,
)
from edgent_ros.edge_service import EdgeWait
from edgent_ros.nodes.params import MODEL, ParamSchema, ParamSpec, Value
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.planner import MODES, Decision, Planner, should_switch
from edgent_ros.qos import ESTIMATES_QOS, LATCHED_QOS
from edgent_ros_interfaces.msg import BandwidthEstimate, EdgeLoad, InferenceResult, Plan

PARAMS = ParamSchema(
    MODEL,
    ParamSpec('device_profile', lat.AUTO,
              'Latency profile of the device (name or YAML path; auto: the paper\'s Pi 3 '
              'profile if it has every stage type of the model, else the CI host\'s); may be '
              'changed at run time (checked before use).'),
    ParamSpec('edge_profile', lat.AUTO,
              'Latency profile of the edge (name or YAML path; auto: the paper\'s desktop '
              'profile if it has every stage type of the model, else the CI host\'s); may be '
              'changed at run time (checked before use).'),
    ParamSpec('latency_requirement_ms', 1000.0,
              'End-to-end latency deadline per frame, ms (> 0).', 1.0, 600000.0),
    ParamSpec('hysteresis', 0.1,
              'Upgrade to a more accurate plan only if it would still meet the deadline '
              'with this fraction less bandwidth.', 0.0, 0.9),
    ParamSpec('message_latency_ms', 2.0,
              'Fixed latency per message crossing the link (each way together), ms.',
              0.0, 10000.0),
    ParamSpec('initial_bandwidth_kbps', 1000.0,
              'Bandwidth assumed until the first estimate arrives, kbps; may be changed '
              'at run time until then (refused after).', 0.001, 1e7),
    ParamSpec('mode', 'edgent',
              'edgent (Algorithm 1 over exit, partition and codec), or a baseline on the '
              'most accurate exit: device_only, edge_only (raw input), partition_only (its '
              'fastest partition, raw), jpeg_edge_only (the input as a JPEG), '
              'partition_only_codec (any partition and codec). A baseline has no early exit: '
              'the device answers its late frames with that exit too.', choices=MODES),
    ParamSpec('codecs', 'all',
              'Link codecs the plans may use besides raw float32: all, raw (none), or a '
              f'comma-separated list of {", ".join(c for c in CODECS if c != RAW)}. Each '
              'needs its accuracy in the model card (edgent-codec-card) and its timing in '
              'the profiles.', check=lambda v: codecs_problem(str(v))),
    ParamSpec('online_calibration', True,
              'Learn from the measured results and plan with it: the device compute\'s '
              'factor over its profile and per plan, the per-frame overhead, the transfer '
              'scale and the planning margin. Off: plan on the profiles alone (switching '
              'off at run time forgets what was learnt).'),
    ParamSpec('margin_quantile', 0.95,
              'Plan so that this fraction of frames meets the deadline: the deadline is '
              'shrunk by the measured/predicted ratio at this quantile of recent frames '
              '(0.5: plan on the median).', 0.5, 1.0),
    ParamSpec('load_aware', True,
              'Add the predicted wait at the edge (its edge_load, corrected by what this '
              'device\'s frames measured there) to every remote plan, so that a shared, '
              'saturated edge moves the plan towards the device before deadlines fail.'),
    ParamSpec('edges', '',
              'Empty: plan for the one edge on `bandwidth` and `edge_load` (as remapped). '
              'auto: for every edge found by its edge_load topic (or a comma-separated list '
              'of edge namespaces), each with its own link estimate and load; the plan goes '
              'to the best one (Plan.edge_namespace), kept unless another is clearly better '
              'for edge_hold_s; an edge silent for 3 s is left at once.',
              read_only=True, check=lambda v: edges_problem(str(v))),
    ParamSpec('edge_hold_s', 3.0,
              'With several edges: the least time on one edge before moving to a better '
              'one, s (leaving a silent edge does not wait).', 0.0, 3600.0),
    ParamSpec('diagnostics_period_s', 1.0, 'Period of /diagnostics, s.', 0.1, 60.0,
              read_only=True),
)

def parse_codecs(value: str) -> tuple[str, ...] | None:
    """The ``codecs`` parameter as the planner takes it (None: all)."""
    value = value.strip()
    if value == 'all':
        return None
    return tuple(c.strip() for c in value.split(',') if c.strip() and c.strip() != RAW)


def codecs_problem(value: str) -> str | None:
    if value.strip() == 'all':
        return None
    unknown = [c.strip() for c in value.split(',') if c.strip() and c.strip() not in CODECS]
    if unknown or not value.strip():
        return (f'codecs must be all or a comma-separated list of {", ".join(CODECS)}; '
                f'got {value!r}')
    return None


DISCOVER_S = 1.0  # how often the edges in the graph are looked for (several edges)
SOURCES = {BandwidthEstimate.SOURCE_PASSIVE: 'passive', BandwidthEstimate.SOURCE_PROBE: 'probe',
           BandwidthEstimate.SOURCE_MIXED: 'mixed'}


class PlannerNode(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('planner', **kwargs)
        self.pending_latency: lat.SubModelLatency | None = None
        self.estimates = 0
        self.noted: dict[str, float] = {}
        p = PARAMS.attach(self, {
            'device_profile': self.take_profiles, 'edge_profile': self.take_profiles,
            'latency_requirement_ms': self.setter('deadline_ms'),
            'hysteresis': self.setter('hysteresis'), 'mode': self.setter('mode'),
            'codecs': self.set_codecs,
            'message_latency_ms': self.set_message_latency,
            'initial_bandwidth_kbps': self.setter('bandwidth_kbps'),
            'online_calibration': lambda on: self.calibrator.set_enabled(bool(on)),
            'margin_quantile': lambda q: self.calibrator.set_margin_quantile(float(q)),
            'load_aware': self.setter('load_aware'),
            'edge_hold_s': lambda v: setattr(self.choice, 'hold_s', float(v))
            if self.choice is not None else None,
        }, check=self.check_changes, after=self.changed)
        self.edges = parse_edges(str(p['edges']))
        self.choice = EdgeChoice(hold_s=float(p['edge_hold_s'])) if self.edges != () else None
        self.edge_ns = ''  # the edge planned against (several edges), '' none
        self.edge_subs: dict[str, object] = {}
        self.load_aware = bool(p['load_aware'])
        self.edge_wait = EdgeWait()
        self.edge_load: EdgeLoad | None = None
        self.loads = 0
        # plan_id -> the edge compute it predicted (no wait), ms: what a frame's
        # time at the edge beyond it measured as a wait
        self.edge_compute_of: OrderedDict[int, float] = OrderedDict()
        self.deadline_ms, self.hysteresis = p['latency_requirement_ms'], p['hysteresis']
        self.message_ms, self.mode = p['message_latency_ms'], p['mode']
        self.codecs = parse_codecs(str(p['codecs']))
        self.bandwidth_kbps = p['initial_bandwidth_kbps']
        # Load everything before going live; a bad file stops the node here
        # with the reason (the caller sees the exception text).
        self.card = m.load_card(m.resolve_model_path(str(p['model'])))
        self.latency = self.load_latency(str(p['device_profile']), str(p['edge_profile']))
        for warning in self.latency.warnings:
            self.get_logger().warning(warning if 'codec' in warning else
                                      f'outside the profiled range: {warning}')
        self.calibrator = Calibrator(
            self.make_planner(),
            margin_quantile=p['margin_quantile'], enabled=p['online_calibration'],
            log=self.note)
        self.current: Decision | None = None
        self.plan_id, self.bandwidth_source = 0, 'initial'
        self.bandwidth_stamp = self.now_s()
        self.decision_us: deque[float] = deque(maxlen=200)
        self.plan_pub = self.create_publisher(Plan, 'plan', LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth,
                                 LATCHED_QOS if self.choice is None else ESTIMATES_QOS)
        self.create_subscription(InferenceResult, 'result', self.on_result, 50)
        if self.choice is None:
            self.create_subscription(EdgeLoad, 'edge_load', self.on_edge_load, LATCHED_QOS)
        else:
            self.create_timer(DISCOVER_S, self.discover_edges)
        self.create_timer(p['diagnostics_period_s'], self.publish_diagnostics)
        self.get_logger().info(
            f'model {self.card.name} ({len(self.card.exits)} exits), device profile '
            f'{self.latency.device.name}, edge profile {self.latency.edge.name}, deadline '
            f'{self.deadline_ms:g} ms')
        self.replan(force=True)

    @property
    def planner(self) -> Planner:
        return self.calibrator.planner

    def load_latency(self, device_profile: str, edge_profile: str) -> lat.SubModelLatency:
        """Both profiles loaded and checked against the model (ProfileError if not)."""
        return lat.SubModelLatency(self.card, self.load_profile('device', device_profile),
                                   self.load_profile('edge', edge_profile))

    def load_profile(self, role: str, name: str) -> lat.Profile:
        profile, borrowed = lat.with_codec_fallback(self.pick_profile(role, name))
        if borrowed:
            self.get_logger().warning(
                f'{role} profile {profile.name} cannot time codecs {", ".join(borrowed)}: '
                f'using {lat.CODEC_FALLBACK[role]}\'s (the CI host\'s), which the online '
                'calibration rescales per plan')
        return profile

    def pick_profile(self, role: str, name: str) -> lat.Profile:
        if name != lat.AUTO:
            return lat.load_profile(lat.resolve_profile_path(name))
        profile, passed = lat.auto_profile(role, self.card)
        if passed:
            self.get_logger().warning(
                f'{role}_profile auto: {profile.name}, made on the CI host, not on this {role} '
                f'({"; ".join(passed)} missing); the online calibration rescales it, but '
                f'profile the {role} for plans from the first frame: edgent-profile --role '
                f'{role} --model {self.card.name}')
        return profile

    def now_s(self) -> float:
        """The node clock (sim time under use_sim_time), s."""
        return self.get_clock().now().nanoseconds * 1e-9

    def note(self, kind: str, text: str) -> None:
        """Log a calibration change, each kind at most once in 10 s."""
        now = time.monotonic()
        if now - self.noted.get(kind, -math.inf) >= 10.0:
            self.noted[kind] = now
            self.get_logger().info(text)

    # --- parameters at run time -------------------------------------------------------
    def setter(self, attribute: str) -> Callable[[Value], None]:
        return lambda value: setattr(self, attribute, value)

    def check_changes(self, changes: dict[str, Value]) -> str | None:
        """Why a change cannot be taken (profiles that do not load or fit, an
        initial bandwidth once there are estimates), or None."""
        if 'initial_bandwidth_kbps' in changes and self.estimates:
            return (f'initial_bandwidth_kbps not changed: the bandwidth is measured now '
                    f'({self.estimates} estimates received)')
        if 'device_profile' in changes or 'edge_profile' in changes:
            try:
                self.pending_latency = self.load_latency(
                    str(changes.get('device_profile',
                                    self.get_parameter('device_profile').value)),
                    str(changes.get('edge_profile', self.get_parameter('edge_profile').value)))
            except (lat.ProfileError, ValueError, OSError) as exc:
                return f'profile not changed: {exc}'
        return None

    def take_profiles(self, _: Value) -> None:
        if self.pending_latency is None:
            return  # both profiles changed at once: taken already
        self.latency, self.pending_latency = self.pending_latency, None
        self.calibrator.new_profiles(self.make_planner())
        self.get_logger().info(f'profiles now {self.latency.device.name} (device), '
                               f'{self.latency.edge.name} (edge)')

    def set_message_latency(self, value: Value) -> None:
        self.message_ms = float(value)
        self.calibrator.new_message_latency(self.make_planner())

    def set_codecs(self, value: Value) -> None:
        self.codecs = parse_codecs(str(value))
        self.calibrator.new_profiles(self.make_planner())

    def make_planner(self) -> Planner:
        return Planner.from_latency(self.latency, message_ms=self.message_ms,
                                    codecs=self.codecs)

    def changed(self, names: Collection[str]) -> None:
        # A new hysteresis goes through the hysteresis; anything else forces a plan.
        self.replan(force=bool(set(names) - {'hysteresis'}))

    # --- decisions -----------------------------------------------------------------
    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        if not (math.isfinite(msg.bandwidth_kbps) and msg.bandwidth_kbps > 0):
            self.get_logger().warning(
                f'ignoring a bandwidth estimate of {msg.bandwidth_kbps} kbps',
                throttle_duration_sec=5.0)
            return
        if self.choice is not None:  # several edges: the link to one of them
            self.choice.bandwidth(msg.edge_namespace, float(msg.bandwidth_kbps), self.now_s())
            if msg.edge_namespace != self.edge_ns:
                self.estimates += 1
                self.replan()
                return
        self.bandwidth_kbps = float(msg.bandwidth_kbps)
        self.bandwidth_source = SOURCES.get(msg.source, 'none')
        self.bandwidth_stamp = self.now_s()
        self.estimates += 1
        self.calibrator.bandwidth(self.bandwidth_kbps)  # delays learnt on another link go
        self.replan()

    def discover_edges(self) -> None:
        """Several edges: follow the edges in the graph (or listed), hear each
        one's load; plan again (an edge gone silent is left here)."""
        now = self.now_s()
        found = list(self.edges) if self.edges else \
            edges_in_graph(self.get_topic_names_and_types())
        self.choice.present(found, now)
        for ns in [n for n in self.edge_subs if n not in self.choice.edges]:
            self.destroy_subscription(self.edge_subs.pop(ns))
            self.get_logger().info(f'edge {ns} left the graph')
        for ns in [n for n in self.choice.edges if n not in self.edge_subs]:
            self.edge_subs[ns] = self.create_subscription(
                EdgeLoad, f'{ns.rstrip("/")}/{LOAD_TOPIC}',
                lambda msg, ns=ns: self.on_edge_load(msg, ns), LATCHED_QOS)
            self.get_logger().info(f'edge {ns} found')
        self.replan()

    def current_wait(self) -> EdgeWait | None:
        """The wait estimate of the edge planned against."""
        if self.choice is None:
            return self.edge_wait
        state = self.choice.edges.get(self.edge_ns)
        return None if state is None else state.wait

    def on_edge_load(self, msg: EdgeLoad, namespace: str | None = None) -> None:
        """An edge's load: plan with its wait (plans again, through the hysteresis)."""
        try:
            if namespace is None:
                self.edge_wait.published(float(msg.wait_ms), float(msg.busy_share),
                                         self.now_s())
            else:
                self.choice.load(namespace, float(msg.wait_ms), float(msg.busy_share),
                                 self.now_s())
        except ValueError as exc:
            self.get_logger().warning(f'ignoring an edge load from {msg.edge_id[:64]!r}: {exc}',
                                      throttle_duration_sec=5.0)
            return
        self.edge_load, self.loads = msg, self.loads + 1
        if self.load_aware:
            self.replan()

    def on_result(self, msg: InferenceResult) -> None:
        """Calibrate from a measured frame; plan again (once) if that moved anything.
        Not forced: new figures go through the same hysteresis as a new bandwidth
        (forcing them made the plan flap between edge and device); a plan kept
        is sent again with its new predicted figures."""
        frame = FrameResult(
            plan_id=msg.plan_id, exit_point=int(msg.exit_point),
            partition=int(msg.partition_point), latency_ms=msg.latency_ms,
            device_ms=msg.device_ms, transfer_ms=msg.transfer_ms, fallback=msg.fallback,
            skipped=msg.skipped)
        compute_ms = self.edge_compute_of.get(int(msg.plan_id))
        wait = self.current_wait()
        if compute_ms is not None and wait is not None and not msg.fallback and \
                not msg.skipped and msg.edge_ms > 0:
            wait.measured(float(msg.edge_ms) - compute_ms, self.now_s())
        if self.calibrator.observe(frame, self.bandwidth_kbps):
            self.replan(refresh=True)

    def replan(self, force: bool = False, refresh: bool = False) -> None:
        """Decide again; publish a new plan if it should replace the one in force.

        ``force``: publish the decision whatever it is (a new deadline or mode).
        ``refresh``: if the plan in force is kept, publish it again with figures
        predicted under the current conditions (done anyway when they moved by
        more than a tenth, e.g. with the bandwidth: a plan's predicted latency
        is what the device waits by and what users compare frames with).
        """
        start = time.perf_counter()
        now = self.now_s()
        planning_ms = self.calibrator.planning_deadline_ms(self.deadline_ms)
        if self.choice is None:
            self.planner.set_edge_wait(self.edge_wait.wait_ms(now) if self.load_aware else 0.0)
            candidate = self.decide(self.bandwidth_kbps, planning_ms)
        else:
            def plan_for(s: EdgeState) -> Decision:
                self.planner.set_edge_wait(s.wait.wait_ms(now) if self.load_aware else 0.0)
                return self.decide(s.bandwidth_kbps, planning_ms)
            edge, chosen = self.choice.choose(now, plan_for)
            if edge is None:  # no edge: the device alone
                self.planner.set_edge_wait(0.0)
                candidate = self.planner.device_alone(self.deadline_ms, mode=self.mode)
            else:
                state = self.choice.edges[edge]
                plan_for(state)  # the planner's state: this edge's wait
                self.bandwidth_kbps, candidate = state.bandwidth_kbps, chosen
            if (edge or '') != self.edge_ns:
                self.get_logger().info(f'planning against edge {edge}' if edge else
                                       'no edge answers its load: planning on the device')
                self.edge_ns, force = edge or '', True
        self.decision_us.append((time.perf_counter() - start) * 1e6)
        if force or should_switch(self.planner, self.current, candidate, self.hysteresis):
            self.publish(candidate)
        elif self.current is not None:
            kept = self.planner.evaluate_key(self.current.key, self.bandwidth_kbps, planning_ms)
            if refresh or abs(kept.total_ms - self.current.total_ms) > \
                    max(5.0, 0.1 * self.current.total_ms):
                self.publish(kept)

    def decide(self, bandwidth_kbps: float, planning_ms: float) -> Decision:
        """Algorithm 1 at this bandwidth, with the planning margin if a plan
        meets the deadline with it."""
        candidate = self.planner.plan_mode(self.mode, bandwidth_kbps, planning_ms)
        if not candidate.feasible and self.calibrator.margin > 0:
            # Nothing meets the deadline with the margin: the most accurate plan
            # predicted to meet it without, before the fastest of all.
            unguarded = self.planner.plan_mode(self.mode, bandwidth_kbps, self.deadline_ms)
            if unguarded.feasible:
                candidate = unguarded
        return candidate

    def publish(self, d: Decision) -> None:
        self.plan_id += 1
        self.current = d
        self.calibrator.record(self.plan_id, d)
        if not d.device_only:
            self.edge_compute_of[self.plan_id] = d.edge_ms - self.planner.edge_wait_ms
            while len(self.edge_compute_of) > 64:
                self.edge_compute_of.popitem(last=False)
        fallback = self.planner.device_alone(d.deadline_ms, mode=self.mode)
        self.plan_pub.publish(Plan(
            header=Header(stamp=self.get_clock().now().to_msg(), frame_id=self.card.name),
            plan_id=self.plan_id, exit_point=d.exit_point, num_exits=len(self.card.exits),
            partition_point=d.partition, num_layers=d.num_layers,
            predicted_latency_ms=d.total_ms, predicted_device_ms=d.device_ms,
            predicted_upload_ms=d.upload_ms, predicted_edge_ms=d.edge_ms,
            predicted_download_ms=d.download_ms, upload_bytes=d.upload_bytes, codec=d.codec,
            bandwidth_kbps=d.bandwidth_kbps, latency_requirement_ms=self.deadline_ms,
            deadline_met=d.feasible, expected_accuracy=d.accuracy,
            fallback_exit_point=fallback.exit_point, fallback_num_layers=fallback.num_layers,
            predicted_fallback_ms=fallback.total_ms,
            predicted_device_tail_ms=self.planner.device_tail_ms(d.exit_point, d.partition),
            predicted_device_exit_ms=self.planner.device_exit_ms(mode=self.mode),
            edge_namespace='' if d.device_only else self.edge_ns))
        verdict = 'meets' if d.feasible else 'CANNOT meet (best effort: fastest plan)'
        self.get_logger().info(
            f'plan {self.plan_id}: exit {d.exit_point}, partition {d.partition}/{d.num_layers}'
            f'{", codec " + d.codec if d.codec else ""}, '
            f'predicted {d.total_ms:.1f} ms at {d.bandwidth_kbps:.0f} kbps, {verdict} the '
            f'{self.deadline_ms:g} ms deadline (planned against {d.deadline_ms:.0f} ms)')

    def publish_diagnostics(self) -> None:
        d = self.current
        age = self.now_s() - self.bandwidth_stamp
        if d is None:
            level, text = diagnostics.WARN, 'no plan yet'
        elif not d.feasible:
            level, text = diagnostics.WARN, 'no plan meets the deadline; sending the fastest'
        elif self.estimates == 0:
            level, text = diagnostics.WARN, 'no bandwidth estimate yet; planning on the initial'
        else:
            level, text = diagnostics.OK, 'plan meets the deadline'
        p, cal = self.planner, self.calibrator
        values: dict[str, object] = {
            'callback_errors': self.callback_errors,
            'plan_id': self.plan_id, 'deadline_ms': self.deadline_ms,
            'bandwidth_kbps': self.bandwidth_kbps, 'bandwidth_source': self.bandwidth_source,
            'bandwidth_age_s': age, 'estimates_received': self.estimates,
            'frame_overhead_ms': p.overhead_ms, 'device_scale': p.device_scale,
            'transfer_scale': p.transfer_scale, 'planning_margin': cal.margin,
            # The settings planned with (parameters take effect when set).
            'hysteresis': self.hysteresis, 'mode': self.mode, 'message_latency_ms': p.message_ms,
            'codecs': ','.join(self.codecs) if self.codecs is not None else 'all',
            'configurations': len(p.configurations),
            'online_calibration': cal.enabled, 'margin_quantile': cal.margin_quantile,
            'device_profile': self.latency.device.name, 'edge_profile': self.latency.edge.name,
            'decision_time_us_median': statistics.median(self.decision_us or [0.0]),
            'load_aware': self.load_aware, 'edge_wait_ms': self.planner.edge_wait_ms,
            'edge_hold_s': self.get_parameter('edge_hold_s').value,
            'edge_loads_received': self.loads}
        if self.choice is not None:
            values.update({'edge_namespace': self.edge_ns or 'none',
                           'edges_known': len(self.choice.edges),
                           'edges_alive': len(self.choice.alive(self.now_s())),
                           'edge_switches': self.choice.switches})
        if self.edge_load is not None:
            values.update({'edge_id': self.edge_load.edge_id,
                           'edge_busy_share': self.edge_load.busy_share,
                           'edge_published_wait_ms': self.edge_load.wait_ms,
                           'edge_queue_length': self.edge_load.queue_length})
        if d is not None:
            values.update({'exit_point': d.exit_point, 'partition_point': d.partition,
                           'num_layers': d.num_layers, 'codec': d.codec or 'none',
                           'upload_bytes': d.upload_bytes, 'predicted_latency_ms': d.total_ms,
                           'expected_accuracy': d.accuracy, 'deadline_met': d.feasible})
        self.diag_pub.publish(diagnostics.array(
            self.get_clock().now().to_msg(),
            diagnostics.status(f'{self.get_fully_qualified_name()}: plan', level, text, values)))


def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, args, refused=(m.ModelError, lat.ProfileError, ValueError))


if __name__ == '__main__':
    raise SystemExit(main())

"""Which edge a device plans against when several serve the domain, without ROS.

An edge node publishes its load on ``<namespace>/edge_load`` (EdgeLoad); a
device finds the edges by that topic in the ROS graph, hears each one's load
(``EdgeWait``) and, from its bandwidth monitor, the link to each
(BandwidthEstimate.edge_namespace). For every live edge the planner makes
the plan it would send there; ``EdgeChoice`` keeps the edge in use unless
another one's plan is clearly better (more accurate, or meeting the deadline
where the current one does not, or faster by ``margin``) and the current
one has been kept ``hold_s``: devices do not hop between edges on noise,
and many devices seeing the same loads do not all move at once. An edge
that stops publishing its load for ``stale_s`` (killed, cut off) or leaves
the graph is dropped at once, and the devices on it move to the best other
edge, or to the device when none is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edgent_ros.edge_service import EdgeWait

LOAD_TOPIC = 'edge_load'
LOAD_TYPE = 'edgent_ros_interfaces/msg/EdgeLoad'
AUTO = 'auto'
# Most edges a device keeps track of (what a rogue publisher of edge_load
# topics can make it hold).
MAX_EDGES = 16


def parse_edges(value: str) -> tuple[str, ...] | None:
    """The ``edges`` parameter: '' -> () (one edge, by remapping), 'auto' ->
    None (every edge found in the graph), else the namespaces listed."""
    value = value.strip()
    if value == AUTO:
        return None
    return tuple('/' + v.strip().strip('/') for v in value.split(',') if v.strip().strip('/'))


def edges_problem(value: str) -> str | None:
    names = parse_edges(value)
    if names is None:
        return None
    if len(names) > MAX_EDGES:
        return f'edges: {len(names)} namespaces (at most {MAX_EDGES})'
    bad = [n for n in names if not all(p and (p[0].isalpha() or p[0] == '_') and
                                       all(c.isalnum() or c == '_' for c in p)
                                       for p in n[1:].split('/'))]
    if bad:
        return f'edges must be empty, auto or ROS namespaces (e.g. /edge1,/edge2); got {bad[0]!r}'
    return None


def edges_in_graph(topics: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """Namespaces of the edges in the graph: of every ``<ns>/edge_load`` topic
    of type EdgeLoad (from ``Node.get_topic_names_and_types()``), sorted."""
    found = {name[:-len(LOAD_TOPIC) - 1] or '/' for name, types in topics
             if name.endswith('/' + LOAD_TOPIC) and LOAD_TYPE in types}
    return sorted(found)[:MAX_EDGES]


@dataclass
class EdgeState:
    namespace: str
    wait: EdgeWait = field(default_factory=EdgeWait)
    bandwidth_kbps: float | None = None
    heard_s: float = -math.inf  # its last load


class Ranked:
    """What choose() compares of a plan (any object with these fields)."""

    feasible: bool
    accuracy: float
    total_ms: float


def better(a: Ranked, b: Ranked, margin: float) -> bool:
    """Whether plan ``a`` is clearly better than ``b``: it meets the deadline
    where ``b`` does not; or it is more accurate, meeting it as well; or as
    accurate, and faster by ``margin``."""
    if a.feasible != b.feasible:
        return a.feasible
    if a.feasible and a.accuracy > b.accuracy + 1e-9:
        return True
    return a.accuracy >= b.accuracy - 1e-9 and a.total_ms < (1.0 - margin) * b.total_ms


class EdgeChoice:
    """The edges a device knows of, and the one it plans against."""

    def __init__(self, *, margin: float = 0.2, hold_s: float = 3.0,
                 stale_s: float = 3.0) -> None:
        self.margin, self.hold_s, self.stale_s = margin, hold_s, stale_s
        self.edges: dict[str, EdgeState] = {}
        self.current: str | None = None
        self.switched_s = -math.inf
        self.switches = 0

    def present(self, namespaces: Iterable[str], now_s: float) -> list[str]:
        """The edges in the graph now; returns the new ones. One no longer
        there is forgotten (its devices move at the next choice)."""
        names = list(namespaces)[:MAX_EDGES]
        new = [n for n in names if n not in self.edges]
        for n in new:
            self.edges[n] = EdgeState(n)
        for gone in set(self.edges) - set(names):
            del self.edges[gone]
        return new

    def load(self, namespace: str, wait_ms: float, busy_share: float, now_s: float) -> None:
        state = self.edges.get(namespace)
        if state is None:
            return
        state.wait.published(wait_ms, busy_share, now_s)
        state.heard_s = now_s

    def bandwidth(self, namespace: str, kbps: float, now_s: float) -> None:
        state = self.edges.get(namespace)
        if state is not None and math.isfinite(kbps) and kbps > 0:
            state.bandwidth_kbps = float(kbps)

    def alive(self, now_s: float) -> list[EdgeState]:
        """Edges heard from within stale_s, with a link estimate."""
        return [s for s in self.edges.values()
                if now_s - s.heard_s <= self.stale_s and s.bandwidth_kbps is not None]

    def choose(self, now_s: float,
               plan_for: Callable[[EdgeState], Ranked]) -> tuple[str | None, Ranked | None]:
        """The edge to plan against now and its plan (None, None: no live
        edge: the device plans alone). ``plan_for`` makes the plan for one edge."""
        plans = {s.namespace: plan_for(s) for s in self.alive(now_s)}
        if not plans:
            self.current = None
            return None, None
        best = max(plans, key=lambda n: (plans[n].feasible,
                                         plans[n].accuracy if plans[n].feasible else 0.0,
                                         -plans[n].total_ms))
        cur = self.current
        if cur not in plans or (best != cur and now_s - self.switched_s >= self.hold_s and
                                better(plans[best], plans[cur], self.margin)):
            if cur is not None:
                self.switches += 1
            self.current, self.switched_s = best, now_s
        return self.current, plans[self.current]

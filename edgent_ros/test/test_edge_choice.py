"""Which edge a device plans against (edgent_ros.edge_choice). Pure: times passed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgent_ros.edge_choice import (
    LOAD_TYPE,
    EdgeChoice,
    EdgeState,
    edges_in_graph,
    edges_problem,
    parse_edges,
)


@dataclass
class P:
    feasible: bool
    accuracy: float
    total_ms: float


def test_edges_are_found_by_their_load_topic() -> None:
    topics = [('/edge1/edge_load', [LOAD_TYPE]), ('/edge0/edge_load', [LOAD_TYPE]),
              ('/robot1/edge_load', ['std_msgs/msg/String']),  # not an edge's
              ('/edge0/tensor', ['edgent_ros_interfaces/msg/Tensor']),
              ('/edge_load', [LOAD_TYPE])]
    assert edges_in_graph(topics) == ['/', '/edge0', '/edge1']


def test_the_edges_parameter() -> None:
    assert parse_edges('') == ()
    assert parse_edges('auto') is None
    assert parse_edges(' edge1, /edge2/ ') == ('/edge1', '/edge2')
    assert edges_problem('/edge1,/2bad') is not None
    assert edges_problem(','.join(f'/e{i}' for i in range(40))) is not None
    assert edges_problem('auto') is None and edges_problem('') is None


def two_edges(now: float = 0.0) -> EdgeChoice:
    c = EdgeChoice(margin=0.2, hold_s=3.0, stale_s=3.0)
    c.present(['/e0', '/e1'], now)
    for ns in ('/e0', '/e1'):
        c.load(ns, 0.0, 0.0, now)
        c.bandwidth(ns, 2000.0, now)
    return c


def test_the_best_edge_is_chosen_and_kept_against_small_gains() -> None:
    c = two_edges()
    plans = {'/e0': P(True, 0.90, 30.0), '/e1': P(True, 0.90, 40.0)}

    def plan_for(s: EdgeState) -> P:
        return plans[s.namespace]
    assert c.choose(0.0, plan_for)[0] == '/e0'
    plans['/e1'] = P(True, 0.90, 27.0)  # 10% faster: not enough
    for ns in ('/e0', '/e1'):
        c.load(ns, 0.0, 0.0, 5.0)
    assert c.choose(5.0, plan_for)[0] == '/e0'
    plans['/e1'] = P(True, 0.92, 35.0)  # more accurate, but within the hold
    c.switched_s = 4.0
    assert c.choose(5.0, plan_for)[0] == '/e0'
    assert c.choose(7.5, plan_for)[0] == '/e1' and c.switches == 1


def test_an_edge_that_falls_silent_or_leaves_moves_its_devices_at_once() -> None:
    c = two_edges()

    def plan_for(s: EdgeState) -> P:
        return P(True, 0.9, 30.0 if s.namespace == '/e0' else 60.0)
    assert c.choose(0.0, plan_for)[0] == '/e0'
    c.load('/e1', 0.0, 0.0, 3.5)  # /e0 silent since 0 s
    assert c.choose(3.5, plan_for)[0] == '/e1'  # no hold for a dead edge
    c.present(['/e0'], 4.0)  # /e1 left the graph; /e0 is there but silent
    assert c.choose(4.0, plan_for) == (None, None)  # the device alone
    c.load('/e0', 0.0, 0.0, 5.0)
    assert c.choose(5.0, plan_for)[0] == '/e0'


def test_the_wait_at_each_edge_is_its_own() -> None:
    c = two_edges()
    c.load('/e0', 80.0, 1.0, 1.0)
    c.load('/e1', 5.0, 0.1, 1.0)
    waits = {s.namespace: s.wait.wait_ms(1.0) for s in c.alive(1.0)}
    assert waits == {'/e0': pytest.approx(80.0), '/e1': pytest.approx(5.0)}
    c.bandwidth('/e9', 100.0, 1.0)  # unknown: ignored
    assert '/e9' not in c.edges

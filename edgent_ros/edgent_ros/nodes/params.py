"""Declaring parameters with full descriptors: one table per node.

A node lists its parameters once, as ``ParamSpec`` rows of a ``ParamSchema``;
``ParamSchema.attach`` declares them all, checks the values given at start
(a bad one stops the node with the reason), and from then on checks every
change before it is taken and hands the accepted ones to the node. Every
parameter is either read-only (rclpy refuses a change, saying so) or has an
applier; a writable parameter without one stops the node at start, so no
parameter can be accepted and then ignored.

A double parameter also takes an integer (``-p x:=300`` at start, or 300
from ``ros2 param set``), as 300.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from edgent_ros.card import DEFAULT_MODEL

Value = bool | int | float | str


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, default (whose type is the parameter's), what
    it does, and what values it takes (a range for numbers, a list of choices
    for strings, or ``check``: a function giving the reason a value is bad,
    or None)."""

    name: str
    default: Value
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Value], str | None] | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.low is not None and self.high is not None:
            if isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(self.low),
                                                             to_value=float(self.high))]
            elif isinstance(self.default, int) and not isinstance(self.default, bool):
                d.integer_range = [IntegerRange(from_value=int(self.low),
                                                to_value=int(self.high), step=1)]
        if self.choices:
            d.additional_constraints = f'one of: {", ".join(self.choices)}'
        return d

    def coerce(self, value: Value) -> Value:
        """An integer for a double parameter as a double; anything else as given."""
        if isinstance(self.default, float) and isinstance(value, int) and \
                not isinstance(value, bool):
            return float(value)
        return value

    def reason_against(self, value: Value) -> str | None:
        """Why ``value`` cannot be taken (beyond the type and range rclpy checks)."""
        if isinstance(self.default, float) and not math.isfinite(float(value)):
            return f'{self.name} must be finite, got {value}'
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {", ".join(self.choices)}, got {value!r}'
        return self.check(value) if self.check is not None else None


class ParamSchema:
    """A node's parameters, declared, checked and applied from one table."""

    def __init__(self, *specs: ParamSpec) -> None:
        self.specs = {s.name: s for s in specs}
        if len(self.specs) != len(specs):
            raise ValueError('a parameter is listed twice')

    def declare(self, node: Node) -> dict[str, Value]:
        """Declare every parameter, with what the command line or a file gave
        for it; ValueError (with the name) if a given value is bad."""
        values = {}
        for spec in self.specs.values():
            value = declare_spec(node, spec)
            reason = spec.reason_against(value)
            if reason is not None:
                raise ValueError(reason)
            values[spec.name] = value
        return values

    def attach(self, node: Node, appliers: Mapping[str, Callable[[Value], object]], *,
               check: Callable[[dict[str, Value]], str | None] | None = None,
               after: Callable[[Collection[str]], object] | None = None) -> dict[str, Value]:
        """Declare the parameters (``declare``), then take changes at run time:
        each checked by its spec, then all together by ``check`` (the changed
        values by name: a reason to refuse, or None); once taken, each goes to
        its applier, and then the names changed to ``after``. Returns the
        values at start."""
        writable = {n for n, s in self.specs.items() if not s.read_only}
        missing = sorted(writable - set(appliers))
        if missing:
            raise ValueError(f'writable parameters with no applier: {", ".join(missing)}')
        values = self.declare(node)

        def coerce(params: list[Parameter]) -> list[Parameter]:
            return [Parameter(p.name, value=self.specs[p.name].coerce(p.value))
                    if p.name in self.specs and p.type_ == Parameter.Type.INTEGER else p
                    for p in params]

        def validate(params: list[Parameter]) -> SetParametersResult:
            changes = {p.name: p.value for p in params if p.name in self.specs}
            for name, value in changes.items():
                reason = self.specs[name].reason_against(value)
                if reason is not None:
                    return refuse(reason)
            reason = check(changes) if check is not None and changes else None
            return refuse(reason) if reason is not None else accept()

        def apply(params: list[Parameter]) -> None:
            names = [p.name for p in params if p.name in appliers]
            for p in params:
                if p.name in appliers:
                    appliers[p.name](p.value)
            if names and after is not None:
                after(names)

        node.add_pre_set_parameters_callback(coerce)
        node.add_on_set_parameters_callback(validate)
        node.add_post_set_parameters_callback(apply)
        return values


# Shared by the nodes that load the model.
MODEL = ParamSpec('model', DEFAULT_MODEL,
                  'Model name (in the package models/) or path to its YAML.', read_only=True)
THREADS = ParamSpec('threads', 1, 'torch CPU threads.', 1, 256, read_only=True)


def declare_spec(node: Node, spec: ParamSpec) -> Value:
    """Declare one parameter; a double one takes an integer given for it."""
    if not isinstance(spec.default, float):
        return node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
    # Statically typed, a double refuses an integer from the command line or a
    # file. Declared untyped first, it shows what was given; then declared for
    # good, typed and ranged, with that value as a double.
    given = node.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(dynamic_typing=True)).value
    node.undeclare_parameter(spec.name)
    if isinstance(given, bool) or not isinstance(given, (int, float)):
        raise ValueError(f'parameter {spec.name} must be a number, got {given!r}')
    return node.declare_parameter(spec.name, float(given), spec.descriptor(),
                                  ignore_override=True).value


def refuse(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def accept() -> SetParametersResult:
    return SetParametersResult(successful=True)


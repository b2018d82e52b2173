"""Declaring parameters with full descriptors, in one line each."""

from __future__ import annotations

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node


def declare_float(node: Node, name: str, default: float, description: str, low: float,
                  high: float, *, read_only: bool = False) -> float:
    """A double parameter; an integer given for it (``-p x:=300``) is taken as 300.0."""
    descriptor = ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high)])
    try:
        return node.declare_parameter(name, float(default), descriptor).value
    except InvalidParameterTypeException:
        # rclpy keeps command-line and file overrides in _parameter_overrides.
        given = node._parameter_overrides[name].value
        if isinstance(given, bool) or not isinstance(given, int):
            raise ValueError(f'parameter {name} must be a number, got {given!r}') from None
        return node.declare_parameter(name, float(given), descriptor,
                                      ignore_override=True).value


def declare_int(node: Node, name: str, default: int, description: str, low: int, high: int,
                *, read_only: bool = False) -> int:
    return node.declare_parameter(name, int(default), ParameterDescriptor(
        description=description, read_only=read_only,
        integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])).value


def declare_str(node: Node, name: str, default: str, description: str, *,
                read_only: bool = False) -> str:
    return node.declare_parameter(name, default, ParameterDescriptor(
        description=description, read_only=read_only)).value


def declare_bool(node: Node, name: str, default: bool, description: str, *,
                 read_only: bool = False) -> bool:
    return node.declare_parameter(name, default, ParameterDescriptor(
        description=description, read_only=read_only)).value


def refuse(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def accept() -> SetParametersResult:
    return SetParametersResult(successful=True)

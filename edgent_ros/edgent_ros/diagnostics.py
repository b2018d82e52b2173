"""Building /diagnostics messages the way diagnostic_updater lays them out."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE


def status(name: str, level: bytes, message: str, values: Mapping[str, object],
           hardware_id: str | None = None) -> DiagnosticStatus:
    """One DiagnosticStatus; values are shown as strings (floats to 4 digits)."""
    def text(v: object) -> str:
        return f'{v:.4g}' if isinstance(v, float) else str(v)

    return DiagnosticStatus(
        level=level, name=name, message=message,
        hardware_id=hardware_id if hardware_id is not None else socket.gethostname(),
        values=[KeyValue(key=k, value=text(v)) for k, v in values.items()])


def array(stamp: Time, *statuses: DiagnosticStatus) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg

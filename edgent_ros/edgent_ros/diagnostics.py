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


class BoundedCounts:
    """Counts by a key taken from messages (a device's source_id), holding at
    most ``max_keys`` keys: whatever any process on the domain sends, the
    table and the /diagnostics status built from it stay bounded. Counts for
    keys beyond the limit go to one figure, ``over_limit``."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.counts: dict[str, int] = {}
        self.over_limit = 0

    def add(self, key: str) -> None:
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < self.max_keys:
            self.counts[key] = 1
        else:
            self.over_limit += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.over_limit

"""Fault scenarios on the testbed: kill the edge, take the link down, starve it.

A scenario is a list of steps run against a live pipeline on a
``testbed.Testbed`` while ``edgent-monitor`` (inside the device namespace)
prints every answered frame:

- ``('frames', n)``: wait until n more frames are answered;
- ``('remote', n)``: wait until n frames in a row came back from the edge;
- ``('kill_edge',)`` / ``('start_edge',)``: SIGKILL the edge side / start it;
- ``('link', False | True)``: take the link down / up;
- ``('rate', kbps)``: shape the link to a rate.

``analyse`` turns the frames and the timed events into the figures issue
readers ask for: every frame answered (no gap in the device's frame
numbers), how soon after each fault frames came back from the device alone,
how soon after each recovery they came from the edge again, and how many
were answered late. Used by test/test_faults.py and bench/bench_faults.py.
Never imports rclpy (it reads the monitor's output).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edgent_ros import testbed
from edgent_ros.demo.pipeline import edge_command, start_on_testbed, tool

FRAME_LINE = re.compile(r'^frame\s+(\d+)\s')
FAULTS = ('kill_edge', 'link_down', 'rate_low')
RECOVERIES = ('start_edge', 'link_up', 'rate_high')
SERVING = 'serving model'  # what the edge node logs once it answers
LOG_STAMP = re.compile(r'^\[\w+\] \[(\d+\.\d+)\]')


@dataclass
class ScenarioRun:
    frames: list[dict[str, object]]
    events: list[tuple[float, str]] = field(default_factory=list)
    log_dir: Path | None = None


class _Lines(threading.Thread):
    """Reads the monitor's output; counts frames, remembers the last ones."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.frames = 0
        self.remote_streak = 0
        self.changed = threading.Condition()
        self.tail: queue.Queue[str] = queue.Queue()

    def run(self) -> None:
        for line in self.stream:
            self.tail.put(line)
            if FRAME_LINE.match(line):
                with self.changed:
                    self.frames += 1
                    remote = ' by edge' in line
                    self.remote_streak = self.remote_streak + 1 if remote else 0
                    self.changed.notify_all()

    def wait(self, predicate: object, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


def _count(path: Path, text: str) -> int:
    return path.read_text(errors='replace').count(text) if path.is_file() else 0


def _note_serving(path: Path, before: int, events: list[tuple[float, str]],
                  timeout_s: float = 120.0) -> None:
    """Add an ``edge_serving`` event when the restarted edge logs that it
    serves (its log had ``before`` such lines)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        lines = [ln for ln in path.read_text(errors='replace').splitlines() if SERVING in ln]
        if len(lines) > before:  # when it logged it ([INFO] [<seconds>] ...), else now
            stamp = LOG_STAMP.search(lines[before])
            events.append((float(stamp.group(1)) if stamp else time.time(), 'edge_serving'))
            return
        time.sleep(0.02)


def run_scenario(bed: testbed.Testbed, steps: list[tuple], *, overrides: list[str],
                 log_dir: Path, cpu_quota: float | None = None,
                 step_timeout_s: float = 60.0) -> ScenarioRun:
    """Start the pipeline on ``bed``, run the steps, return what the monitor saw."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = {k: open(log_dir / f'{k}.log', 'w') for k in ('device', 'edge', 'monitor')}
    events: list[tuple[float, str]] = []
    out = log_dir / 'frames.json'
    try:
        procs = start_on_testbed(bed, overrides, cpu_quota, logs['device'], logs['edge'])
        monitor = bed.spawn('device', [tool('edgent-monitor'), '--json', str(out),
                                       '--ros-args', '-r', '__ns:=/device'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = _Lines(monitor.stdout)
        lines.start()
        edge = procs['edge']
        for step in steps:
            kind = step[0]
            if kind == 'frames':
                target = lines.frames + step[1]
                if not lines.wait(lambda t=target: lines.frames >= t, step_timeout_s):
                    raise TimeoutError(f'{step}: only {lines.frames} frames answered')
                continue
            if kind == 'remote':
                if not lines.wait(lambda n=step[1]: lines.remote_streak >= n, step_timeout_s):
                    raise TimeoutError(f'{step}: the edge did not answer again')
                events.append((time.time(), 'remote_again'))
                continue
            now = time.time()
            if kind == 'kill_edge':
                bed.kill(edge)
                events.append((now, 'kill_edge'))
            elif kind == 'start_edge':
                served = _count(log_dir / 'edge.log', SERVING)
                edge = bed.spawn('edge', edge_command(), stdout=logs['edge'],
                                 stderr=subprocess.STDOUT)
                events.append((now, 'start_edge'))
                threading.Thread(target=_note_serving, daemon=True,
                                 args=(log_dir / 'edge.log', served, events)).start()
            elif kind == 'link':
                bed.set_link(bool(step[1]))
                events.append((now, 'link_up' if step[1] else 'link_down'))
            elif kind == 'rate':
                low = step[1] < 50
                bed.set_rate(float(step[1]))
                events.append((now, 'rate_low' if low else 'rate_high'))
            else:
                raise ValueError(f'unknown step {step!r}')
        monitor.send_signal(signal.SIGINT)
        monitor.wait(timeout=30)
        lines.join(timeout=5)
        while not lines.tail.empty():
            logs['monitor'].write(lines.tail.get())
    finally:
        for f in logs.values():
            f.close()
    frames = json.loads(out.read_text())['frames'] if out.is_file() else []
    events.sort()
    return ScenarioRun(frames=frames, events=events, log_dir=log_dir)


def analyse(run: ScenarioRun, deadline_ms: float) -> dict[str, object]:
    """Figures of a scenario: gaps, detection and recovery times, late frames."""
    frames = sorted(run.frames, key=lambda f: f['seq'])
    seqs = [f['seq'] for f in frames]
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []
    by_time = sorted(run.frames, key=lambda f: f['received_s'])
    faults = []
    for i, (when, what) in enumerate(run.events):
        if what not in FAULTS:
            continue
        end = next((t for t, w in run.events[i + 1:] if w in RECOVERIES), float('inf'))
        during = [f for f in by_time if when <= f['received_s'] < end]
        first_alone = next((f for f in during if f['fallback']), None)
        first_remote = next((f for f in by_time if f['received_s'] >= end and f['remote']),
                            None)
        serving = next((t for t, w in run.events if w == 'edge_serving' and t >= end), None)
        faults.append({
            'fault': what,
            'frames_during': len(during),
            'answered_alone': sum(f['fallback'] for f in during),
            'late': sum(not f['deadline_met'] for f in during),
            'first_alone_after_s': None if first_alone is None
            else first_alone['received_s'] - when,
            'worst_latency_ms': max((f['latency_ms'] for f in during), default=0.0),
            'edge_again_after_recovery_s': None if first_remote is None or end == float('inf')
            else first_remote['received_s'] - end,
            'edge_again_after_serving_s': None if first_remote is None or serving is None
            else first_remote['received_s'] - serving,
        })
    return {
        **lateness(frames, deadline_ms),
        'frames': len(frames), 'missing_seqs': missing,
        'skipped': sum(bool(f.get('skipped')) for f in frames),
        'answered_alone': sum(f['fallback'] for f in frames),
        'late': sum(not f['deadline_met'] for f in frames),
        'deadline_ms': deadline_ms, 'faults': faults,
    }


def lateness(frames: list[dict[str, object]], deadline_ms: float,
             predicted_fallback_ms: float = 0.0) -> dict[str, float]:
    """How late the latest answer was, against the issue's bound (issue 15,
    item 7): the deadline plus one fallback run (the median device time of the
    frames answered alone, or the plans' predicted fallback time where that
    is larger or none ran)."""
    ran = [f for f in frames if not f.get('skipped')]
    runs = sorted(float(f.get('device_ms', 0.0)) for f in ran
                  if f['fallback'] and f.get('device_ms', 0.0) > 0)
    worst = max((float(f['latency_ms']) for f in frames), default=0.0)
    fallback_ms = max(runs[len(runs) // 2] if runs else 0.0, predicted_fallback_ms)
    return {'worst_latency_ms': worst, 'fallback_run_ms': fallback_ms,
            'beyond_bound_ms': max(0.0, worst - deadline_ms - fallback_ms),
            'met_share': sum(bool(f['deadline_met']) for f in frames) / max(1, len(frames)),
            'late_unrun': sum(bool(f.get('skipped')) and bool(f['fallback']) for f in frames)}

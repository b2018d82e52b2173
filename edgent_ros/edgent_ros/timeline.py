"""What a co-inference run did, told as events, a live view and a timeline (no rclpy).

- ``EventLog`` turns plans and answered frames into the lines a person wants
  to read: one per plan change and one at each end of a fallback episode
  (the edge did not answer in time, so the device answered alone; and when
  that stopped), not one per frame.
- ``Window`` holds the last seconds' frames: the figures of the live view
  (``live_text``) and of the periodic status lines.
- ``parse_trace``, ``phases`` and ``render`` tell a whole run against the
  bandwidth trace its link was given, as a table and as a PNG.

Times are wall-clock seconds (``time.time()``): the monitor that records a
run and the demo that shapes its link run in different network namespaces,
and share only that clock.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgent_ros.card import ModelCard
from edgent_ros.report import FrameRecord, cut_text

# Who answered a frame, in the order the timeline draws them.
ANSWERERS = ('edge', 'device', 'fallback', 'skipped')


@dataclass(frozen=True)
class PlanRecord:
    """A plan as the monitor saw it arrive."""

    t: float  # wall clock, s
    plan_id: int
    exit_point: int
    partition: int
    num_layers: int
    codec: str
    predicted_ms: float
    bandwidth_kbps: float
    deadline_ms: float
    deadline_met: bool = True

    @property
    def key(self) -> tuple[int, int, str]:
        return self.exit_point, self.partition, self.codec


def answered_by(record: FrameRecord) -> str:
    """'edge' (the edge ran the tail), 'device' (the plan kept it on the
    device), 'fallback' (the device answered because the edge did not in
    time) or 'skipped' (already late when the device took it: not run)."""
    if record.skipped:
        return 'skipped'
    if record.fallback:
        return 'fallback'
    return 'edge' if record.remote else 'device'


def plan_text(card: ModelCard | None, plan: PlanRecord) -> str:
    where = cut_text(card, plan.exit_point, plan.partition)
    if plan.codec and 0 <= plan.partition < plan.num_layers:
        where += f', coded {plan.codec}'
    met = '' if plan.deadline_met else ' (no plan meets the deadline: the fastest)'
    return (f'{where}; predicted {plan.predicted_ms:.0f} ms of {plan.deadline_ms:.0f} ms'
            f'{met} at {kbps_text(plan.bandwidth_kbps)}')


def plural(n: int, word: str) -> str:
    return f'{n} {word}' + ('' if n == 1 else 's')


def kbps_text(kbps: float) -> str:
    if kbps != kbps:  # NaN: nothing measured yet
        return 'an unknown rate'
    return f'{kbps / 1000:.1f} Mbit/s' if kbps >= 1000 else f'{kbps:.0f} kbit/s'


class EventLog:
    """Lines for plan changes and fallback episodes, stamped with seconds
    since ``t0`` (the first frame's arrival when not given)."""

    def __init__(self, card: ModelCard | None = None, t0: float | None = None) -> None:
        self.card = card
        self.t0 = t0
        self.plan_key: tuple[int, int, str] | None = None
        self.plan_changes = 0
        self.fallback_since: float | None = None
        self.fallback_frames = 0
        self.fallback_met = 0
        self.episodes: list[tuple[float, float, int]] = []  # (start, end, frames)

    def stamp(self, now: float) -> str:
        if self.t0 is None:
            self.t0 = now
        return f'{now - self.t0:7.1f} s '

    def on_plan(self, plan: PlanRecord) -> str | None:
        """A line when the plan changes where it exits, cuts or codes."""
        if plan.key == self.plan_key:
            return None
        first = self.plan_key is None
        self.plan_key = plan.key
        self.plan_changes += not first
        what = 'plan' if first else 'NEW PLAN'
        when = max(plan.t, self.t0) if self.t0 is not None else plan.t
        return f'{self.stamp(when)} {what} {plan.plan_id}: {plan_text(self.card, plan)}'

    def on_frame(self, record: FrameRecord) -> list[str]:
        """Lines when a fallback episode begins or ends with this frame."""
        now = record.received_s
        lines = []
        if record.fallback:
            if self.fallback_since is None:
                self.fallback_since = now
                how = 'answered as late, not run' if record.skipped else \
                    f'exit {record.exit_point}, {record.latency_ms:.0f} ms'
                lines.append(
                    f'{self.stamp(now)} FALLBACK: the edge did not answer frame {record.seq} in '
                    f'time; the device answers alone ({how})')
            self.fallback_frames += 1
            self.fallback_met += record.deadline_met
        elif self.fallback_since is not None and not record.skipped:
            how = 'the edge answers again' if record.remote else \
                'the plan keeps the network on the device'
            lines.append(
                f'{self.stamp(now)} fallback over after {now - self.fallback_since:.1f} s '
                f'({plural(self.fallback_frames, "frame")} answered alone, '
                f'{self.fallback_met} in time): '
                f'{how}')
            self.episodes.append((self.fallback_since, now, self.fallback_frames))
            self.fallback_since, self.fallback_frames, self.fallback_met = None, 0, 0
        return lines


class Window:
    """The frames answered in the last ``seconds`` (by arrival time)."""

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds
        self.frames: deque[FrameRecord] = deque()

    def add(self, record: FrameRecord) -> None:
        self.frames.append(record)

    def figures(self, now: float) -> dict[str, float]:
        while self.frames and self.frames[0].received_s < now - self.seconds:
            self.frames.popleft()
        return figures_of(self.frames, self.seconds)


def figures_of(frames: Iterable[FrameRecord], seconds: float | None = None) -> dict[str, float]:
    """Frames, deadline hit rate, accuracy, latency median and p95, and who
    answered, of some frames (rate too when they span ``seconds``)."""
    frames = list(frames)
    by = Counter(answered_by(r) for r in frames)
    run = sorted(r.latency_ms for r in frames if not r.skipped)
    labelled = [r.correct for r in frames if r.correct is not None]
    out: dict[str, float] = {
        'frames': len(frames),
        'met': sum(r.deadline_met for r in frames),
        'hit_rate': sum(r.deadline_met for r in frames) / len(frames) if frames else float('nan'),
        'accuracy': sum(labelled) / len(labelled) if labelled else float('nan'),
        'latency_ms_median': statistics.median(run) if run else float('nan'),
        'latency_ms_p95': run[min(len(run) - 1, round(0.95 * (len(run) - 1)))] if run
        else float('nan'),
        **{k: by[k] for k in ANSWERERS}}
    if seconds:
        out['fps'] = len(frames) / seconds
    return out


def _pct(x: float) -> str:
    return '-' if x != x else f'{100 * x:.0f}%'


def _ms(x: float) -> str:
    return '-' if x != x else f'{x:.0f} ms'


def status_text(fig: dict[str, float], estimate_kbps: float, seconds: float) -> str:
    """One line of a window's figures."""
    if not fig['frames']:
        return f'last {seconds:g} s: no frames answered; link estimate {kbps_text(estimate_kbps)}'
    return (f"last {seconds:g} s: {fig['frames']} frames, deadline met {_pct(fig['hit_rate'])}, "
            f"accuracy {_pct(fig['accuracy'])}, latency median {_ms(fig['latency_ms_median'])}; "
            f"answered by edge {fig['edge']}, device {fig['device']}, fallback "
            f"{fig['fallback']}, skipped {fig['skipped']}; link estimate "
            f"{kbps_text(estimate_kbps)}")


def live_text(*, namespace: str, elapsed_s: float, fig: dict[str, float], seconds: float,
              estimate_kbps: float, estimate_source: str, plan: PlanRecord | None,
              card: ModelCard | None, nodes: dict[str, str], total: dict[str, float]) -> str:
    """The live view: the figures the rqt perspective plots, as text."""
    rows = [f'edgent-monitor {namespace}   {elapsed_s:6.0f} s   (Ctrl-C to stop)', '',
            f'link      estimate {kbps_text(estimate_kbps)}'
            + (f' ({estimate_source})' if estimate_source else '')]
    if plan is None:
        rows.append('plan      none received yet')
    else:
        rows.append(f'plan      {plan.plan_id}: {plan_text(card, plan)}')
    rows += [f"frames    last {seconds:g} s: {fig['frames']} ({fig.get('fps', 0):.1f}/s), "
             f"deadline met {_pct(fig['hit_rate'])}, accuracy {_pct(fig['accuracy'])}",
             f"latency   median {_ms(fig['latency_ms_median'])}, p95 "
             f"{_ms(fig['latency_ms_p95'])}"
             + (f', deadline {plan.deadline_ms:.0f} ms' if plan else ''),
             f"answered  edge {fig['edge']}, device {fig['device']}, fallback "
             f"{fig['fallback']}, skipped {fig['skipped']}",
             f"all       {total['frames']} frames, deadline met {_pct(total['hit_rate'])}, "
             f"accuracy {_pct(total['accuracy'])}"]
    if nodes:
        rows.append('nodes     ' + ', '.join(f'{name} {level}' for name, level
                                             in sorted(nodes.items())))
    return '\n'.join(rows)


# --- the trace a demo replays, and what each of its phases got ---------------------------
def parse_trace(spec: str) -> list[tuple[float, float]]:
    """``"10000:12,300:12,0:6"``: kbit/s and seconds per phase (0 kbit/s: the
    link down) -> [(start s, kbit/s), ...] and a last (end s, kbit/s) entry
    repeating the final rate. ValueError says what is wrong."""
    steps: list[tuple[float, float]] = []
    t = 0.0
    for part in spec.split(','):
        try:
            rate_text, secs_text = part.split(':')
            rate, secs = float(rate_text), float(secs_text)
        except ValueError:
            raise ValueError(f'trace phase {part.strip()!r}: expected KBPS:SECONDS, '
                             'e.g. 300:12') from None
        if not (rate >= 0 and secs > 0) or rate != rate or secs == float('inf') \
                or rate == float('inf'):
            raise ValueError(f'trace phase {part.strip()!r}: need a rate >= 0 kbit/s '
                             '(0: link down) and a finite duration > 0 s')
        steps.append((t, rate))
        t += secs
    if steps[0][1] == 0:
        raise ValueError('the trace must start with the link up (a rate > 0)')
    return [*steps, (t, steps[-1][1])]


def trace_text(trace: Sequence[tuple[float, float]]) -> str:
    return ', '.join(('link down' if r == 0 else kbps_text(r)) + f' {t1 - t0:g} s'
                     for (t0, r), (t1, _) in itertools.pairwise(trace))


def phases(trace: Sequence[tuple[float, float]], frames: Sequence[FrameRecord],
           plans: Sequence[PlanRecord], t0: float, card: ModelCard | None = None,
           ) -> list[dict[str, object]]:
    """Per phase of ``trace`` (times relative to ``t0``): its rate, frames,
    figures, and the plans that answered most of its frames."""
    rows = []
    for (start, rate), (end, _) in itertools.pairwise(trace):
        mine = [r for r in frames if start <= r.received_s - t0 < end]
        fig = figures_of(mine)
        in_force = Counter()
        for r in mine:
            if not r.skipped and not r.fallback:
                in_force[(r.exit_point, r.partition)] += 1
        rows.append({'start_s': start, 'end_s': end, 'rate_kbps': rate, **fig,
                     'plans': [cut_text(card, e, p) for (e, p), _ in in_force.most_common(2)]})
    return rows


def phase_lines(rows: Sequence[dict[str, object]]) -> list[str]:
    lines = []
    for row in rows:
        rate = 'link down' if row['rate_kbps'] == 0 else kbps_text(float(row['rate_kbps']))
        head = f"{row['start_s']:5.0f}-{row['end_s']:3.0f} s  {rate:>11}: "
        if not row['frames']:
            lines.append(head + 'no frames answered')
            continue
        lines.append(head + f"{row['frames']:3d} frames, deadline met "
                     f"{_pct(row['hit_rate'])}, accuracy {_pct(row['accuracy'])}; edge "
                     f"{row['edge']}, device {row['device']}, fallback {row['fallback']}, "
                     f"skipped {row['skipped']}")
        for plan in row['plans']:
            lines.append(' ' * 16 + plan)
    return lines


def render(path: Path, *, trace: Sequence[tuple[float, float]] | None,
           estimates: Sequence[tuple[float, float]], plans: Sequence[PlanRecord],
           frames: Sequence[FrameRecord], t0: float, deadline_ms: float,
           title: str = '') -> Path:
    """The run as a PNG: link rate and estimate; exit and partition; latency
    against the deadline; who answered each frame. Times relative to ``t0``."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_bw, ax_plan, ax_lat, ax_who) = plt.subplots(
        4, 1, figsize=(10, 9), sharex=True, gridspec_kw={'height_ratios': [3, 2, 3, 1.6]})
    end = max([r.received_s - t0 for r in frames] + [trace[-1][0] if trace else 0.0] + [1.0])
    if trace:
        xs = [t for t, _ in trace]
        ys = [r for _, r in trace]
        ax_bw.step(xs, ys, where='post', color='k', lw=1.5, label='link rate (tc tbf)')
        for (a, rate), (b, _) in itertools.pairwise(trace):
            if rate == 0:
                for ax in (ax_bw, ax_plan, ax_lat, ax_who):
                    ax.axvspan(a, b, color='0.85', zorder=0)
                ax_bw.text((a + b) / 2, 0.5, 'link\ndown', ha='center', va='bottom',
                           transform=ax_bw.get_xaxis_transform(), fontsize=8)
    if estimates:
        ax_bw.plot([t - t0 for t, _ in estimates], [max(k, 1.0) for _, k in estimates], '-',
                   color='tab:blue', lw=1, label='estimate (bandwidth monitor)')
    ax_bw.set_yscale('symlog', linthresh=10)
    ax_bw.set_ylabel('kbit/s')
    if ax_bw.get_lines():
        ax_bw.legend(fontsize=8, loc='upper right')
    if title:
        ax_bw.set_title(title, fontsize=10)

    if plans:
        xs = [p.t - t0 for p in plans] + [end]
        ax_plan.step(xs, [p.exit_point for p in plans] + [plans[-1].exit_point], where='post',
                     color='tab:green', label='exit point')
        ax_part = ax_plan.twinx()
        ax_part.step(xs, [p.partition for p in plans] + [plans[-1].partition], where='post',
                     color='tab:purple', ls='--', label='partition (stages on the device)')
        ax_part.set_ylabel('partition', color='tab:purple', fontsize=9)
        lines = ax_plan.get_lines() + ax_part.get_lines()
        ax_plan.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc='lower left')
        top = max(p.exit_point for p in plans)
        ax_plan.set_yticks(range(1, top + 1))
        ax_plan.set_ylim(0.5, top + 0.5)
        ax_part.set_ylim(-0.05 * max(1, plans[-1].num_layers), 1.05 * plans[-1].num_layers)
    ax_plan.set_ylabel('exit', color='tab:green', fontsize=9)

    ran = [r for r in frames if not r.skipped]
    for ok, style, label in ((True, '.', 'deadline met'), (False, 'x', 'deadline missed')):
        pts = [(r.received_s - t0, r.latency_ms) for r in ran if r.deadline_met == ok]
        if pts:
            ax_lat.plot(*zip(*pts, strict=True), style, ms=4 if ok else 5,
                        color='tab:blue' if ok else 'tab:red', label=label)
    ax_lat.axhline(deadline_ms, color='r', ls=':', label=f'deadline {deadline_ms:g} ms')
    ax_lat.set_ylabel('latency, ms')
    ax_lat.set_yscale('log')
    ax_lat.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_lat.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_lat.legend(fontsize=8, loc='upper right')

    colors = {'edge': 'tab:blue', 'device': 'tab:green', 'fallback': 'tab:orange',
              'skipped': 'tab:red'}
    for row, who in enumerate(ANSWERERS):
        ts = [r.received_s - t0 for r in frames if answered_by(r) == who]
        ax_who.plot(ts, [row] * len(ts), '|', ms=8, color=colors[who])
    ax_who.set_yticks(range(len(ANSWERERS)), ANSWERERS, fontsize=8)
    ax_who.set_ylim(-0.6, len(ANSWERERS) - 0.4)
    ax_who.set_ylabel('answered by', fontsize=9)
    ax_who.set_xlabel('s since the first answered frame')
    ax_who.set_xlim(0, end)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

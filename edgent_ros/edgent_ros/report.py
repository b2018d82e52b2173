"""Per-frame lines and end-of-run summaries of co-inference results (no rclpy)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from edgent_ros.card import ModelCard


@dataclass
class FrameRecord:
    seq: int
    source: str
    exit_point: int
    partition: int
    predicted_ms: float
    latency_ms: float
    deadline_met: bool
    correct: bool | None
    bandwidth_kbps: float
    fallback: bool = False
    received_s: float = 0.0  # wall clock (s since the epoch) when the result came
    remote: bool = False  # the edge ran part of it
    skipped: bool = False  # not run: already late when the device took it
    device_ms: float = 0.0  # the device's compute time for it


@dataclass
class Summary:
    records: list[FrameRecord] = field(default_factory=list)

    def add(self, record: FrameRecord) -> None:
        self.records.append(record)

    def figures(self) -> dict[str, float]:
        r = self.records
        if not r:
            return {'frames': 0}
        lat = sorted(x.latency_ms for x in r)
        labelled = [x.correct for x in r if x.correct is not None]
        predicted = [abs(x.predicted_ms - x.latency_ms) / x.latency_ms for x in r
                     if x.predicted_ms > 0 and x.latency_ms > 0]
        return {
            'frames': len(r),
            'deadline_hit_rate': sum(x.deadline_met for x in r) / len(r),
            'accuracy': sum(labelled) / len(labelled) if labelled else float('nan'),
            'latency_ms_median': statistics.median(lat),
            'latency_ms_p95': lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
            'prediction_error_median': statistics.median(predicted) if predicted
            else float('nan'),
            'fallback_frames': sum(x.fallback for x in r),
        }


def frame_line(x: FrameRecord) -> str:
    if x.skipped:
        return (f'frame {x.seq:5d} {x.source:>10}  skipped: {x.latency_ms:7.1f} ms old when the '
                'device took it (deadline MISS)')
    correct = '-' if x.correct is None else ('yes' if x.correct else 'no')
    return (f'frame {x.seq:5d} {x.source:>10}  bw {x.bandwidth_kbps:8.0f} kbps  '
            f'exit {x.exit_point} partition {x.partition:2d}  predicted {x.predicted_ms:7.1f} ms  '
            f'measured {x.latency_ms:7.1f} ms  deadline {"met " if x.deadline_met else "MISS"}  '
            f'correct {correct}  by ' + ('edge' if x.remote else 'device') +
            ('  (local fallback)' if x.fallback else ''))


def cut_text(card: ModelCard | None, exit_point: int, partition: int) -> str:
    """Where a plan cuts the network, in words: after which stage, and how
    many bytes cross the link there against the input's."""
    if card is None:
        return f'exit {exit_point}, partition {partition}'
    try:
        layers = card.exit(exit_point).layers
    except ValueError:
        return f'exit {exit_point} (not in {card.name}), partition {partition}'
    n = len(layers)
    where = f'exit {exit_point}/{len(card.exits)}'
    if partition <= 0:
        return f'{where}, all {n} stages on the edge: the {_kb(card.input_bytes)} input crosses'
    if partition >= n:
        return f'{where}, all {n} stages on the device: nothing crosses'
    stage = layers[partition - 1]
    return (f'{where}, cut after {stage.name} (stage {partition} of {n}): '
            f'{_kb(stage.out_bytes)} cross instead of the {_kb(card.input_bytes)} input')


def _kb(nbytes: int) -> str:
    return f'{nbytes / 1000:.1f} KB' if nbytes < 10**6 else f'{nbytes / 1e6:.2f} MB'


def summary_text(figures: dict[str, float]) -> str:
    if not figures.get('frames'):
        return 'no frames answered'
    hit = 100 * figures['deadline_hit_rate']
    return (f"{figures['frames']} frames: deadline met in {hit:.1f}%, "
            f"accuracy {100 * figures['accuracy']:.1f}%, latency median "
            f"{figures['latency_ms_median']:.1f} ms, p95 {figures['latency_ms_p95']:.1f} ms, "
            f"prediction error median {100 * figures['prediction_error_median']:.1f}%")

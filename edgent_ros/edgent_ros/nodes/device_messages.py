"""The device node's outgoing messages, built from the policy's records."""

from __future__ import annotations

import numpy as np
from rclpy.time import Time

from edgent_ros import device_policy as dp
from edgent_ros import payload_codec, tensor_codec
from edgent_ros.inference import TopK
from edgent_ros_interfaces.msg import InferenceResult, Tensor, TransferReport


def tensor_msg(p: dp.Pending, array: np.ndarray, source_id: str) -> Tensor:
    """An activation (or the input) of a frame, for the edge, uncoded (raw)."""
    return _addressed(tensor_codec.to_msg(array, name='activation'), p, source_id)


def coded_tensor_msg(p: dp.Pending, enc: payload_codec.Encoded, source_id: str) -> Tensor:
    """An activation (or the input) of a frame, for the edge, as ``enc`` codes it."""
    return _addressed(tensor_codec.coded_to_msg(enc, name='activation'), p, source_id)


def _addressed(out: Tensor, p: dp.Pending, source_id: str) -> Tensor:
    out.header = p.header
    out.frame_seq = p.seq
    out.source_id = source_id
    out.plan_id = p.plan.plan_id
    out.exit_point = p.plan.exit_point
    out.partition_point = p.partition
    return out


def transfer_msg(fact: dp.TransferFact) -> TransferReport:
    msg = TransferReport(frame_seq=fact.seq, bytes=fact.nbytes,
                         round_trip_ms=fact.round_trip_ms, edge_held_ms=fact.edge_held_ms,
                         still_out=fact.still_out, given_up=fact.given_up,
                         expected_ms=fact.expected_ms, edge_namespace=fact.edge_namespace)
    msg.header.stamp = Time(nanoseconds=round(fact.sent_s * 1e9)).to_msg()
    return msg


def result_msg(p: dp.Pending, result: TopK, *, source_id: str, label: int, latency_ms: float,
               transfer_ms: float = 0.0, edge_ms: float = 0.0, fallback: bool = False,
               exit_point: int | None = None, partition: int | None = None,
               predicted_ms: float | None = None, failed: bool = False,
               skipped: bool = False) -> InferenceResult:
    """A frame's answer; the plan's exit, partition and prediction unless given."""
    plan = p.plan
    deadline = plan.latency_requirement_ms
    return InferenceResult(
        header=p.header, frame_seq=p.seq, source_id=source_id,
        class_id=result.class_ids[0] if result.class_ids else -1,
        score=result.scores[0] if result.scores else 0.0,
        top_k_class_ids=result.class_ids, top_k_scores=result.scores, label=label,
        plan_id=plan.plan_id,
        exit_point=plan.exit_point if exit_point is None else exit_point,
        partition_point=plan.partition_point if partition is None else partition,
        fallback=fallback, latency_ms=latency_ms, device_ms=p.device_ms,
        transfer_ms=transfer_ms, edge_ms=edge_ms,
        predicted_latency_ms=plan.predicted_latency_ms if predicted_ms is None
        else predicted_ms, latency_requirement_ms=deadline,
        deadline_met=not failed and (deadline <= 0 or latency_ms <= deadline),
        skipped=skipped)

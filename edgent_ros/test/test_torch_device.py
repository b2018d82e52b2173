"""The edge's torch device: chosen by a parameter, refused with the reason where
it is not there, and the same answers on a GPU as on the CPU."""

from __future__ import annotations

import subprocess

import pytest
import torch

from edgent_ros import model as m
from edgent_ros import torch_device as td
from edgent_ros.inference import CoInferenceModel

from .conftest import executable

NO_GPU = 'needs a CUDA GPU (torch.cuda.is_available() is False here)'


def test_auto_and_cpu_resolve_and_nonsense_is_refused() -> None:
    assert td.resolve('cpu') == torch.device('cpu')
    assert td.resolve('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(ValueError, match='one of auto, cpu, cuda'):
        td.resolve('tpu')
    assert td.describe(torch.device('cpu')).startswith('cpu (')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU is here: cuda resolves')
def test_cuda_where_there_is_none_is_refused_saying_why() -> None:
    with pytest.raises(ValueError, match='no CUDA GPU'):
        td.resolve('cuda')


@pytest.mark.ros
@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU is here: cuda resolves')
def test_an_edge_told_to_use_a_missing_gpu_refuses_to_start() -> None:
    proc = subprocess.run([executable('edge_node'), '--ros-args', '-r', '__ns:=/tdev',
                           '-p', 'torch_device:=cuda'], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'no CUDA GPU' in proc.stdout + proc.stderr


def test_batched_tails_answer_as_one_by_one() -> None:
    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    model = CoInferenceModel(net, card)
    xs = [torch.randn(1, *card.input_shape) for _ in range(3)]
    one_by_one = [model.tail(5, 0, x) for x in xs]
    batched = model.tail_batch(5, 0, xs)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one_by_one, batched, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_tails_on_the_gpu_answer_as_on_the_cpu() -> None:
    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    cpu = CoInferenceModel(net, card)
    x = torch.randn(4, *card.input_shape)
    expected = cpu.tail(5, 0, x)
    net_gpu, _ = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    gpu = CoInferenceModel(net_gpu, card, device=td.resolve('cuda'))
    gpu.warm_up()
    out = gpu.tail(5, 0, x)
    assert out.device.type == 'cpu' and torch.allclose(out, expected, atol=1e-3)

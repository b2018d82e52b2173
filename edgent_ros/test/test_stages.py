"""Any network as a chain of stages: cut only where one tensor crosses (issue 16).

Real torch layers, small networks built here (no torchvision): a plain
chain, a residual network, a branch joined by concatenation, a
squeeze-excitation block.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from edgent_ros.stages import StageError, split, valid_cuts


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class Block(nn.Module):
    """A residual block: the identity branch crosses every layer inside it."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = Block(8)
        self.block2 = Block(8)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.stem(x))))


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.a(x), self.b(x)], 1))


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(8, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = y * self.gate(self.fc(self.pool(y)))
        return self.dw(y)


def run(stages: list, x: torch.Tensor) -> torch.Tensor:
    for s in stages:
        x = s(x)
    return x


@pytest.mark.parametrize('net', [Chain, Residual, Inception, SqueezeExcite])
def test_the_stages_chained_compute_the_network(net: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(1, 3, 16, 16)
    stages = split(model, x)
    with torch.no_grad():
        assert torch.allclose(run(stages, x), model(x), atol=1e-6)
    # Each stage's shapes follow from the one before; the metadata is the traced one.
    for a, b in itertools.pairwise(stages):
        assert a.out_shape == b.in_shape
    assert stages[0].in_shape == [1, 3, 16, 16]
    assert sum(s.params for s in stages) == sum(p.numel() for p in model.parameters())


def test_a_plain_chain_is_cut_between_its_layers_with_elementwise_ops_merged() -> None:
    model = Chain().eval()
    x = torch.randn(1, 3, 16, 16)
    unmerged = split(model, x, merge_elementwise=False)
    assert [s.kind for s in unmerged] == ['conv', 'batchnorm', 'relu', 'pool', 'flatten',
                                          'linear']
    stages = split(model, x)
    assert [s.kind for s in stages] == ['conv', 'pool', 'flatten', 'linear']
    assert stages[0].ops == ['conv', 'batchnorm', 'relu']
    conv = stages[0]
    # 2 x out elements x in channels x kernel; batch norm 2 per element, relu 1.
    out = 8 * 16 * 16
    assert conv.flops == 2 * out * 3 * 9 + 2 * out + out
    assert conv.in_bytes == 3 * 16 * 16 * 4 and conv.out_bytes == out * 4
    assert stages[-1].flops == 2 * 10 * 512


def test_no_cut_inside_a_residual_block_or_a_branch() -> None:
    x = torch.randn(1, 3, 16, 16)
    stages = split(Residual().eval(), x)
    assert [s.kind for s in stages] == ['conv', 'block', 'block', 'adaptive_pool', 'flatten',
                                        'linear']
    assert stages[1].ops.count('conv') == 2 and 'add' in stages[1].ops
    # The input feeds both branches: no cut before they are joined.
    assert [s.kind for s in split(Inception().eval(), x)] == ['block', 'conv']
    # The squeeze-excitation gate multiplies the tensor it was computed from.
    se = split(SqueezeExcite().eval(), x)
    assert [s.kind for s in se] == ['conv', 'block', 'conv_dw']
    assert se[1].ops == ['adaptive_pool', 'conv', 'hardsigmoid', 'mul']


def test_valid_cuts_are_where_one_tensor_crosses() -> None:
    traced = torch.fx.symbolic_trace(Residual())
    body = [n for n in traced.graph.nodes if n.op not in ('placeholder', 'output', 'get_attr')]
    cuts = valid_cuts(traced.graph)
    names = [body[k - 1].name for k in cuts]
    # After the stem; in each block only after the join (add) and its relu;
    # after the pool and the flatten. Never inside a block's branch.
    assert names[0] == 'stem' and len(cuts) == 7, names
    assert not [n for n in names if n.startswith(('block1_conv', 'block1_bn', 'block2_conv',
                                                  'block2_bn'))]


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class TwoOutputs(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x * 2


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on a value: torch.fx cannot trace it
            return x
        return -x


@pytest.mark.parametrize('net, why', [(TwoInputs, 'takes 2 inputs'),
                                      (TwoOutputs, 'return one tensor'),
                                      (DataDependent, 'does not trace')])
def test_networks_that_cannot_be_staged_are_refused_with_the_reason(net: type[nn.Module],
                                                                   why: str) -> None:
    with pytest.raises(StageError, match=why):
        split(net(), torch.randn(1, 3, 4, 4))


def test_splitting_leaves_every_module_in_its_own_mode() -> None:
    # An eval network stays eval when one of its parts is split again (a
    # wrapper or a stage's GraphModule is in training mode when made).
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout()).eval()
    stage = split(net, torch.zeros(1, 3, 8, 8))[0]
    split(stage.module, torch.zeros(1, 3, 8, 8), merge_elementwise=False)
    split(nn.Sequential(net), torch.zeros(1, 3, 8, 8))
    assert not any(m.training for m in net.modules())
    net[1].train()
    split(net, torch.zeros(1, 3, 8, 8))
    assert [m.training for m in net.modules()] == [False, False, True, False, False]

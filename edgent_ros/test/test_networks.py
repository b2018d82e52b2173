"""Any network as a branchy chain of stages (issue 16, item 2): every built-in
architecture splits at every cut into a head and a tail that compute the
whole; residual blocks stay whole; exits sit at FLOPs shares; checkpoints of
another architecture are refused naming the tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from edgent_ros import model as m
from edgent_ros.architectures import MobileNetV3Small, ResNet18
from edgent_ros.stages import StageError, split

SMALL = {'branchy_alexnet': (3, 32, 32), 'resnet18': (3, 64, 64),
         'mobilenet_v3_small': (3, 64, 64)}
TORCHVISION = json.loads((Path(__file__).parent / 'data' /
                          'torchvision_state_dicts.json').read_text())['state_dicts']


@pytest.fixture(scope='module', params=sorted(SMALL))
def network(request: pytest.FixtureRequest) -> m.BranchyNetwork:
    torch.manual_seed(0)
    net = m.BranchyNetwork(request.param, 10, SMALL[request.param]).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
    return net


def test_head_then_tail_equals_the_whole_at_every_cut(network: m.BranchyNetwork) -> None:
    x = torch.randn(2, *network.input_shape)
    with torch.inference_mode():
        outputs = network(x)
        for e in range(1, network.num_exits + 1):
            whole = network.run(e, x)
            torch.testing.assert_close(whole, outputs[e - 1], rtol=1e-5, atol=1e-5)
            for p in range(network.num_layers(e) + 1):
                tail = network.run(e, network.run(e, x, 0, p), p)
                torch.testing.assert_close(tail, whole, rtol=1e-4, atol=1e-4,
                                           msg=f'{network.architecture} exit {e} cut {p}')
        if network.architecture != 'branchy_alexnet':
            torch.testing.assert_close(outputs[-1], network.trunk(x), rtol=1e-5, atol=1e-5)


def test_exits_sit_at_a_quarter_half_and_three_quarters_of_the_flops(
        network: m.BranchyNetwork) -> None:
    if network.architecture == 'branchy_alexnet':
        assert network.branch_points == (4, 8, 12, 16, 22)  # the paper's
        return
    flops = [s.flops for s in network.trunk_stages]
    shares = [sum(flops[:k]) / sum(flops) for k in network.branch_points[:-1]]
    assert len(shares) == 3, shares
    for share, target in zip(shares, (0.25, 0.5, 0.75), strict=True):
        # the nearest cut: no other cut is nearer the target
        best = min(abs(sum(flops[:k]) / sum(flops) - target) for k in range(1, len(flops)))
        assert abs(share - target) == pytest.approx(best), (shares, target)


def test_a_residual_block_is_never_cut_inside() -> None:
    net = m.BranchyNetwork('resnet18', 10, (3, 64, 64))
    names = [s.name for s in net.trunk_stages]
    for layer in range(1, 5):
        for block in range(2):
            prefix = f'layer{layer}_{block}_'
            holding = [n for n in names if prefix in n]
            assert len(holding) == 1, (prefix, holding)  # the whole block is one stage
    blocks = [s for s in net.trunk_stages if s.kind == 'block']
    assert len(blocks) == 8 and all('add' in s.ops for s in blocks)


def test_exits_at_named_cuts_and_bad_cuts_refused() -> None:
    net = m.BranchyNetwork('resnet18', 10, (3, 64, 64), exits=['layer2_1_relu_1', 9])
    assert net.branch_points == (6, 9, 13)
    with pytest.raises(m.ModelError, match='no stage ends at node'):
        m.BranchyNetwork('resnet18', 10, (3, 64, 64), exits=['layer2_1_conv1'])
    with pytest.raises(m.ModelError, match=r'outside 1\.\.12'):
        m.BranchyNetwork('resnet18', 10, (3, 64, 64), exits=[13])
    with pytest.raises(m.ModelError, match='must increase'):
        m.BranchyNetwork('resnet18', 10, (3, 64, 64), exits=[6, 3])
    with pytest.raises(m.ModelError, match='unknown architecture'):
        m.BranchyNetwork('vgg', 10)
    with pytest.raises(m.ModelError, match='cannot take input'):
        m.BranchyNetwork('branchy_alexnet', 10, (3, 64, 64))


class Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # control flow on a value
            return x
        return -x


def test_a_network_torch_fx_cannot_trace_is_refused_naming_the_module() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), Untraceable()))
    with pytest.raises(StageError, match=r"in its module '1\.1' \(Untraceable\)"):
        split(net, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize('arch, cls', [('resnet18', ResNet18),
                                       ('mobilenet_v3_small', MobileNetV3Small)])
def test_state_dicts_are_torchvisions(arch: str, cls: type[nn.Module]) -> None:
    ours = [[k, list(v.shape)] for k, v in cls(num_classes=10).state_dict().items()]
    assert ours == TORCHVISION[arch]


def test_checkpoints_of_another_architecture_are_refused(tmp_path: Path) -> None:
    net = m.BranchyNetwork('resnet18', 10, (3, 64, 64))
    other = tmp_path / 'mobilenet.pt'
    torch.save(MobileNetV3Small(num_classes=10).state_dict(), other)
    with pytest.raises(m.ModelError, match=r"has no tensor 'conv1\.weight'"):
        m.load_backbone_weights(net, other)
    # ImageNet-style weights (1000 classes) load; the 10-class classifier stays fresh.
    imagenet = tmp_path / 'resnet18_imagenet.pt'
    torch.save({'state_dict': ResNet18(num_classes=1000).state_dict()}, imagenet)
    before = net.trunk.fc.weight.clone()
    assert m.load_backbone_weights(net, imagenet) == ['fc.weight', 'fc.bias']
    assert torch.equal(net.trunk.fc.weight, before)
    wrong = ResNet18(num_classes=10).state_dict()
    wrong['layer3.0.conv1.weight'] = torch.zeros(256, 128, 1, 1)
    torch.save(wrong, tmp_path / 'wrong.pt')
    with pytest.raises(m.ModelError, match=r"'layer3\.0\.conv1\.weight' has shape \[256, 128, "
                       r"1, 1\], the architecture needs \[256, 128, 3, 3\]"):
        m.load_backbone_weights(net, tmp_path / 'wrong.pt')


def test_a_whole_model_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    resnet = m.BranchyNetwork('resnet18', 10, (3, 64, 64))
    _, card = m.save(resnet, tmp_path, 'r', accuracies=[0.1] * 4, dataset='none', seed=0,
                     training={})
    net, loaded = m.load(card)
    assert loaded.architecture == 'resnet18' and net.num_exits == 4
    mobile = m.BranchyNetwork('mobilenet_v3_small', 10, (3, 64, 64))
    torch.save(mobile.state_dict(), tmp_path / 'r.pt')
    import yaml
    raw = yaml.safe_load(card.read_text())
    raw['weights_bytes'] = (tmp_path / 'r.pt').stat().st_size
    raw['weights_sha256'] = m.sha256_file(tmp_path / 'r.pt')
    card.write_text(yaml.safe_dump(raw))
    with pytest.raises(m.ModelError, match=r"does not fit resnet18: has no tensor 'trunk\.conv1"):
        m.load(card)


USER_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU())
        self.a = nn.Conv2d(16, 16, 3, 1, 1)
        self.b = nn.Conv2d(16, 16, 1)
        self.down = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.a(x), self.b(x)], dim=1)  # a branch, kept in one stage
        x = self.down(x)
        return self.head(x.mean((2, 3)))


class Bad(Net):
    def forward(self, x):
        if x.sum() > 0:
            return super().forward(x)
        return super().forward(-x)


def build(num_classes):
    return Net(num_classes)


def build_bad(num_classes):
    return nn.Sequential(nn.Identity(), Bad(num_classes))
'''


def test_a_network_of_the_users_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / 'my_nets.py').write_text(USER_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    net = m.BranchyNetwork('my_nets:build', 5, (3, 32, 32)).eval()
    assert net.num_exits >= 2
    assert any(s.kind == 'block' and 'concat' in s.ops for s in net.trunk_stages)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        for e in range(1, net.num_exits + 1):
            whole = net.run(e, x)
            for p in range(net.num_layers(e) + 1):
                torch.testing.assert_close(net.run(e, net.run(e, x, 0, p), p), whole)
    _, card = m.save(net, tmp_path, 'mine', accuracies=[0.5] * net.num_exits, dataset='none',
                     seed=0, training={})
    loaded, loaded_card = m.load(card)
    assert loaded_card.architecture == 'my_nets:build'
    assert loaded.branch_points == net.branch_points
    with pytest.raises(m.ModelError, match=r"in its module '1' \(Bad\) does not trace"):
        m.BranchyNetwork('my_nets:build_bad', 5, (3, 32, 32))
    with pytest.raises(m.ModelError, match='cannot import nothing from my_nets'):
        m.BranchyNetwork('my_nets:nothing', 5, (3, 32, 32))

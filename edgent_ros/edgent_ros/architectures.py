"""Backbones edgent_ros can build without torchvision: ResNet-18 and MobileNetV3-Small.

Written here from the papers (He et al. 2016, "Deep Residual Learning";
Howard et al. 2019, "Searching for MobileNetV3", Table 2), with the module
names and tensor shapes of torchvision 0.28's ``resnet18`` and
``mobilenet_v3_small``, so that a state_dict of those (ImageNet weights a
user downloaded elsewhere) loads into them unchanged. torchvision itself is
not a dependency: its PyPI wheel for torch 2.13 is a CUDA build that does not
import beside the CPU torch (``operator torchvision::nms does not exist``;
docs/design.md).

Pure PyTorch; never imports rclpy.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

# --- ResNet-18 --------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, and the identity (or a 1x1
    projection where the shape changes) added back."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18: a 7x7 stem, four stages of two basic blocks, global pooling, one FC."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        channels = 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f'layer{i}', nn.Sequential(BasicBlock(channels, width, stride),
                                                     BasicBlock(width, width)))
            channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        _init(self)
        for m in self.modules():  # each block starts as the identity (Goyal et al. 2017)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --- MobileNetV3-Small ------------------------------------------------------------

def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of divisor, losing at most 10%
    (the MobileNet papers' rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# torchvision's MobileNetV3 batch norm settings (its state_dicts assume them).
_BatchNorm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class ConvBNAct(nn.Sequential):
    """Convolution, batch norm and (optionally) an activation, as one Sequential."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2,
                      groups=groups, bias=False),
            _BatchNorm(out_channels)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average, two 1x1 convolutions, a hard sigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """MobileNetV3's bottleneck: 1x1 expansion, depthwise kxk, optional
    squeeze-excitation, 1x1 projection; the input added back where the shape
    stays."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int,
                 se: bool, activation: type[nn.Module], stride: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, activation=activation))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded,
                                activation=activation))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, out_channels, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


# Howard et al. 2019, Table 2: kernel, expanded, out, SE, activation, stride.
MOBILENET_V3_SMALL = (
    (3, 16, 16, True, nn.ReLU, 2),
    (3, 72, 24, False, nn.ReLU, 2),
    (3, 88, 24, False, nn.ReLU, 1),
    (5, 96, 40, True, nn.Hardswish, 2),
    (5, 240, 40, True, nn.Hardswish, 1),
    (5, 240, 40, True, nn.Hardswish, 1),
    (5, 120, 48, True, nn.Hardswish, 1),
    (5, 144, 48, True, nn.Hardswish, 1),
    (5, 288, 96, True, nn.Hardswish, 2),
    (5, 576, 96, True, nn.Hardswish, 1),
    (5, 576, 96, True, nn.Hardswish, 1),
)


class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small: a 3x3 stem, eleven bottlenecks, a 1x1 to 576
    channels, global pooling and a two-layer classifier."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2, activation=nn.Hardswish)]
        channels = 16
        for kernel, expanded, out, se, activation, stride in MOBILENET_V3_SMALL:
            layers.append(InvertedResidual(channels, kernel, expanded, out, se, activation,
                                           stride))
            channels = out
        layers.append(ConvBNAct(channels, 6 * channels, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * channels, 1024), nn.Hardswish(inplace=True),
            nn.Dropout(dropout, inplace=True), nn.Linear(1024, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _init(model: nn.Module) -> None:
    """He initialisation for convolutions, unit batch norm, small linear weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)

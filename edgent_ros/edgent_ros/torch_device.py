"""Where the edge runs its tails: the torch device named by a parameter.

``auto`` takes a CUDA GPU when torch sees one, else the CPU; ``cuda`` where
there is none is refused with what torch says, not left to fail at the first
tensor. Never imports rclpy.
"""

from __future__ import annotations

import torch

CHOICES = ('auto', 'cpu', 'cuda')


def resolve(choice: str) -> torch.device:
    """The torch device for ``choice`` (one of CHOICES); ValueError saying why not."""
    if choice not in CHOICES:
        raise ValueError(f'torch_device must be one of {", ".join(CHOICES)}, got {choice!r}')
    if choice == 'cpu' or (choice == 'auto' and not torch.cuda.is_available()):
        return torch.device('cpu')
    if not torch.cuda.is_available():
        built = torch.version.cuda
        raise ValueError('torch_device cuda: torch sees no CUDA GPU here ('
                         + (f'built for CUDA {built}, but no device or driver is available'
                            if built else f'torch {torch.__version__} is a CPU-only build')
                         + '); use auto or cpu')
    return torch.device('cuda', torch.cuda.current_device())


def describe(device: torch.device) -> str:
    """What the device is, for logs and EdgeLoad.torch_device."""
    if device.type == 'cuda':
        return f'{device} ({torch.cuda.get_device_name(device)})'
    return f'cpu ({torch.get_num_threads()} threads)'

"""The benchmark tasks' models, plain ``torch.nn`` modules.

Models of *batchable* tasks (MLP, CNN1d, CharTransformer) are purely functional in ``forward``:
no BatchNorm, no dropout, no buffers updated in place and no control flow that depends on the
data, so the batched engine can stack K copies with ``torch.func.stack_module_state`` and run them
under ``vmap``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """Fully connected ReLU network, ``sizes = (in, hidden..., out)``; inputs are flattened."""

    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes must hold at least two positive layer widths, got {tuple(sizes)!r}")
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:  # fixed by construction, not by the data
                x = torch.relu(x)
        return x


class CNN1d(nn.Module):
    """Small 1-D conv net for MNIST-1D: three Conv1d + ReLU layers (length 40 -> 20 -> 10), linear head."""

    def __init__(self, length: int = 40, channels: int = 32, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, kernel_size=5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1)
        out_len = (length + 1) // 2
        out_len = (out_len + 1) // 2
        self.head = nn.Linear(channels * out_len, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.unsqueeze(1)  # [N, L] -> [N, 1, L]
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.head(x.flatten(1))

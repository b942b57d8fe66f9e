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


# ------------------------------------------------------------------------------ character model
class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (d // self.n_heads) ** -0.5
        # the mask is rebuilt from the shape (no buffer), so stacked copies need no extra state
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Tiny causal transformer over bytes (pre-LayerNorm, learned positions, no dropout).

    Input int64 token ids [N, T] with T <= block_size; output logits [N, T, vocab].
    """

    def __init__(self, vocab: int = 256, block_size: int = 64, dim: int = 64, n_layers: int = 2, n_heads: int = 4):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(block_size, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        x = self.tok(idx) + self.pos[:t]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# -------------------------------------------------------------------------------------- ResNet20
class BasicBlock(nn.Module):
    """Two 3x3 conv + BN; the shortcut subsamples and zero-pads channels (He et al. 2016, option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            short = nn.functional.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return torch.relu(out + short)


class ResNet20(nn.Module):
    """ResNet20 for 32x32 images: 3 stages x 3 basic blocks with 16/32/64 channels."""

    def __init__(self, n_classes: int = 10, blocks_per_stage: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, c = [], 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(blocks_per_stage):
                layers.append(BasicBlock(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(64, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------- VGG16
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """VGG-16 with BatchNorm for 32x32 images (13 conv layers, 5 max-pools, linear head)."""

    def __init__(self, n_classes: int = 100):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(512, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


# ------------------------------------------------------------------------------------ WRN-16-8
class WideBlock(nn.Module):
    """Pre-activation wide basic block (BN-ReLU-conv x 2), 1x1 conv shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if (stride == 1 and c_in == c_out) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = torch.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(torch.relu(self.bn2(o)))
        return o + short


class WideResNet(nn.Module):
    """Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016): (depth - 4) / 6 blocks per stage,
    widths 16k / 32k / 64k, global average pooling (so any input size works, e.g. STL-10's 96x96)."""

    def __init__(self, depth: int = 16, widen: int = 8, n_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth!r}")
        n = (depth - 4) // 6
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        layers, c = [], 16
        for i, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for j in range(n):
                layers.append(WideBlock(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.layers(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------- VAE
class VAE(nn.Module):
    """Dense VAE (Kingma & Welling 2014) as in the REX paper: three dense encoder layers
    (n_in -> h1 -> h2 -> 2 * latent) and three dense decoder layers (latent -> h2 -> h1 -> n_in).

    The reparameterisation noise is an *input*: ``forward`` takes ``[N, n_in + latent]`` (image, then eps ~ N(0, I)),
    computes z = mu + sigma * eps, and returns one packed tensor ``[decoder logits (n_in) | mu | logvar]``
    (:meth:`unpack` splits it). Feeding the noise from the data pipeline makes the model a pure function, so the
    engines draw it from each trial's own generator and stacked copies stay equal to single runs.
    """

    def __init__(self, n_in: int = 784, latent: int = 2, hidden: tuple[int, int] = (512, 256)):
        super().__init__()
        self.n_in, self.latent = n_in, latent
        h1, h2 = hidden
        self.encoder = nn.Sequential(nn.Linear(n_in, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
                                     nn.Linear(h2, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(),
                                     nn.Linear(h1, n_in))

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.n_in + self.latent:
            raise ValueError(f"VAE input must be [N, {self.n_in} + {self.latent}] (image, then noise), "
                             f"got {tuple(x.shape)}")
        image, eps = x[:, :self.n_in], x[:, self.n_in:]
        mu, logvar = self.encoder(image).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * eps
        return torch.cat([self.decoder(z), mu, logvar], dim=1)

    @staticmethod
    def unpack(out: Tensor, latent: int = 2) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, mu, logvar) from a packed output."""
        n_in = out.shape[-1] - 2 * latent
        return out[..., :n_in], out[..., n_in: n_in + latent], out[..., n_in + latent:]

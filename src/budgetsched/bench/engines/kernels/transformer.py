"""The transformer kernel: K members of the project's ``CharTransformer`` stacked by hand."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from budgetsched.bench.engines.kernels.autograd import AutogradStack

__all__ = ["StackedTransformer", "transformer_spec", "EVAL_PASS_SEQ"]

#: Most sequences per evaluation pass.
EVAL_PASS_SEQ = 256


def transformer_spec(model: nn.Module) -> dict[str, Any] | None:
    """The shape of the project's ``CharTransformer`` (dims, heads, layers, LayerNorm eps) if ``model`` is one
    built from the standard parts, else None."""
    from budgetsched.bench.tasks.models import Block, CharTransformer

    if type(model) is not CharTransformer or any(True for _ in model.buffers()):
        return None
    norms = [model.ln_f] + [ln for b in model.blocks for ln in (b.ln1, b.ln2)]
    if any(type(b) is not Block for b in model.blocks) or any(
            type(ln) is not nn.LayerNorm or not ln.elementwise_affine or ln.bias is None for ln in norms):
        return None
    eps = {ln.eps for ln in norms}
    for b in model.blocks:
        mlp = b.mlp
        if (len(mlp) != 3 or type(mlp[0]) is not nn.Linear or type(mlp[1]) is not nn.GELU
                or mlp[1].approximate != "none" or type(mlp[2]) is not nn.Linear):
            return None
    if len(eps) != 1:
        return None
    return {"dim": model.pos.shape[1], "block_size": model.block_size, "n_layers": len(model.blocks),
            "n_heads": model.blocks[0].attn.n_heads if len(model.blocks) else 1, "vocab": model.tok.num_embeddings,
            "eps": eps.pop()}


class StackedTransformer(AutogradStack):
    """K members of the project's ``CharTransformer``: every linear layer a per-member ``baddbmm``, one
    ``scaled_dot_product_attention(is_causal=True)`` for the attention of all members, LayerNorm with per-member
    affine parameters; autograd backward. The same mathematics as the model's ``forward`` (its explicit masked
    softmax equals the fused causal attention up to rounding)."""

    def __init__(self, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec

    def _norm(self, p: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.layer_norm(x, x.shape[-1:], eps=self.spec["eps"])
        return torch.addcmul(p[name + ".bias"].unsqueeze(1), h, p[name + ".weight"].unsqueeze(1))

    def _outputs(self, p: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """Logits [t, n, T, vocab] of token ids idx [t, n, T]."""
        F = torch.nn.functional
        t, n, T = idx.shape
        D, H, V = self.spec["dim"], self.spec["n_heads"], self.spec["vocab"]
        if T > self.spec["block_size"]:
            raise ValueError(f"sequence length {T} exceeds block_size {self.spec['block_size']}")
        offsets = torch.arange(t, device=idx.device).view(t, 1, 1) * V
        x = F.embedding((idx + offsets).view(t, n * T), p["tok.weight"].reshape(t * V, D))  # [t, n*T, D]
        x = (x.view(t, n, T, D) + p["pos"][:, :T].unsqueeze(1)).view(t, n * T, D)
        for i in range(self.spec["n_layers"]):
            b = f"blocks.{i}"
            qkv = self._linear(p, b + ".attn.qkv", self._norm(p, b + ".ln1", x))
            q, k, v = (z.view(t * n, T, H, D // H).transpose(1, 2) for z in qkv.split(D, dim=2))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [t*n, H, T, D/H]
            x = x + self._linear(p, b + ".attn.proj", att.transpose(1, 2).reshape(t, n * T, D))
            h = F.gelu(self._linear(p, b + ".mlp.0", self._norm(p, b + ".ln2", x)))
            x = x + self._linear(p, b + ".mlp.2", h)
        return self._linear(p, "head", self._norm(p, "ln_f", x)).view(t, n, T, V)

    def _eval_pass(self) -> int:
        return EVAL_PASS_SEQ

    def _per_member_bytes(self, x_shape: Sequence[int], train: bool, itemsize: int) -> int:
        n, T = x_shape[0], x_shape[1]
        D, V, L = self.spec["dim"], self.spec["vocab"], self.spec["n_layers"]
        per_token = L * (16 * D + 4 * D) + 2 * V + 4 * D if train else 4 * D + 2 * V
        return n * T * per_token * itemsize

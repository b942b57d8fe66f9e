"""The VAE kernel: K members of the project's ``VAE`` stacked by hand."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from budgetsched.bench.engines.kernels.autograd import AutogradStack
from budgetsched.bench.engines.kernels.feedforward import LayerSpec, stack_layers

__all__ = ["StackedVAE", "vae_spec", "EVAL_PASS"]

#: Most examples per evaluation pass.
EVAL_PASS = 250


def vae_spec(model: nn.Module) -> dict[str, Any] | None:
    """The encoder's and decoder's layers of the project's ``VAE`` (noise as an input) if ``model`` is one, else
    None."""
    from budgetsched.bench.tasks.models import VAE

    if type(model) is not VAE or any(True for _ in model.buffers()):
        return None
    enc, dec = stack_layers(model.encoder), stack_layers(model.decoder)
    if enc is None or dec is None or enc[0] is not None or dec[0] is not None or any(
            s.kind != "linear" or s.act not in ("relu", None) for s in enc[1] + dec[1]):
        return None
    return {"n_in": model.n_in, "latent": model.latent, "encoder": enc[1], "decoder": dec[1]}


class StackedVAE(AutogradStack):
    """K members of the project's ``VAE`` (inputs ``[image | noise]``): encoder and decoder as per-member
    ``baddbmm`` chains, the reparameterisation on all members at once; autograd backward."""

    def __init__(self, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec

    def _mlp(self, p: dict[str, torch.Tensor], prefix: str, layers: Sequence[LayerSpec], h: torch.Tensor
             ) -> torch.Tensor:
        for spec in layers:
            h = self._linear(p, prefix + spec.weight[:-len(".weight")], h)
            if spec.act == "relu":
                h = torch.relu(h)
        return h

    def _outputs(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Packed outputs [t, n, n_in + 2 latent] of inputs x [t, n, n_in + latent]."""
        n_in, latent = self.spec["n_in"], self.spec["latent"]
        x = x.flatten(2)
        if x.shape[2] != n_in + latent:
            raise ValueError(f"VAE input must be [N, {n_in} + {latent}] (image, then noise), got {tuple(x.shape[1:])}")
        mu, logvar = self._mlp(p, "encoder.", self.spec["encoder"], x[..., :n_in]).chunk(2, dim=2)
        z = mu + torch.exp(0.5 * logvar) * x[..., n_in:]
        return torch.cat([self._mlp(p, "decoder.", self.spec["decoder"], z), mu, logvar], dim=2)

    def _eval_pass(self) -> int:
        return EVAL_PASS

    def _per_member_bytes(self, x_shape: Sequence[int], train: bool, itemsize: int) -> int:
        width = sum(s.n_out for s in self.spec["encoder"] + self.spec["decoder"])
        return x_shape[0] * width * (3 if train else 1) * itemsize

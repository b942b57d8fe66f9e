"""Hand-stacked kernels: forward and backward of K members of one model at once, by model family.

``feedforward`` (:class:`StackedNet`: the tasks' MLPs and ``CNN1d``, and ``nn.Sequential`` stacks of ``Conv1d`` /
``Linear`` layers, with a hand-written backward), ``transformer`` (:class:`StackedTransformer`), ``vae``
(:class:`StackedVAE`) — the last two a hand-stacked forward with autograd's backward (``autograd``). ``losses``
reads which fused loss a task declares. Every result equals the autograd / ``vmap`` path up to floating-point
reduction order (tests/test_stacked.py, tests/test_batched.py).
"""
from __future__ import annotations

from budgetsched.bench.engines.kernels.feedforward import LayerSpec, StackedNet, stack_layers
from budgetsched.bench.engines.kernels.losses import kind_of
from budgetsched.bench.engines.kernels.transformer import StackedTransformer, transformer_spec
from budgetsched.bench.engines.kernels.vae import StackedVAE, vae_spec

__all__ = ["StackedNet", "LayerSpec", "stack_layers", "StackedTransformer", "transformer_spec", "StackedVAE",
           "vae_spec", "kind_of"]

"""Task registry: data + model + loss + metric + maximum epochs + batch size.

A task's ``max_epochs`` is its 100 % budget; a trial at budget b % trains ``ceil(max_epochs * b / 100)``
epochs. Lower metric is always better.

Budgets of the small tasks, measured with a linear decay to 0 (one seed, one CPU thread, plain
training loop without evaluation):

* ``mnist1d-mlp``: 100 epochs of 36 steps (3600 train examples, batch 100). SGD + momentum 0.9 at
  LR 0.1 reaches train loss 0.002 with validation error flat (37 %) from about epoch 50 on; Adam at
  LR 0.01 reaches train loss 5e-4 (test error 35 %). So the 100 % budget trains to convergence; such
  a run takes about 3 s (SGD) to 5 s (Adam). (Adam at LR 1e-3 is still at train loss 0.44: too low an
  LR, not too short a budget.)
* ``mnist1d-cnn``: the same 100 epochs; SGD + momentum at 0.03 and Adam at 3e-3 both end at train
  loss 0.003 with validation error within one point over the last 30 epochs (test error 8-10 %); 14-20 s a run.
* ``digits-mlp``: 50 epochs of 20 steps (1257 train examples, batch 64); SGD + momentum at 0.1 ends
  at train loss 0.014 with validation error unchanged over the last 30 epochs; under 1 s a run.
* ``shakespeare-char``: 5 epochs of 241 steps (blocks of 64 + 1 bytes, batch 64), about 35 s an
  epoch. A short budget by design, not a converged one: one epoch of Adam at 3e-3 reaches 3.3 bits/char.

The paper settings keep the paper's budgets (Table 3: 300 / 300 / 200 / 200 epochs) and batch sizes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import data as _data
from . import models as _models
from .data import TaskData

__all__ = ["Task", "TaskData", "get_task", "available_tasks", "register_task", "resolve_task", "task_baseline",
           "majority_error", "mean_image_nll", "unigram_bits"]


@dataclass(frozen=True)
class Task:
    """One benchmark setting: a data set, a model, a loss, a metric and the length of its 100 % run.

    Build one for your own model and data, and name it to the harness with :func:`register_task` (this process)
    or by reference, ``--task package.module:factory`` / ``--task path/to/file.py:factory`` (every process: the
    reference is stored and worker processes and Ray re-resolve it); ``examples/custom_task.py`` shows both.

    Attributes:
        name: shown in reports (a task given by reference is named by the reference).
        max_epochs: the 100 % budget, in epochs of ``batch_size`` examples.
        batch_size: training examples per optimizer step.
        metric_name: what ``metric`` measures; lower is better, always (e.g. ``"error %"``, ``"nll"``).
        load: ``(data_dir, cache_dir) -> TaskData``: train / validation / test tensors on the CPU (both arguments
            may be None; ignore them if your data needs no files).
        make_model: ``() -> nn.Module``; the engines seed torch with the trial's seed right before calling it.
        loss: ``(model output, y) -> scalar`` mean training loss (also reported on validation and test).
        metric: ``(model output, y) -> [N]`` per-example metric; its mean is the trial's result.
        batchable: True if K copies of the model may be trained as one stacked model (no BatchNorm running
            statistics, no dropout, no data-dependent control flow); None (default for your own tasks): decided by
            trying it on a few examples (:func:`budgetsched.bench.engines.batched.supports`).
        augment: ``(x batch, torch.Generator) -> x batch`` applied to training batches, drawing only from the
            generator (each trial has its own).
        weight_decay: the L2 coefficient of both optimizers (``torch.optim`` semantics).
        baseline: the metric of a *trivial* predictor on the test split, the 0 of the report's normalised scores
            (``(baseline - score) / (baseline - best)``): a number, or a function ``TaskData -> float`` that computes
            it from the task's data (:func:`task_baseline` calls it). None (default): scores are normalised to the
            best. Built-in tasks: :func:`majority_error` (chance error: always the training split's most frequent
            class), :func:`mean_image_nll` (the VAE's mean image), :func:`unigram_bits` (character frequencies).
        steps_per_epoch: optimizer steps between two evaluations on the validation split (the protocol's "epoch":
            plateau's patience counts these; ``max_epochs`` of them are the 100 % run). Each such epoch trains on
            a fresh random draw of ``steps_per_epoch x batch_size`` distinct training examples, so it must be at
            most ``ceil(n_train / batch_size)``. None (default): one pass over the training split.
    """

    name: str
    max_epochs: int  # the 100 % budget
    batch_size: int
    metric_name: str  # lower is better, always
    load: Callable[[Path | None, Path | None], TaskData]  # (data_dir, cache_dir) -> data
    make_model: Callable[[], torch.nn.Module]
    loss: Callable[[Tensor, Tensor], Tensor]  # (model_output, y) -> mean scalar loss
    metric: Callable[[Tensor, Tensor], Tensor]  # (model_output, y) -> per-example metric
    batchable: bool | None = None  # None: try it (batched.supports)
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None  # per training batch
    weight_decay: float = 0.0  # the setting's standard L2
    baseline: float | Callable[[TaskData], float] | None = None  # a trivial predictor's test metric
    steps_per_epoch: int | None = None  # steps between evaluations; None: one pass over the training split

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name must be a non-empty string, got {self.name!r}")
        for f, lo in (("max_epochs", 1), ("batch_size", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"task {self.name!r}: {f} must be an integer >= {lo}, got {v!r}")
        for f in ("load", "make_model", "loss", "metric"):
            if not callable(getattr(self, f)):
                raise ValueError(f"task {self.name!r}: {f} must be callable, got {getattr(self, f)!r}")
        if self.augment is not None and not callable(self.augment):
            raise ValueError(f"task {self.name!r}: augment must be callable or None, got {self.augment!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0.0 <= self.weight_decay < math.inf):
            raise ValueError(f"task {self.name!r}: weight_decay must be a number >= 0, got {self.weight_decay!r}")
        _check_baseline(self.name, self.baseline)
        spe = self.steps_per_epoch
        if spe is not None and (isinstance(spe, bool) or not isinstance(spe, int) or spe < 1):
            raise ValueError(f"task {self.name!r}: steps_per_epoch must be an integer >= 1 or None, got {spe!r}")


def _check_baseline(name: str, baseline: Any) -> None:
    """ValueError unless ``baseline`` is None, a finite number or a callable."""
    if baseline is None or callable(baseline):
        return
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
        raise ValueError(f"task {name!r}: baseline must be a finite number, a function of the task's data, or None; "
                         f"got {baseline!r}")


# ------------------------------------------------------------------------- trivial baselines (Task.baseline)
def majority_error(data: TaskData) -> float:
    """Chance error in %: the test error of always predicting the training split's most frequent class
    (``100 * mean(y_test != mode(y_train))``)."""
    counts = torch.bincount(data.train_y.reshape(-1))
    return float((data.test_y != int(counts.argmax())).to(torch.float64).mean()) * 100.0


def mean_image_nll(data: TaskData) -> float:
    """The negative ELBO (nats) of a VAE whose decoder ignores its latent and outputs the mean training image:
    KL = 0 (the posterior is the prior), reconstruction = the Bernoulli cross-entropy of the test images against
    pixel probabilities ``p = (sum_i x_i + 1/2) / (n + 1)`` over the n training images (the Krichevsky-Trofimov
    estimate: a pixel never lit in training is not given probability 0), summed over pixels, mean over images."""
    x = data.train_y.reshape(len(data.train_y), -1).to(torch.float64)
    p = (x.sum(dim=0) + 0.5) / (x.shape[0] + 1.0)
    t = data.test_y.reshape(len(data.test_y), -1).to(torch.float64)
    nll = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p)).sum(dim=1)
    return float(nll.mean())


def unigram_bits(data: TaskData) -> float:
    """Bits per character of the unigram model: each test character coded with its frequency in the training
    targets, add-one smoothed over the vocabulary (``-mean log2 (count + 1) / (N + V)``)."""
    y = data.train_y.reshape(-1)
    vocab = int(max(int(y.max()), int(data.test_y.max()))) + 1
    counts = torch.bincount(y, minlength=vocab).to(torch.float64) + 1.0
    logp = torch.log2(counts / counts.sum())
    return float(-logp[data.test_y.reshape(-1)].mean())


def task_baseline(task: "Task", data_dir: Path | None = None, cache_dir: Path | None = None) -> float | None:
    """The task's trivial-baseline test metric: ``task.baseline`` itself, or its function applied to the task's
    data (loaded with ``data_dir`` / ``cache_dir``); None when the task declares none."""
    b = getattr(task, "baseline", None)
    if b is None or not callable(b):
        return None if b is None else float(b)
    return float(b(task.load(data_dir, cache_dir)))


# ------------------------------------------------------------------------------- losses / metrics
def declare_kind(kind: str) -> Callable[[Callable], Callable]:
    """Declare what a loss or metric computes (its ``kind`` attribute), so the engines may compute it with their
    fused kernels (``"cross_entropy"``: softmax cross-entropy; ``"error_percent"``, ``"bits_per_char"``) instead
    of calling it; an undeclared function is always called as it is."""
    def mark(fn: Callable) -> Callable:
        fn.kind = kind  # type: ignore[attr-defined]
        return fn
    return mark


@declare_kind("cross_entropy")
def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the batch (and over positions for sequence outputs [N, T, V])."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@declare_kind("error_percent")
def error_percent(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example classification error in percent (0 or 100)."""
    return (logits.argmax(-1) != y).to(torch.float32) * 100.0


@declare_kind("bits_per_char")
def bits_per_char(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example (per-sequence) mean cross-entropy in bits: logits [N, T, V], y [N, T] -> [N]."""
    ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [N, T], nats
    return ce.mean(dim=1) / math.log(2.0)


def next_char_bits(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy of one next character in bits, ``-log2 softmax(logits)[y]``: logits [N, V],
    y [N] -> [N] (the character MLP's metric; its mean is bits per character)."""
    return F.cross_entropy(logits, y, reduction="none") / math.log(2.0)


def vae_neg_elbo(out: Tensor, x: Tensor) -> Tensor:
    """Per-example negative ELBO in nats: Bernoulli reconstruction (binary cross-entropy of the
    decoder logits against the pixel intensities, summed over pixels) plus KL(q(z|x) || N(0, I))."""
    logits, mu, logvar = _models.VAE.unpack(out, latent=(out.shape[-1] - x[0].numel()) // 2)
    recon = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(dim=1)
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    return recon + kl


def vae_loss(out: Tensor, x: Tensor) -> Tensor:
    """Negative ELBO per example, averaged over the batch."""
    return vae_neg_elbo(out, x).mean()


# ---------------------------------------------------------------------------------------- registry
_TASKS: dict[str, Task] = {}
_BY_REFERENCE: dict[str, Any] = {}  # tasks named by module:factory references, resolved in this process


def _register(task: Task) -> None:
    _TASKS[task.name] = task


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` available by its name in this process (``get_task``, ``budgetsched.bench`` studies).

    A built-in name cannot be taken; registering a name again needs ``replace=True``. Worker processes do not see
    tasks registered here: for ``workers > 1`` or Ray, name the task by reference (``module:factory``).
    """
    if not isinstance(task, Task) and not _is_trainable(task):
        raise ValueError(f"register_task expects a Task (or a budgetsched trainable), got {type(task).__name__}")
    if task.name in _BUILTIN:
        raise ValueError(f"task name {task.name!r} is a built-in task; choose another name")
    if task.name in _TASKS and not replace:
        raise ValueError(f"a task named {task.name!r} is already registered; pass replace=True to replace it")
    _TASKS[task.name] = task
    return task


def _is_trainable(obj: object) -> bool:
    from budgetsched.bench.tasks.custom import Trainable

    return isinstance(obj, Trainable)


_LOCATIONS: dict[str, str] = {}  # reference -> where this process imports its code from (a shipped copy)


def task_code(ref: str) -> tuple[str, Any] | None:
    """Where this process finds the code of task reference ``ref``: ``("file", absolute path)`` for
    ``path/to/file.py:factory`` (a relative path is relative to the working directory), ``("module", name)`` for
    ``package.module:factory``; None for a registered name. Nothing is imported."""
    if not isinstance(ref, str) or ref in _TASKS or ":" not in ref:
        return None
    where = _LOCATIONS.get(ref, ref.rpartition(":")[0])
    if where.endswith(".py"):
        return "file", Path(where).expanduser().resolve()
    return "module", where


def locate_task(ref: str, where: str) -> None:
    """Import the code of task reference ``ref`` from ``where`` (a file path or a module name) in this process,
    instead of the module part of ``ref``. A Ray worker uses it for the copy of the user's code shipped with the
    study; the task keeps ``ref`` as its name, so stored trials name the reference as the user wrote it."""
    if _LOCATIONS.get(ref) != where:
        _LOCATIONS[ref] = where
        _BY_REFERENCE.pop(ref, None)


def resolve_task(ref: str) -> Task:
    """The task named by ``ref``: a registered name, or a reference ``package.module:factory`` or
    ``path/to/file.py:factory`` whose factory (a Task, a trainable, or a function returning one) gives it.
    A task given by reference is named by the reference, so stored trials name what made them (its code may be
    imported from elsewhere: :func:`locate_task`).

    Raises:
        UsageError: unknown name, unimportable module or file, missing attribute, or a factory that does not
            give a Task.
    """
    from budgetsched.errors import UsageError

    if not isinstance(ref, str) or not ref:
        raise UsageError(f"a task is a name or a module:factory reference, got {ref!r}")
    if ref in _TASKS:
        return _TASKS[ref]
    if ref in _BY_REFERENCE:
        return _BY_REFERENCE[ref]
    if ":" not in ref:
        raise UsageError(f"unknown task {ref!r}; choose from {', '.join(_TASKS)}, or give your own as "
                         "package.module:factory or path/to/file.py:factory")
    where, _, attr = ref.rpartition(":")
    module = _import(_LOCATIONS.get(ref, where), ref)
    if not attr or not hasattr(module, attr):
        raise UsageError(f"task reference {ref!r}: {where!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, Task) and not _is_trainable(obj) and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            raise UsageError(f"task reference {ref!r}: calling {attr}() raised {type(e).__name__}: {e}") from None
    if not isinstance(obj, Task) and not _is_trainable(obj):
        raise UsageError(f"task reference {ref!r} gives a {type(obj).__name__}, not a budgetsched Task "
                         "(or a function decorated with @budgetsched.bench.trainable)")
    if obj.name != ref:
        obj = dataclasses.replace(obj, name=ref)
    _BY_REFERENCE[ref] = obj  # resolved once per process
    return obj


def _import(where: str, ref: str) -> Any:
    from budgetsched.errors import UsageError

    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            looked = "" if str(path) == where else f" (looked for {str(path)!r})"
            raise UsageError(f"task reference {ref!r}: no such file {where!r}{looked}")
        name = "budgetsched_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"task reference {ref!r}: cannot load {where!r} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        if str(path.parent) not in sys.path:  # its sibling modules import, as when the file runs as a script
            sys.path.append(str(path.parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise UsageError(f"task reference {ref!r}: importing {where!r} raised {type(e).__name__}: {e}") from None
        return module
    try:
        return importlib.import_module(where)
    except ImportError as e:
        raise UsageError(f"task reference {ref!r}: cannot import module {where!r} ({e})") from None
    except Exception as e:
        raise UsageError(f"task reference {ref!r}: importing {where!r} raised {type(e).__name__}: {e}") from None


# The offline suite (docs/tasks.md says why each is sized as it is). Weight decay 5e-4 as the paper's image
# settings use; MNIST-1D is generated with 10 000 sequences so that the 100 % run is well trained, not memorised.
_register(Task(
    name="mnist1d-mlp", max_epochs=60, batch_size=100, metric_name="error %",
    load=_data.load_mnist1d, make_model=lambda: _models.MLP((40, 100, 100, 10)),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
    baseline=majority_error,
))
_register(Task(
    name="mnist1d-cnn", max_epochs=30, batch_size=100, metric_name="error %",
    load=_data.load_mnist1d, make_model=lambda: _models.CNN1d(channels=16),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
    baseline=majority_error,
))
_register(Task(
    name="digits-mlp", max_epochs=60, batch_size=32, metric_name="error %",
    load=_data.load_digits_data, make_model=lambda: _models.MLP((64, 64, 10)),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
    baseline=majority_error,
))
_register(Task(
    name="digits-vae", max_epochs=100, batch_size=64, metric_name="nll",
    load=_data.load_digits_vae,
    make_model=lambda: _models.VAE(n_in=64, latent=_data.DIGITS_VAE_LATENT, hidden=(128, 64)),
    loss=vae_loss, metric=vae_neg_elbo, batchable=True, augment=_data.append_noise(_data.DIGITS_VAE_LATENT),
    baseline=mean_image_nll,
))
_register(Task(
    name="shakespeare-char", max_epochs=4, batch_size=32, metric_name="bits/char",
    load=_data.load_shakespeare,
    make_model=lambda: _models.CharTransformer(vocab=_data.SHAKESPEARE_VOCAB, block_size=32, dim=32, n_layers=1,
                                               n_heads=4),
    loss=cross_entropy, metric=bits_per_char, batchable=True,
    baseline=unigram_bits,
))

# The REX paper's settings (Table 3); they read the standard files from --data-dir.
_register(Task(
    name="cifar10-resnet20", max_epochs=300, batch_size=128, metric_name="error %",
    load=_data.load_cifar10, make_model=lambda: _models.ResNet20(n_classes=10),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(4), weight_decay=5e-4,
    baseline=majority_error,
))
_register(Task(
    name="cifar100-vgg16", max_epochs=300, batch_size=128, metric_name="error %",
    load=_data.load_cifar100, make_model=lambda: _models.VGG16(n_classes=100),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(4), weight_decay=5e-4,
    baseline=majority_error,
))
_register(Task(
    name="mnist-vae", max_epochs=200, batch_size=100, metric_name="nll",
    load=_data.load_mnist_vae, make_model=lambda: _models.VAE(latent=_data.MNIST_VAE_LATENT),
    loss=vae_loss, metric=vae_neg_elbo, batchable=True, augment=_data.append_noise(_data.MNIST_VAE_LATENT),
    baseline=mean_image_nll,
))
_register(Task(
    name="stl10-wrn", max_epochs=200, batch_size=64, metric_name="error %",
    load=_data.load_stl10, make_model=lambda: _models.WideResNet(depth=16, widen=8, n_classes=10),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(12), weight_decay=5e-4,  # pad 12 on 96x96 = pad 4 on 32x32, scaled
    baseline=majority_error,
))


# Suite v2 (docs/tasks.md says why each is sized as it is): every task trains SUITE_V2_STEPS optimizer steps at 100 %
# (50 at 1 %) and is evaluated every SUITE_V2_EVAL_EVERY steps, so that at 1 % there are 13 evaluations and
# plateau's patience of 10 can still decay the LR (plan.plateau_is_constant); its "epoch" is that interval.
SUITE_V2_STEPS = 5_000
SUITE_V2_EVAL_EVERY = 4
_V2 = dict(max_epochs=SUITE_V2_STEPS // SUITE_V2_EVAL_EVERY, steps_per_epoch=SUITE_V2_EVAL_EVERY, batchable=True)
_register(Task(
    name="mnist1d-mlp-v2", batch_size=100, metric_name="error %", load=_data.load_mnist1d_v2,
    make_model=lambda: _models.MLP((40, 100, 100, 10)), loss=cross_entropy, metric=error_percent,
    weight_decay=5e-4, baseline=majority_error, **_V2,
))
_register(Task(
    name="mnist1d-cnn-v2", batch_size=100, metric_name="error %", load=_data.load_mnist1d_v2,
    make_model=lambda: _models.CNN1d(channels=16), loss=cross_entropy, metric=error_percent,
    weight_decay=5e-4, baseline=majority_error, **_V2,
))
_register(Task(
    name="digits-mlp-v2", batch_size=32, metric_name="error %", load=_data.load_digits_data,
    make_model=lambda: _models.MLP((64, 64, 10)), loss=cross_entropy, metric=error_percent,
    weight_decay=5e-4, baseline=majority_error, **_V2,
))
_register(Task(
    name="digits-vae-v2", batch_size=32, metric_name="nll", load=_data.load_binary_digits_vae,
    make_model=lambda: _models.VAE(n_in=64, latent=_data.DIGITS_VAE_LATENT, hidden=(128, 64)),
    loss=vae_loss, metric=vae_neg_elbo, augment=_data.append_noise(_data.DIGITS_VAE_LATENT),
    baseline=mean_image_nll, **_V2,
))
_register(Task(
    name="shakespeare-mlp", batch_size=32, metric_name="bits/char", load=_data.load_shakespeare_context,
    make_model=lambda: _models.MLP((_data.CHAR_CONTEXT * _data.SHAKESPEARE_VOCAB, 128, _data.SHAKESPEARE_VOCAB)),
    loss=cross_entropy, metric=next_char_bits, augment=_data.one_hot_batches(_data.SHAKESPEARE_VOCAB),
    baseline=unigram_bits, **_V2,
))


_BUILTIN = frozenset(_TASKS)


def available_tasks() -> list[str]:
    """Names of the registered tasks (``mnist1d-mlp`` is the default)."""
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The task ``name``: a registered name or a ``module:factory`` reference (:func:`resolve_task`); an unknown
    name raises ``ValueError`` (a UsageError) listing the valid ones."""
    return resolve_task(name)

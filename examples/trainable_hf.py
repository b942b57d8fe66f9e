"""The REX paper's protocol through a Hugging Face ``Trainer``: a budgetsched *trainable* around ``trainer.train()``.

Each trial of the grid (schedule x optimizer x budget x LR x seed) trains a tiny randomly initialised BERT on
scikit-learn's bundled digits (no download): the 8x8 pixel intensities 0..16 are the 64 tokens of a sequence, the
digit its label. The Trainer gets the trial's optimizer and scheduler (``optimizers=``) and ``max_steps`` = the
trial's budget in steps; its evaluations are reported as the trial's curves; the function returns the validation
and test error. budgetsched runs the grid, stores every trial (resumable), and reports it like a built-in task.

    python examples/trainable_hf.py [OUT_DIR]   # 27 trials into OUT_DIR/digits-bert.db (about a minute on 2 cores),
                                                # then the report
    budgetsched run --task examples/trainable_hf.py:train --schedules rex,linear --lrs 0.001,0.003 --store d.db
"""
from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import (BertConfig, BertForSequenceClassification, PrinterCallback, Trainer, TrainerCallback,
                          TrainingArguments)

from budgetsched.bench import trainable

BATCH = 64
STEPS_PER_EPOCH = 17  # 1078 training images / 64 per batch, rounded up


class Digits(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.as_tensor(x, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


@functools.lru_cache(maxsize=1)
def digits_splits() -> tuple[Digits, Digits, Digits]:
    """60 % train, 20 % validation, 20 % test (stratified, fixed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)  # pixel intensities 0..16: the tokens
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=0)
    return Digits(x_train, y_train), Digits(x_val, y_val), Digits(x_test, y_test)


def tiny_bert() -> BertForSequenceClassification:
    # no dropout (a short budget has little to regularise, and dropout triples a CPU step); initialised 10x wider
    # than BERT's 0.02, which lets a model this small learn within a few epochs
    return BertForSequenceClassification(BertConfig(
        vocab_size=17, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=0.2))


def error_percent(pred) -> dict[str, float]:  # noqa: ANN001
    return {"error": float((pred.predictions.argmax(-1) != pred.label_ids).mean() * 100)}


class Report(TrainerCallback):
    """Each evaluation of the validation set becomes a point of the trial's curves (one per step)."""

    def __init__(self, trial) -> None:  # noqa: ANN001
        self.trial, self.last_step = trial, None

    def on_evaluate(self, args, state, control, metrics=None, optimizer=None, **kwargs):  # noqa: ANN001
        if metrics and "eval_error" in metrics and state.global_step != self.last_step:
            self.last_step = state.global_step
            self.trial.report(step=state.global_step, val_metric=metrics["eval_error"],
                              val_loss=metrics["eval_loss"], lr=optimizer.param_groups[0]["lr"])


@trainable(max_epochs=8, steps_per_epoch=STEPS_PER_EPOCH, metric_name="error %")
def train(trial):
    train_set, val_set, test_set = digits_splits()
    model = tiny_bert()                                       # torch is seeded with trial.seed
    optimizer = trial.optimizer(model.parameters())           # SGD(momentum=0.9) or Adam at the trial's LR
    scheduler = trial.scheduler(optimizer)                    # the trial's schedule over its own budget
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=trial.total_steps, per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=512, eval_strategy="steps", eval_steps=trial.steps_per_epoch,
            metric_for_best_model="loss",                     # what a plateau trial's scheduler is stepped with
            save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            seed=trial.seed, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          compute_metrics=error_percent, optimizers=(optimizer, scheduler),
                          callbacks=[Report(trial)])
        trainer.remove_callback(PrinterCallback)              # quiet: the curves are in the store
        trainer.train()
        val = trainer.evaluate(val_set)
        test = trainer.evaluate(test_set, metric_key_prefix="test")
    return {"val_metric": val["eval_error"], "test_metric": test["test_error"], "val_loss": val["eval_loss"],
            "test_loss": test["test_loss"], "steps": trainer.state.global_step}


def main() -> int:
    from budgetsched.cli import main as cli

    torch.set_num_threads(1)  # a model this small trains fastest on one thread (and leaves the other core free)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    store = str(out / "digits-bert.db")
    grid = ["--task", f"{__file__}:train", "--schedules", "rex,linear,plateau", "--plateau-patience", "1",
            "--optimizers", "adam", "--budgets", "25,50,100", "--lrs", "0.001,0.003,0.01", "--seeds", "1"]
    return cli(["run", *grid, "--store", store, "--quiet"]) or cli(["report", store, "--format", "md"])


if __name__ == "__main__":
    sys.exit(main())

"""A plain PyTorch loop with BudgetScheduler: REX over the run's budget, a budget change mid-run, a checkpoint, a
re-warm to train on after the budget has run out, and budgets in wall-clock seconds and in samples.

    python examples/torch_loop.py

Call ``optimizer.step()`` then ``scheduler.step()`` once per batch; ``total_steps`` is the number of optimizer steps
of the budget (epochs x batches per epoch). For ``plateau`` call ``scheduler.step(val_loss)`` once per evaluation
instead (see the end of this file).
"""
from __future__ import annotations

import io

import torch
from torch import nn

from budgetsched.torch import BudgetScheduler


def data(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x.sum(dim=1, keepdim=True) > 0).float()


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = data()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    # Two parameter groups: each keeps its own peak LR; the floor may be given per group.
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.3},
                                 {"params": model[2].parameters(), "lr": 0.1}], momentum=0.9)
    epochs, batch = 10, 64
    steps_per_epoch = len(x) // batch
    scheduler = BudgetScheduler(optimizer, "rex", total_steps=epochs * steps_per_epoch, warmup_steps=5,
                                min_lr=[1e-3, 0.0])
    loss_fn = nn.BCEWithLogitsLoss()

    def train_one_epoch(epoch: int) -> None:
        perm = torch.randperm(len(x))
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(f"epoch {epoch:2d}  loss {loss.item():.4f}  lr {scheduler.get_last_lr()[0]:.5f}")

    for epoch in range(epochs + 5):  # the run is extended by 5 epochs below, at the end of epoch 5
        train_one_epoch(epoch)
        if epoch == 5:
            # More budget became available: by default the LR re-warms to each group's peak over the warmup's 5 steps
            # and decays to the floor at the new end (strategy="continue" would keep it continuous instead).
            scheduler.set_total_steps((epochs + 5) * steps_per_epoch)
            # Checkpoint (plain Python state: loads with weights_only=True) and resume into a fresh scheduler.
            buf = io.BytesIO()
            torch.save({"opt": optimizer.state_dict(), "sched": scheduler.state_dict()}, buf)
            buf.seek(0)
            state = torch.load(buf, weights_only=True)
            scheduler = BudgetScheduler(optimizer, "rex", total_steps=(epochs + 5) * steps_per_epoch,
                                        warmup_steps=5, min_lr=[1e-3, 0.0])
            optimizer.load_state_dict(state["opt"])
            scheduler.load_state_dict(state["sched"])
            print(f"  budget changes so far: {scheduler.budget_changes}")

    # The budget is spent: the LR sits at the floor. set_total_steps re-warms by default (strategy="continue" would
    # keep it there, with a warning); here a longer re-warm: back up to each group's peak over 10 steps, then REX
    # down to the floor over 3 more epochs.
    scheduler.set_total_steps(scheduler.last_epoch + 3 * steps_per_epoch, strategy="rewarm", rewarm_steps=10)
    for epoch in range(epochs + 5, epochs + 8):
        train_one_epoch(epoch)
    print(f"  budget changes: {scheduler.budget_changes}")

    # A wall-clock budget: the schedule follows the clock and reaches its floor at the deadline (the clock starts at
    # the first step; pause() / resume() around anything that is not training).
    opt3 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    timed = BudgetScheduler(opt3, "rex", time_budget="1s", warmup_fraction=0.05)
    steps = 0
    while not timed.done:
        idx = torch.randint(len(x), (batch,))
        opt3.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt3.step()
        timed.step()
        steps += 1
    print(f"time budget 1 s: {steps} steps, then LR {timed.get_last_lr()[0]:.2e} (the floor), "
          f"used {timed.fraction_used:.0%}")

    # A budget in samples (tokens for a language model): step(tokens=n) counts what each optimizer step consumed.
    opt4 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counted = BudgetScheduler(opt4, "rex", token_budget=5 * len(x), warmup_fraction=0.05)
    while not counted.done:
        n = int(torch.randint(32, 96, ()))  # uneven batches
        idx = torch.randint(len(x), (n,))
        opt4.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt4.step()
        counted.step(tokens=n)
    print(f"sample budget {5 * len(x)}: used {counted.used:.0f}, then LR {counted.get_last_lr()[0]:.2e} (the floor)")

    # plateau: one step(metric) per evaluation.
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = BudgetScheduler(opt2, "plateau", total_steps=20, patience=2, factor=0.5)
    for val_loss in (0.9, 0.8, 0.8, 0.8, 0.8, 0.7):
        opt2.step()  # ... the epoch's training steps ...
        plateau.step(val_loss)  # ... then its evaluation
    print("plateau lr after 6 evaluations:", plateau.get_last_lr())


if __name__ == "__main__":
    main()

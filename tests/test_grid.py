"""Study grid: trial keys, grid expansion, epochs per budget, LR grids."""
import pytest

from budgetsched.bench.protocol.grid import TrialConfig, expand, group_key, iter_groups, lr_grid, parse_list


def test_key_is_canonical_and_sensitive():
    a = TrialConfig("digits-mlp", "rex", "sgdm", 10, 0.1, 0)
    b = TrialConfig("digits-mlp", "rex", "sgdm", 10.0, 0.1, 0)
    assert a.key == b.key and len(a.key) == 32
    assert TrialConfig.from_dict(a.to_dict()) == a
    others = [TrialConfig("digits-mlp", "rex", "adam", 10, 0.1, 0), TrialConfig("digits-mlp", "rex", "sgdm", 5, 0.1, 0),
              TrialConfig("digits-mlp", "rex", "sgdm", 10, 0.3, 0), TrialConfig("digits-mlp", "rex", "sgdm", 10, 0.1, 1),
              TrialConfig("digits-mlp", "linear", "sgdm", 10, 0.1, 0),
              TrialConfig("digits-mlp", "delayed-linear", "sgdm", 10, 0.1, 0, (("delay", 0.5),))]
    assert len({a.key, *(o.key for o in others)}) == 7
    # parameter order does not matter
    p1 = TrialConfig("t", "wsd", "adam", 1, 0.1, 0, (("fraction", 0.2), ("cooldown", "1-sqrt")))
    p2 = TrialConfig("t", "wsd", "adam", 1, 0.1, 0, (("cooldown", "1-sqrt"), ("fraction", 0.2)))
    assert p1.key == p2.key


def test_rewarm_is_keyed_as_the_restart_trials_stored_before_the_rename():
    """Issue 19 renamed the harness's on_change "restart" to the library's "rewarm": a store written by 0.1 keeps
    its keys (and so resumes with zero retraining). The expected key is computed here from the key's formula, with
    the spelling 0.1 stored: sha256 of the sorted, space-free JSON of {"v": 2, **config}, first 32 hex digits."""
    import hashlib
    import json

    change = {"planned_budget": 25, "change_at": 20}
    stored_by_0_1 = {"v": 2, "task": "mnist1d-mlp", "schedule": "linear", "optimizer": "sgdm", "budget": 100.0,
                     "lr": 0.1, "seed": 0, "schedule_params": {**change, "on_change": "restart"},
                     "budget_unit": "steps", "diverge_factor": 10.0}
    expected = hashlib.sha256(json.dumps(stored_by_0_1, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    rewarm = TrialConfig("mnist1d-mlp", "linear", "sgdm", 100.0, 0.1, 0,
                         tuple({**change, "on_change": "rewarm"}.items()))
    assert rewarm.key == expected[:32]
    # "restart" is read as "rewarm" (a stored config, a study file): the same trial
    restart = TrialConfig.from_dict({k: v for k, v in stored_by_0_1.items() if k != "v"})
    assert restart == rewarm and restart.params["on_change"] == "rewarm" and restart.key == rewarm.key
    assert restart.label == "linear(change_at=20,on_change=rewarm,planned_budget=25)"
    # the other strategies keep their own spelling in the key, and extend is a trial of its own
    keys = {how: TrialConfig("mnist1d-mlp", "linear", "sgdm", 100.0, 0.1, 0,
                             tuple({**change, "on_change": how}.items())).key
            for how in ("continue", "rewarm", "extend", "keep")}
    assert len(set(keys.values())) == 4
    stored_continue = {**stored_by_0_1, "schedule_params": {**change, "on_change": "continue"}}
    assert keys["continue"] == hashlib.sha256(json.dumps(stored_continue, sort_keys=True, separators=(",", ":"))
                                              .encode()).hexdigest()[:32]
    with pytest.raises(ValueError, match="unknown on_change 'jump'; choose from continue, rewarm, extend, keep"):
        TrialConfig("t", "linear", "sgdm", 100.0, 0.1, 0, tuple({**change, "on_change": "jump"}.items()))


def test_labels():
    assert TrialConfig("t", "rex", "sgdm", 1, 0.1, 0).label == "rex"
    assert TrialConfig("t", "delayed-linear", "sgdm", 1, 0.1, 0, (("delay", 0.5),)).label == "delayed-linear(delay=0.5)"
    assert TrialConfig("t", "plateau", "sgdm", 1, 0.1, 0, (("patience", 5),)).label == "plateau"


@pytest.mark.parametrize("budget,max_epochs,epochs", [(1, 300, 3), (1, 50, 1), (5, 100, 5), (100, 100, 100),
                                                      (25, 30, 8), (0.1, 10, 1)])
def test_epochs_round_up(budget, max_epochs, epochs):
    assert TrialConfig("t", "rex", "sgdm", budget, 0.1, 0).epochs(max_epochs) == epochs


def test_expand_and_groups():
    cfgs = expand(["digits-mlp"], ["rex", "plateau", ("delayed-linear", {"delay": 0.5})], ["sgdm", "adam"],
                  [1, 100], [0.01, 0.1], [0, 1, 2], plateau_patience=(5, 10))
    # rex and delayed-linear: 2 opt x 2 budgets x 2 lrs x 3 seeds each; plateau doubles for two patiences
    assert len(cfgs) == 2 * 2 * 2 * 3 * (1 + 2 + 1)
    assert len({c.key for c in cfgs}) == len(cfgs)
    groups = iter_groups(cfgs)
    assert len(groups) == 4 and all(len(g) == len(cfgs) // 4 for g in groups.values())
    assert all(group_key(c) == k for k, g in groups.items() for c in g)


@pytest.mark.parametrize("kwargs,match", [
    (dict(budget=0), r"budget must be a percent in \(0, 100\], got 0"),
    (dict(budget=150), r"got 150"),
    (dict(lr=-1), "lr must be a positive finite number, got -1"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; choose from sgdm, adam"),
])
def test_bad_trial(kwargs, match):
    base = dict(task="t", schedule="rex", optimizer="sgdm", budget=10, lr=0.1, seed=0)
    with pytest.raises(ValueError, match=match):
        TrialConfig(**{**base, **kwargs})


def test_empty_grid_and_lists():
    with pytest.raises(ValueError, match="empty grid: no lrs given"):
        expand(["t"], ["rex"], ["sgdm"], [1], [], [0])
    assert parse_list("0.1, 0.3", float) == [0.1, 0.3]
    with pytest.raises(ValueError, match="cannot read 'x' as float"):
        parse_list("0.1,x", float)


def test_lr_grid_multiples_of_three():
    assert lr_grid(0.001, 0.3) == [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
    assert lr_grid(0.03, 1) == [0.03, 0.1, 0.3, 1.0]
    with pytest.raises(ValueError, match="need 0 < lo <= hi"):
        lr_grid(1, 0.1)

"""Argument checks shared by the schedule core and the adapters: one ``ValueError`` naming the argument, the bad
value and the allowed range; and a did-you-mean for misspelled keywords."""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np

#: The largest step count or step: integers up to 2**53 are exact in float64.
MAX_STEPS = 2**53


def _show(value: Any) -> str:
    """A value for an error message: huge integers by their size, long reprs cut."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) > 10**18:
        return f"an integer with {len(str(abs(int(value))))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(name: str, value: Any, minimum: int, maximum: int = MAX_STEPS) -> int:
    """``value`` as an int in [minimum, maximum] (whole floats accepted), else one ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, (np.floating,)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {_show(value)}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_show(value)}")
    if value > maximum:
        bound = "2**53" if maximum == MAX_STEPS else str(maximum)
        raise ValueError(f"{name} must be <= {bound}, got {_show(value)}")
    return value


def _check_lr(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0 (an LR), else one ValueError naming it."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {_show(value)}") from None
    except OverflowError:
        raise ValueError(f"{name} must be a finite number >= 0, got {_show(value)}") from None
    if not math.isfinite(x) or x < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {_show(value)}")
    return x


def _check_fraction(name: str, value: Any, hi_open: bool = True) -> float:
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ValueError(f"{name} must be a number in [0, 1{')' if hi_open else ']'}, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number in [0, 1{')' if hi_open else ']'}, got {_show(value)}") from None
    if not (0.0 <= x < 1.0 if hi_open else 0.0 <= x <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if hi_open else ']'}, got {_show(value)}")
    return x


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelled ``word`` (difflib ratio >= 0.75), or None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return close[0] if close else None


def check_keywords(who: str, own: Sequence[str], profile: Any, params: dict[str, Any]) -> None:
    """Refuse a keyword that is neither one of ``who``'s arguments (``own``) nor a parameter of ``profile``, with a
    did-you-mean that says whether the suggestion is ``who``'s argument or the profile's parameter
    (``warmup_step`` -> ``warmup_steps``, an argument of ``who``)."""
    from .profiles import canonical_name, profile_parameters

    if callable(profile) and not isinstance(profile, str):
        key, valid = getattr(profile, "__name__", "custom"), []
    else:
        key = canonical_name(profile)
        if key == "plateau":
            return
        valid = profile_parameters(key)
    for p in params:
        if p in valid or (p == "optimizer" and key == "refined"):
            continue
        guess = did_you_mean(p, [*own, *valid])
        hint = ""
        if guess is not None:
            hint = (f" Did you mean {guess!r} (an argument of {who})?" if guess in own
                    else f" Did you mean {guess!r} (a parameter of profile {key!r})?")
        allowed = ", ".join(valid) or "none (it takes no parameters)"
        raise ValueError(f"unknown keyword {p!r} for {who} with profile {key!r}.{hint} The parameters of profile "
                         f"{key!r}: {allowed}; the arguments of {who}: {', '.join(own)}.")

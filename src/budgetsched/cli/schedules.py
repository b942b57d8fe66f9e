"""``budgetsched schedules``: every profile at a few progress points, and Figure 1."""
from __future__ import annotations

import argparse

from budgetsched.cli._common import output_dir
from budgetsched.errors import UsageError

#: Progress points printed by ``budgetsched schedules``.
SHOW_Z = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
#: Largest ``--total-steps`` (schedules count steps exactly up to 2**53).
MAX_TOTAL_STEPS = 2 ** 53


def cmd_schedules(args: argparse.Namespace) -> int:
    from budgetsched import Schedule, available

    n = args.total_steps
    if not 1 <= n <= MAX_TOTAL_STEPS:
        raise UsageError(f"--total-steps must be in [1, 2**53], got {n}")
    print(f"multiplier m at progress z (total_steps={n}, peak_lr=1):")
    print(f"{'schedule':<16}" + "".join(f"{'z=' + format(z, 'g'):>9}" for z in SHOW_Z))
    for name in available():
        try:
            s = Schedule(name, total_steps=n, peak_lr=1.0)
        except ValueError as e:  # needs extra input (plateau: a metric; refined: gradient norms)
            print(f"{name:<16}  (no closed form here: {str(e).split(':')[0]})")
            continue
        print(f"{name:<16}" + "".join(f"{s(min(round(z * n), n)):>9.4f}" for z in SHOW_Z))
    if args.out is not None:
        from budgetsched.bench.rendering import plots

        with output_dir(args.out, "--out") as out:
            written = plots.figure1(out, total_steps=n)
        for path in written:
            print(path)
    return 0

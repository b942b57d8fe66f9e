"""Trial status: one enum shared by the engines, the store, the runners, the report and the plots.

A trial ends in exactly one of three states:

* ``DONE`` - trained to the end of its budget; its final validation and test metrics are its result.
* ``DIVERGED`` - stopped by the divergence rule (:mod:`budgetsched.bench.engines.train`); it has no metrics, ranks last
  in LR selection (+inf) and is never retried.
* ``FAILED`` - raised an error (bad setup, out of memory, a user trainable that raised); it is *missing*, not a
  loss, and a rerun of the study retries it.

``Status`` is a ``str`` enum, so ``Status.DONE == "done"`` and the store keeps the plain strings.
"""
from __future__ import annotations

import enum

__all__ = ["Status", "FINISHED", "STATUSES"]


class Status(str, enum.Enum):
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"

    def __str__(self) -> str:  # f"{Status.DONE}" -> "done", as stored
        return self.value

    @classmethod
    def parse(cls, value: object) -> "Status":
        """The status named by ``value`` (a Status or its string); ValueError listing the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown trial status {value!r}; choose from {', '.join(STATUSES)}") from None


#: Statuses that need no rerun.
FINISHED = frozenset({Status.DONE, Status.DIVERGED})
#: Every status as stored, in display order.
STATUSES = tuple(s.value for s in Status)

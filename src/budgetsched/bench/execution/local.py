"""Chunks on this machine: inline in this process, or over spawned worker processes.

Threads: each of ``workers`` processes gets ``max(1, cores // workers)`` torch threads so that workers x threads
never exceeds the cores (oversubscribing 2 cores was measured 10x slower). Workers ignore Ctrl-C (the parent
decides), and exit by themselves when the parent dies, even by SIGKILL. On an interrupt or an error the parent
stops them at once: they are the children (``multiprocessing.active_children``) that appeared with the pool, so no
private attribute of the pool is read.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue as queue_mod
import signal
import threading
import time
from typing import Any, Callable

from budgetsched.bench.execution.chunks import Chunk
from budgetsched.bench.execution.context import ExecutionContext, process_state
from budgetsched.bench.execution.progress import Progress
from budgetsched.bench.execution.work import iter_chunk, run_chunk
from budgetsched.bench.protocol.grid import TrialConfig

__all__ = ["Inline", "Processes", "Claim", "Write"]

Claim = Callable[[Chunk], Chunk]  # the chunk's trials this run may train now (claimed in the store)
Write = Callable[[TrialConfig, Any, str], None]  # one result to the store, with the kind of engine that made it


class Inline:
    """Chunks one after another in this process (``workers == 1``)."""

    name = "inline"

    def __init__(self, ctx: ExecutionContext, bar: Progress) -> None:
        self.ctx, self.bar = ctx, bar

    def __enter__(self) -> "Inline":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, chunks: list[tuple[str, Chunk]], claim: Claim, write: Write, work: dict[TrialConfig, int]) -> None:
        for kind, chunk in chunks:
            chunk = claim(chunk)
            if not chunk:
                continue
            self.bar.group(chunk[0].config)
            steps = sum(work[p.config] for p in chunk)
            seen = 0

            def on_epoch(n: int) -> None:
                nonlocal seen
                if n:
                    self.bar.work(n)
                    seen += n
            for config, result in iter_chunk(kind, chunk, self.ctx, on_epoch):
                write(config, result, kind)
            self.bar.work(max(0, steps - seen))  # what divergence, setup failures or shared work skipped


class Processes:
    """Chunks over ``workers`` spawned processes, at most ``workers`` in flight (each claimed right before it is
    submitted); results are written here as each chunk completes."""

    name = "processes"

    def __init__(self, ctx: ExecutionContext, bar: Progress, workers: int) -> None:
        self.ctx, self.bar, self.workers = ctx, bar, workers

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, chunks: list[tuple[str, Chunk]], claim: Claim, write: Write, work: dict[TrialConfig, int]) -> None:
        mp = multiprocessing.get_context("spawn")
        messages = mp.Queue()  # model-steps trained, as the workers' epochs end
        before = {p.pid for p in multiprocessing.active_children()}
        pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp, initializer=_init_worker,
                                      initargs=(self.ctx.threads, os.getpid(), messages))
        seen = [0.0]
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    n = messages.get(timeout=0.2)
                except (queue_mod.Empty, OSError, EOFError, ValueError):
                    continue
                if n:
                    self.bar.work(n)
                    seen[0] += n
        reader = threading.Thread(target=drain, daemon=True, name="budgetsched-progress")
        reader.start()
        clean = False
        pending = iter(chunks)
        futures: dict[cf.Future, tuple[str, Chunk]] = {}
        claimed_work = [0.0]

        def submit_next() -> bool:
            for kind, chunk in pending:
                chunk = claim(chunk)
                if chunk:
                    futures[pool.submit(run_chunk, kind, chunk, self.ctx)] = (kind, chunk)
                    claimed_work[0] += sum(work[p.config] for p in chunk)
                    return True
            return False
        try:
            for _ in range(self.workers):
                if not submit_next():
                    break
            while futures:
                done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    kind, chunk = futures.pop(fut)
                    results = fut.result()  # a worker exception (e.g. missing data) propagates here
                    self.bar.group(chunk[0].config)
                    for config, result in results:
                        write(config, result, kind)
                    submit_next()
            clean = True
        finally:
            if clean:
                pool.shutdown(wait=True)
            else:
                _stop_pool(pool, before)
            stop.set()
            reader.join(timeout=2)
            messages.close()
        self.bar.work(max(0.0, claimed_work[0] - seen[0]))


def _stop_pool(pool: cf.ProcessPoolExecutor, before: set[int | None]) -> None:
    """Interrupt or error: stop the running chunks now (their results are lost, everything already written stays)
    and drop the queued ones; return once every worker has exited.

    The workers are this process's children (``multiprocessing.active_children``) that were not there before the
    pool started (this thread started no other process meanwhile). Stopping one breaks the pool, whose own manager
    then stops any other; ``shutdown(wait=True)`` waits for that manager, and so for every worker.
    """
    ours = [p for p in multiprocessing.active_children() if p.pid not in before]
    for proc in ours:
        proc.terminate()
    for proc in ours:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _watch_parent(parent: int) -> None:
    """Exit this worker as soon as its parent is gone (whatever killed it)."""
    try:  # Linux: the kernel delivers SIGKILL to this process when the parent dies
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="budgetsched-parent-watch").start()


def _init_worker(threads: int, parent: int, messages: Any) -> None:
    """Worker process set-up: bounded torch threads, progress to the parent; signals are the parent's business; die
    with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_parent(parent)
    process_state().progress = messages.put
    import torch

    torch.set_num_threads(threads)

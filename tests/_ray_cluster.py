"""A real Ray cluster on the loopback interface, started and ended by the tests themselves.

Each node is its own ``ray start --block`` process (its own session, its own temp dir), on free ports with a
small object store. Token authentication is explicit: every node and driver gets ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN`` (no token file is read or written). Nodes are ended by process id: the ``ray start`` process and
every process it started, found through /proc; never ``ray stop``, which would stop every Ray on the machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = 100 * 1024 * 1024  # the smallest Ray accepts is 75 MiB
#: faster detection of a lost node than Ray's default (5 checks 3 s apart)
SYSTEM_CONFIG = '{"health_check_period_ms": 500, "health_check_failure_threshold": 4, "health_check_timeout_ms": 500}'


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid``: pid -> start time (to tell a reused pid apart)."""
    parent: dict[int, int] = {}
    start: dict[int, str] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            parent[int(d)], start[int(d)] = int(st[1]), st[19]
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, par in parent.items():
            if par == p and child not in out:
                out[child] = start[child]
                todo.append(child)
    return out


def _alive(pid: int, started: str) -> bool:
    st = _stat(pid)
    return st is not None and st[19] == started and st[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Node:
    """One ``ray start --block`` process and what it started."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], root: Path) -> None:
        self.name = name
        self.log = root / f"{name}.log"
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.seen: dict[int, str] = {}

    def wait_started(self, deadline: float) -> None:
        while b"Ray runtime started" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.seen.update(descendants(self.proc.pid))

    def seen_now(self) -> dict[int, str]:
        """Every process of this node so far (its worker processes included)."""
        self.seen.update(descendants(self.proc.pid))
        return self.seen

    def pid_of(self, needle: str) -> int:
        """The pid of this node's process whose command line contains ``needle`` (e.g. ``raylet``)."""
        self.seen.update(descendants(self.proc.pid))
        for pid, started in self.seen.items():
            if _alive(pid, started) and needle in _cmdline(pid).split(" ", 1)[0]:
                return pid
        raise LookupError(f"no {needle} process on node {self.name}")

    def end(self, grace: float = 5.0) -> None:
        """SIGTERM to ``ray start`` (it stops its node), then SIGKILL to anything of it still there."""
        if self.proc.poll() is None:
            self.seen.update(descendants(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + grace
        while any(_alive(p, s) for p, s in self.seen.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid, started in self.seen.items():
            if _alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


class LoopbackCluster:
    """A head node and ``len(workers)`` worker nodes on 127.0.0.1 (``with LoopbackCluster(...) as c:``).

    ``cpus`` / ``gpus``: per node, head first. ``env``: what a driver of this cluster needs (the token).
    """

    def __init__(self, cpus: tuple[int, ...] = (1, 1), gpus: tuple[int, ...] | None = None,
                 timeout: float = 60.0) -> None:
        self.cpus, self.gpus = cpus, gpus or (0,) * len(cpus)
        self.timeout = timeout
        self.root = Path(tempfile.mkdtemp(prefix="bsray-", dir="/tmp"))  # short: Ray's socket paths must fit
        self.token = secrets.token_hex(32)
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.nodes: list[Node] = []
        self.address = ""

    def _argv(self, head: bool, i: int) -> list[str]:
        p = free_ports(8)
        argv = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus[i]}",
                f"--num-gpus={self.gpus[i]}", f"--object-store-memory={OBJECT_STORE}",
                f"--temp-dir={self.root / f'n{i}'}", "--disable-usage-stats",
                f"--node-manager-port={p[1]}", f"--object-manager-port={p[2]}",
                f"--min-worker-port={p[3]}", f"--max-worker-port={p[3] + 0}" if False else "--worker-port-list="
                + ",".join(map(str, free_ports(6))),
                f"--dashboard-agent-listen-port={p[4]}", f"--dashboard-agent-grpc-port={p[5]}",
                f"--runtime-env-agent-port={p[6]}", f"--metrics-export-port={p[7]}"]
        if head:
            gcs = free_ports(2)
            self.address = f"127.0.0.1:{gcs[0]}"
            argv += ["--head", f"--port={gcs[0]}", f"--ray-client-server-port={gcs[1]}", "--include-dashboard=false",
                     f"--system-config={SYSTEM_CONFIG}"]
        else:
            argv += [f"--address={self.address}"]
        return [a for a in argv if not a.startswith("--min-worker-port")]

    def __enter__(self) -> "LoopbackCluster":
        deadline = time.monotonic() + self.timeout
        try:
            for i in range(len(self.cpus)):
                node = Node("head" if i == 0 else f"worker{i}", self._argv(i == 0, i), self.env, self.root)
                self.nodes.append(node)
                node.wait_started(deadline)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.end()
        shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

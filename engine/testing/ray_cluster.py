"""A real two-node Ray cluster on this machine for the `ray` tests: `ray start --head` plus a second node joining
it, one CPU each, all state in a fresh temp folder, and torn down by process id (never `ray stop`, which would
stop every Ray process of the user on the machine)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out[int(entry.name)] = (ppid, cmdline)
    return out


class Cluster:
    def __init__(self, temp_dir: Path, address: str) -> None:
        self.temp_dir = temp_dir
        self.address = address

    def pids(self) -> list[int]:
        """Every process of this cluster: those naming its temp folder or address, and their descendants."""
        procs = _processes()
        # The client server names only the address, with the host's own IP in it rather than 127.0.0.1.
        port = re.compile(rf"--address=\S+:{self.address.rsplit(':', 1)[1]}\b")
        ours = {pid for pid, (_, cmd) in procs.items() if (str(self.temp_dir) in cmd or port.search(cmd)) and pid != os.getpid()}
        grown = True
        while grown:
            more = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours
            grown, ours = bool(more), ours | more
        return sorted(ours)

    def worker_pids(self, title: str = "ray::_ModelWorker") -> list[int]:
        """The model actors' processes (Ray titles them after the actor class)."""
        procs = _processes()
        return [pid for pid in self.pids() if procs.get(pid, (0, ""))[1].startswith(title)]

    def stop(self) -> None:
        for _ in range(3):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)


@contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, gpus: int = 0) -> Iterator[Cluster]:
    temp_dir = Path(tempfile.mkdtemp(prefix="mtray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = [f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--object-store-memory=100000000", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    cluster = Cluster(temp_dir, address)
    try:
        head = [str(RAY), "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                f"--ray-client-server-port={_free_port()}", *common]
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=180)
        for _ in range(nodes - 1):
            subprocess.run([str(RAY), "start", f"--address={address}", *common], check=True, capture_output=True, env=env, timeout=180)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)  # session logs and sockets

"""Hosts on one machine: one network namespace per host, joined by veth pairs to a bridge (root only).

Each host gets its own /dev/shm: a directory under the machine's /dev/shm bind-mounted on /dev/shm
in the mount namespace of every command run there (`ip netns exec` gives each command its own
mount namespace; the bind makes the host's commands share one /dev/shm and see no other host's).
`fail(host)` is a host failure: SIGKILL every process of the namespace, then delete it (its veth
goes with it, so the peers see silence, not a reset) and its /dev/shm. Where the machine has a
cgroup v2 hierarchy, each host is also a cgroup that every command run there joins before it starts
(so do the processes it forks), and the failure is one write to its `cgroup.kill`: the kernel
SIGKILLs the whole host at once, where listing the namespace's processes first (`ip netns pids`,
the fallback) took 5-30 ms on a busy machine, up to seconds, before the first process died.
Everything is removed by `close()`, also after a failure (use it as a context manager).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

_SUBNET = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on a hybrid system)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


class Topology:
    def __init__(self, hosts: list[str], tag: str | None = None):
        self.tag = tag or f"{os.getpid() % 100000}"
        self.bridge = f"ftbr{self.tag}"[:15]
        self.hosts: dict[str, tuple[str, str, Path]] = {}  # name -> (netns, address, shm dir)
        self.cgroups: dict[str, Path] = {}  # name -> its cgroup (where the machine has cgroup v2)
        self._veths: list[str] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for i, h in enumerate(hosts, start=1):
                self._add(h, i)
        except BaseException:
            self.close()
            raise

    def _add(self, host: str, i: int) -> None:
        ns, veth = f"ftmb{self.tag}-{host}", f"ftv{self.tag}{i}"[:13]
        addr = f"{_SUBNET}.{(int(self.tag) % 250) + 1}.{i}" if self.tag.isdigit() else f"{_SUBNET}.1.{i}"
        shm = Path(f"/dev/shm/ftmb-host-{self.tag}-{host}")
        shm.mkdir(parents=True, exist_ok=True)
        self.hosts[host] = (ns, addr, shm)
        root = _cgroup2_root()
        if root is not None:
            cg = root / f"ftmb-host-{self.tag}-{host}"
            try:
                cg.mkdir(exist_ok=True)
                if (cg / "cgroup.kill").exists():
                    self.cgroups[host] = cg
            except OSError:  # (not root of it, or no cgroup.kill before Linux 5.14: the fallback)
                pass
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
        self._veths.append(veth)
        _ip("link", "set", veth + "p", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", veth + "p", "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{addr}/16", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    def addr(self, host: str) -> str:
        return self.hosts[host][1]

    def shm(self, host: str) -> Path:
        return self.hosts[host][2]

    def prefix(self, host: str) -> list[str]:
        """Run a command on `host`: its network namespace, its own /dev/shm (and its cgroup)."""
        ns, _, shm = self.hosts[host]
        enter = ["ip", "netns", "exec", ns, "sh", "-c", 'mount --bind "$0" /dev/shm && exec "$@"', str(shm)]
        cg = self.cgroups.get(host)
        # (the cgroup first: `ip netns exec` mounts a /sys of the namespace, without the cgroup tree)
        return enter if cg is None else ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cg / "cgroup.procs"), *enter]

    def pids(self, host: str) -> list[int]:
        ns = self.hosts[host][0]
        res = _ip("netns", "pids", ns, check=False)
        return [int(p) for p in res.stdout.split()]

    def fail(self, host: str) -> int:
        """The host fails: SIGKILL all its processes, delete its namespace and /dev/shm. How many were killed."""
        ns, _, shm = self.hosts.pop(host)
        cg = self.cgroups.pop(host, None)
        killed: set[int] = set()
        self.first_kill_ns = 0  # (time.time_ns() of the first SIGKILL: what came before is listing the pids)
        if cg is not None:
            try:
                killed.update(int(p) for p in (cg / "cgroup.procs").read_text().split())
                self.first_kill_ns = time.time_ns()
                (cg / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for _ in range(3):  # processes forked while we kill are caught by the next round
            pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
            self.first_kill_ns = self.first_kill_ns or time.time_ns()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.01)
        _ip("netns", "del", ns, check=False)
        shutil.rmtree(shm, ignore_errors=True)
        if cg is not None:
            deadline = time.monotonic() + 5
            while True:  # (empty once its processes are gone: the kernel refuses to remove it before)
                try:
                    cg.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
        return len(killed)

    def close(self) -> None:
        for host in list(self.hosts):
            self.fail(host)
        for veth in self._veths:
            _ip("link", "del", veth, check=False)
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

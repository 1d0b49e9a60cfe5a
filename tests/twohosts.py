"""Two "hosts" on this machine, and network faults between them made with the operating
system's own tools, for the fault tests and benchmarks/net_faults.py.

The hosts are two network namespaces joined by a veth pair (10.231.0.1 and 10.231.0.2); the
only route between them is that pair. Faults are queueing disciplines on both ends of the pair
(iproute2's `tc`), so they hit every packet in both directions, TCP retransmits what is lost,
and no drima process knows:

  loss      a random fraction of packets is dropped: a classic-BPF classifier reads the kernel's
            random number (SKF_AD_RANDOM) and files that fraction under an HTB class whose queue
            holds nothing (pfifo limit 0), so the kernel drops them and counts the drops;
  cut       every packet is dropped (a partition): the links stay up, so each host still reaches
            its own address, and TCP connections are not reset; `heal` removes the cut;
  delay     netem delay and jitter, where the kernel has netem (CONFIG_NET_SCH_NETEM).

Loss does not use netem on purpose: some kernels (this project's CI machine among them) are
built without it, and HTB, pfifo and cls_bpf are in every kernel that has traffic control.

Needs root (namespaces). `two_hosts()` raises HostsUnavailable with the precise reason where a
namespace or a qdisc cannot be made, and always removes what it made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from drima.security import RUN_SECRET_ENV

ADDRESSES = ("10.231.0.1", "10.231.0.2")
_DROP_CLASS = "1:10"  # its queue holds nothing: whatever is filed here is dropped
_PASS_CLASS = "1:20"  # the default class: everything else (netem delay goes under it)
_SKF_AD_RANDOM = 0xFFFFF000 + 56  # SKF_AD_OFF + SKF_AD_RANDOM: a classic-BPF load of a random u32


class HostsUnavailable(RuntimeError):
    """Namespaces or qdiscs cannot be made here; the message says which and why."""


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _check(*cmd: str) -> None:
    res = _run(*cmd)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()}")


def loss_bytecode(fraction: float) -> str:
    """tc's `bpf bytecode` for a classifier that picks `fraction` of the packets at random (it
    returns -1, "the filter's class", for them and 0, "no match", for the others)."""
    if fraction >= 1.0:
        return "1,6 0 0 4294967295"  # ret -1: every packet
    keep_below = int((1.0 - fraction) * 2**32)  # a random u32 above this is dropped
    return f"4,32 0 0 {_SKF_AD_RANDOM},37 0 1 {keep_below},6 0 0 4294967295,6 0 0 0"


@dataclass
class TwoHosts:
    """Two namespaces ns[0], ns[1] with veth ends dev[0], dev[1] at ADDRESSES."""

    ns: tuple[str, str]
    dev: tuple[str, str]
    netem: bool = False
    """the kernel has netem, so `delay` works"""
    dropped_before: int = 0
    """packets dropped by faults already removed (their qdiscs, and counters, are gone)"""

    def prefix(self, rank: int) -> tuple[str, ...]:
        """A command prefix that runs a program on host `rank`."""
        return ("ip", "netns", "exec", self.ns[rank])

    def _tc(self, rank: int, *args: str) -> None:
        _check("tc", "-n", self.ns[rank], *args)

    def _base(self, rank: int) -> None:
        """HTB root with a drop class (empty queue) and a default pass class; no filter yet."""
        dev = self.dev[rank]
        _run("tc", "-n", self.ns[rank], "qdisc", "del", "dev", dev, "root")
        self._tc(rank, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "20", "r2q", "100000")
        for cls in (_DROP_CLASS, _PASS_CLASS):
            self._tc(rank, "class", "add", "dev", dev, "parent", "1:", "classid", cls, "htb", "rate", "10gbit")
        self._tc(rank, "qdisc", "add", "dev", dev, "parent", _DROP_CLASS, "handle", "10:", "pfifo", "limit", "0")

    def impair(self, loss: float = 0.0, delay_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        """Both directions: drop `loss` of the packets at random; delay the others by delay_ms ±
        jitter_ms (netem). Replaces any fault set before."""
        if (delay_ms or jitter_ms) and not self.netem:
            raise HostsUnavailable("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): no delay or jitter")
        self.dropped_before = self.dropped_packets()
        for rank in (0, 1):
            self._base(rank)
            if delay_ms or jitter_ms:
                self._tc(rank, "qdisc", "add", "dev", self.dev[rank], "parent", _PASS_CLASS, "handle", "20:", "netem",
                         "delay", f"{delay_ms}ms", f"{jitter_ms}ms")
            if loss > 0:
                self._tc(rank, "filter", "add", "dev", self.dev[rank], "parent", "1:", "protocol", "all", "prio", "1",
                         "bpf", "bytecode", loss_bytecode(loss), "classid", _DROP_CLASS)

    def cut(self) -> None:
        """A partition: every packet between the hosts is dropped, both ways, until `heal`."""
        self.impair(loss=1.0)

    def heal(self) -> None:
        """No fault any more (removes the cut, loss and delay)."""
        self.dropped_before = self.dropped_packets()
        for rank in (0, 1):
            _run("tc", "-n", self.ns[rank], "qdisc", "del", "dev", self.dev[rank], "root")

    def dropped_packets(self) -> int:
        """Packets the faults dropped so far, both ends (the drop classes' counters)."""
        total = self.dropped_before
        for rank in (0, 1):
            out = _run("tc", "-n", self.ns[rank], "-s", "class", "show", "dev", self.dev[rank]).stdout
            block = out.split(f"class htb {_DROP_CLASS} ", 1)
            if len(block) == 2 and "dropped " in block[1]:
                total += int(block[1].split("dropped ", 1)[1].split(",", 1)[0])
        return total


def _kernel_has(ns: str, dev: str, *qdisc: str) -> bool:
    ok = _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *qdisc).returncode == 0
    _run("tc", "-n", ns, "qdisc", "del", "dev", dev, "root")
    return ok


@contextmanager
def two_hosts() -> Iterator[TwoHosts]:
    """Make the two hosts, yield them, and always remove them (and with them every qdisc)."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise HostsUnavailable(f"no `{tool}` command (iproute2): cannot make network namespaces here")
    tag = uuid.uuid4().hex[:6]
    ns, dev = (f"drima-a-{tag}", f"drima-b-{tag}"), (f"va{tag}", f"vb{tag}")
    made = _run("ip", "netns", "add", ns[0])
    if made.returncode != 0:
        raise HostsUnavailable(f"cannot create network namespaces here (needs root): {made.stderr.strip()}")
    try:
        _check("ip", "netns", "add", ns[1])
        _check("ip", "link", "add", dev[0], "type", "veth", "peer", "name", dev[1])
        for rank in (0, 1):
            _check("ip", "link", "set", dev[rank], "netns", ns[rank])
            _check("ip", "-n", ns[rank], "addr", "add", f"{ADDRESSES[rank]}/24", "dev", dev[rank])
            _check("ip", "-n", ns[rank], "link", "set", dev[rank], "up")
            _check("ip", "-n", ns[rank], "link", "set", "lo", "up")
        hosts = TwoHosts(ns, dev, netem=_kernel_has(ns[0], dev[0], "netem", "delay", "1ms"))
        for needed in (("htb",), ("pfifo", "limit", "0")):
            if not _kernel_has(ns[0], dev[0], *needed):
                raise HostsUnavailable(f"this kernel has no {needed[0]} qdisc: cannot make faults with tc")
        yield hosts
    finally:
        for name in ns:
            _run("ip", "netns", "del", name)  # also removes the veth pair and its qdiscs


RUN_SECRET = "the secret of this two-host run"  # CurveZMQ: every node is given it (DRIMA_RUN_SECRET)


def launch_node(hosts: TwoHosts, rank: int, run_dir, args: list[str], log_path) -> subprocess.Popen:
    """`drima-launch ARGS` as node `rank` of a 2-node run on host `rank` (tcp with CurveZMQ,
    rendezvous on host 0), its output in log_path. Start node 1 first: it waits at the rendezvous."""
    cmd = [*hosts.prefix(rank), sys.executable, "-m", "drima.launch", *args, "--nodes", "2", "--node-rank", str(rank),
           "--transport", "tcp", "--host", ADDRESSES[rank], "--rendezvous", f"{ADDRESSES[0]}:29500",
           "--run-dir", str(run_dir)]
    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=os.environ | {RUN_SECRET_ENV: RUN_SECRET})

"""The verification oracle of a failover run: did the released output survive the master's death?

Each check is a list of `Violation`s (empty = holds):

1. `oracle.replay` — the released stream is what one uninterrupted execution that follows the
   combined logs produces. `run` does this after a failover (`RunResult.replay_check`, added here
   with `add_replay_check`): a fresh process re-executes the program from its initial state in
   replay mode on the complete log, on the same session (the input logger kept every entry it
   served: a fresh input logger would number its ticks differently), and the output logger
   compares each regenerated packet, per thread and output sequence, with the released one (a
   64-bit digest of its bytes). Also, with one worker, the released stream must equal an
   uninterrupted run's byte for byte, per queue (the output is then a function of the input; not
   for the examples in TIMING_DEPENDENT).
2. `oracle.exactly-once` — every tagged packet the uninterrupted run forwards is released exactly
   once: none lost, none duplicated, none extra. (This assumes the forwarding decision of each
   packet does not depend on the interleaving of cores: true for the examples with their default
   options; not for the firewall at its connection limit with several workers.)
   `oracle.at-most-once` instead, for a program whose forwarding decisions depend on timing (DPDK's
   packet_ordering: its reorder buffer and TX drop a load-dependent share, so no uninterrupted run
   is a reference; `verify(..., delivery="at-most-once")`): no tagged packet released twice, none
   that was not in the input. Oracle 1 covers the rest (every released packet regenerated).
3. the example's own invariants (`invariants.check_*`) on the released output, split per queue.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import invariants as inv
from . import pcap
from . import run as runlib
from .errors import InputError

# Each checker gets the per-queue inputs and outputs, the example's arguments and the run's arrival
# times (`run.Arrivals`, by tag: `arrivals_by_tag`; None if the run kept none).
CHECKERS: dict[str, Callable] = {
    "nat": lambda i, o, args, arr: inv.check_nat(i, o, burst=None, arrivals=arr.times if arr else None,
                                                 clock_start_ns=arr.start_ns if arr else None,
                                                 timeout_ms=_opt(args, "--timeout-ms", 10000),
                                                 closing_timeout_ms=_opt(args, "--closing-timeout-ms", 2000)),
    "firewall": lambda i, o, args, arr: inv.check_firewall(i, o, max_conns=_opt(args, "--max-conns", 5), burst=None),
    "lb": lambda i, o, args, arr: inv.check_lb(i, o),
    "ids": lambda i, o, args, arr: inv.check_ids(i, o),
    "flowmon": lambda i, o, args, arr: inv.check_flowmon(i, o),
}


# Examples whose released stream is not a function of the input even on one queue (flowmon: its
# exporter thread's records depend on timing, and its workers interleave): no byte comparison with
# the reference; their checker covers what does not depend on timing.
TIMING_DEPENDENT = {"flowmon"}


def _opt(args: Sequence[str], name: str, default: int) -> int:
    args = list(args)
    return int(args[args.index(name) + 1]) if name in args else default


@dataclass
class Verdict:
    replay: list[inv.Violation] = field(default_factory=list)
    delivery: list[inv.Violation] = field(default_factory=list)  # oracle 2, either form
    invariants: list[inv.Violation] = field(default_factory=list)
    replay_failure: str | None = None
    released: int = 0

    def add_replay_check(self, check: "runlib.ReplayCheck | None") -> None:
        """Oracle 1 as `run` does it after a failover (a re-execution following the complete log on
        the same session; the output logger compares each regenerated packet with the released one)."""
        if check is None:
            return
        if check.failure:
            self.replay.append(inv.Violation("oracle.replay", check.failure))
        elif check.mismatches:
            self.replay.append(inv.Violation("oracle.replay", f"{check.mismatches} released packets differ from "
                                             "the execution that follows the logs"))
        elif check.compared != check.released:
            self.replay.append(inv.Violation("oracle.replay", f"the execution that follows the logs sent "
                                             f"{check.compared} of the {check.released} released packets"))

    @property
    def violations(self) -> list[inv.Violation]:
        return self.replay + self.delivery + self.invariants

    @property
    def ok(self) -> bool:
        return not self.violations and self.replay_failure is None


def _tag(frame: bytes) -> int | None:
    report = inv.parse_ids_report(frame)
    try:
        return pcap.packet_tag(report.snap if report else frame)
    except Exception:  # noqa: BLE001 (a frame the parser cannot read has no tag)
        return None


def split_input(trace: Path, queues: int, workdir: Path) -> tuple[list[Path], dict[int, int]]:
    """The input as the input logger splits it: per-queue pcaps, and each tag's queue."""
    buckets: list[list[pcap.Packet]] = [[] for _ in range(queues)]
    queue_of: dict[int, int] = {}
    for p in pcap.read_pcap(trace):
        q = runlib.logger_queue(p.data, queues)
        buckets[q].append(p)
        t = pcap.packet_tag(p.data)
        if t is not None:
            queue_of[t] = q
    paths = [workdir / f"in{q}.pcap" for q in range(queues)]
    for path, b in zip(paths, buckets):
        pcap.write_pcap(path, b)
    return paths, queue_of


def per_queue(frames: Sequence[pcap.Packet], queue_of: dict[int, int], queues: int) -> list[list[pcap.Packet]]:
    out: list[list[pcap.Packet]] = [[] for _ in range(queues)]
    for p in frames:
        out[queue_of.get(_tag(p.data), 0)].append(p)
    return out


def compare(released: Path, reference: Path, queue_of: dict[int, int], queues: int) -> list[inv.Violation]:
    """Oracle 1: per queue, the released frames equal the reference frames, byte for byte."""
    got = per_queue(pcap.read_pcap(released), queue_of, queues)
    want = per_queue(pcap.read_pcap(reference), queue_of, queues)
    out = []
    for q in range(queues):
        g, w = [p.data for p in got[q]], [p.data for p in want[q]]
        if g != w:
            k = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            out.append(inv.Violation("oracle.replay", f"released {len(g)} packets, the execution that follows the "
                                     f"logs sends {len(w)}; first difference at packet {k}", queue=q, index=k))
    return out


def exactly_once(released: Path, reference: Path) -> list[inv.Violation]:
    """Oracle 2: each forwarded tagged packet released once; nothing missing, nothing extra."""
    def tags(path):
        return Counter(t for p in pcap.read_pcap(path) if not inv.parse_ids_report(p.data)
                       for t in [pcap.packet_tag(p.data)] if t is not None)
    got, want = tags(released), tags(reference)
    out = []
    dup = [t for t, n in got.items() if n > want.get(t, 0)]
    lost = [t for t, n in want.items() if got.get(t, 0) < n]
    if dup:
        out.append(inv.Violation("oracle.exactly-once", f"{len(dup)} packets released more often than forwarded "
                                 f"(or never forwarded), e.g. tag {dup[0]:#x}"))
    if lost:
        out.append(inv.Violation("oracle.exactly-once", f"{len(lost)} forwarded packets never released, "
                                 f"e.g. tag {lost[0]:#x}"))
    return out


def at_most_once(released: Path, trace: Path) -> list[inv.Violation]:
    """Oracle 2 for timing-dependent programs: each released tagged packet's tag once at most, and
    one of the input's."""
    got = Counter(t for p in pcap.read_pcap(released) for t in [pcap.packet_tag(p.data)] if t is not None)
    sent = {t for p in pcap.read_pcap(trace) for t in [pcap.packet_tag(p.data)] if t is not None}
    dup = sorted(t for t, n in got.items() if n > 1)
    extra = sorted(t for t in got if t not in sent)
    out = []
    if dup:
        out.append(inv.Violation("oracle.at-most-once", f"{len(dup)} packets released more than once, "
                                                        f"e.g. tag {dup[0]:#x}"))
    if extra:
        out.append(inv.Violation("oracle.at-most-once", f"{len(extra)} released packets not in the input, "
                                                        f"e.g. tag {extra[0]:#x}"))
    return out


DELIVERY = {"exactly-once", "at-most-once"}


def run_conditions(released: str | Path) -> dict:
    """How the run that released `released` was served, from its manifest (OUT.ftmb.json): the
    input logger's `rate` and `tick_us`, as keyword arguments for `verify` and `run.run` (both None
    when there is no manifest: served unpaced, at the default tick)."""
    manifest = runlib.read_manifest(released)
    if manifest is None:
        return {"rate": None, "tick_us": None}
    return {"rate": manifest["rate"], "tick_us": manifest["tick_us"]}


def arrivals_by_tag(trace: Path, released: Path, session: str | None = None) -> runlib.Arrivals | None:
    """The arrival times of the run that released `released` (the input logger's clock when it first
    served each input packet, and when the session's clock started: `run.read_arrivals`), by the
    packet's tag; None without them. The run's session is its manifest's, unless given."""
    if session is None:
        manifest = runlib.read_manifest(released)
        session = manifest.get("session", "") if manifest else None
    arrivals = runlib.read_arrivals(released, session) if session is not None else None
    if arrivals is None:
        return None
    out = {}
    for i, p in enumerate(pcap.iter_pcap(trace)):
        t = pcap.packet_tag(p.data)
        if t is not None and i in arrivals.times:
            out[t] = arrivals.times[i]
    return runlib.Arrivals(out, arrivals.start_ns)


def verify(nf_argv: Sequence[str], trace: str | Path, released: str | Path, *,
           queues: int, threads: int | None = None, example: str | None = None,
           example_args: Sequence[str] = (),
           timeout_s: float = 120.0, workdir: str | Path | None = None,
           reference: str | Path | None = None, rate: int | None = None,
           tick_us: int | None = None, delivery: str = "exactly-once") -> Verdict:
    """Run the three checks on a failover run's released output (see the module doc). The reference
    run is served as the failover run was (`rate`, `tick_us`: a program whose output depends on
    time, such as l2fwd's timer-driven TX flush, releases other bursts at another pace).
    `delivery`: oracle 2's form, "exactly-once" against the reference or "at-most-once" against the
    input (no reference run then)."""
    if not 1 <= queues <= 32:
        raise InputError(f"--queues {queues}: expected 1 to 32")
    if delivery not in DELIVERY:
        raise InputError(f"delivery {delivery!r}: expected one of {', '.join(sorted(DELIVERY))}")
    trace, released = Path(trace), Path(released)
    v = Verdict(released=sum(1 for _ in pcap.iter_pcap(released)))
    with tempfile.TemporaryDirectory(prefix="ftmb-verify-", dir=workdir) as d:
        d = Path(d)
        ins, queue_of = split_input(trace, queues, d)
        if delivery == "at-most-once":
            reference, res = None, None
            v.delivery = at_most_once(released, trace)
        elif reference is None:  # the uninterrupted run (callers checking many crashes of one input pass it)
            reference = d / "reference.pcap"
            res = runlib.run(nf_argv, trace, reference, mode="record", queues=queues, threads=threads,
                             timeout_s=timeout_s, rate=rate, tick_us=tick_us)
        else:
            reference, res = Path(reference), None
        if res is not None and not res.ok:
            v.replay_failure = f"the uninterrupted reference run failed: {res.failure}"
            v.replay.append(inv.Violation("oracle.replay", v.replay_failure))
        elif reference is not None:
            if queues == 1 and example not in TIMING_DEPENDENT:
                v.replay = compare(released, reference, queue_of, queues)
            v.delivery = exactly_once(released, reference)
        if example in CHECKERS:
            outs = per_queue(pcap.read_pcap(released), queue_of, queues)
            paths = []
            for q, frames in enumerate(outs):
                paths.append(d / f"released{q}.pcap")
                pcap.write_pcap(paths[-1], frames)
            v.invariants = CHECKERS[example](ins, paths, list(example_args), arrivals_by_tag(trace, released))
    return v


__all__ = ["CHECKERS", "DELIVERY", "Verdict", "run_conditions", "verify", "compare", "exactly_once", "at_most_once",
           "split_input"]

"""A hand-built report that uses every class, protection, scope and access mode; the report
adapter, schema and diff tests build on it (import it as `from test_report_sample import ...`)."""

from __future__ import annotations

from ftmb_instrument.model import (
    CLASSES,
    MODES,
    PROTECTIONS,
    SCOPES,
    Access,
    Coverage,
    Diagnostic,
    Finding,
    Report,
    Site,
    Thread,
    TranslationUnit,
    Variable,
)


def access(loc: str, function: str, mode: str, *, locks: tuple[str, ...] = (), atomic: bool = False,
           threads: tuple[str, ...] = ("worker",), concurrent: bool = True, **kw: object) -> Access:
    return Access(loc, function, mode, atomic, locks, threads, concurrent, **kw)


def variable(id: str, name: str, cls: str, protection: str | None, *accesses: Access, scope: str = "global",
             locks: tuple[str, ...] = (), commutative: bool = False, decl: str = "", **kw: object) -> Variable:
    return Variable(id, name, decl or f"nat.c:{10 + len(name)}", scope, cls, protection, locks, commutative,
                    tuple(accesses), **kw)


COUNTER = variable(
    "id-counter", "counter", "shared_rw", "unprotected",
    access("nat.c:40:5", "worker", "rmw"),
    access("nat.c:80:3", "main", "write", threads=("main",), concurrent=False),
    commutative=True, type="unsigned long",
)
FLOWS = variable(
    "id-flows", "flows", "shared_rw", "lock",
    access("nat.c:50:9", "lookup", "read", locks=("flow_lock",)),
    access("nat.c:55:9", "insert", "write", locks=("flow_lock",)),
    scope="static", locks=("flow_lock",), type="struct flow[1024]",
)
STATS = variable(
    "id-stats", "nat_init:malloc:stats", "shared_rw", "mixed",
    access("nat.c:60:5", "worker", "write", locks=("lock_a",)),
    access("nat.c:90:5", "on_signal", "write", locks=("lock_b",), threads=("on_signal",)),
    scope="heap", decl="nat.c:70",
)
HITS = variable(
    "id-hits", "hits", "shared_rw", "atomic",
    access("nat.c:42:5", "worker", "rmw", atomic=True),
    scope="static_local", commutative=True,
)
QUIET = variable(
    "id-quiet", "quiet_drops", "shared_rw", "unprotected",
    access("nat.c:44:5", "worker", "rmw"),
    suppressed="statistics only, off by one is fine",
)
CONFIG = variable(
    "id-config", "config", "shared_ro", None,
    access("nat.c:81:3", "main", "write", threads=("main",), concurrent=False),
    access("nat.c:45:12", "worker", "read"),
)
PER_CORE = variable(
    "id-per-core", "core_stats", "per_core", None,
    access("nat.c:46:5", "worker", "rmw", core_indexed=True),
)
SCRATCH = variable(
    "id-scratch", "scratch", "thread_private", None,
    access("nat.c:85:7", "main", "write", threads=("main",)),
    scope="stack",
)


def sample_report() -> Report:
    return Report(
        tool_version="0.1.0",
        translation_units=(
            TranslationUnit("nat.c", "ok", (Diagnostic("nat.c:3:1", "warning", "unused variable 'x'"),), 6),
            TranslationUnit("broken.c", "failed", (Diagnostic("broken.c:7:9", "error", "expected ';'"),), 0),
        ),
        threads=(
            Thread("main", "main", "", "one"),
            Thread("worker", "pthread_create", "nat.c:83", "several"),
            Thread("on_signal", "signal", "nat.c:84", "one"),
        ),
        variables=(SCRATCH, CONFIG, COUNTER, PER_CORE, FLOWS, STATS, HITS, QUIET),
        nondeterminism=(Site("nat.c:47:14", "worker", "time", "time", ("worker",)),),
        packet_io=(
            Site("nat.c:38:13", "worker", "rte_eth_rx_burst", "rx", ("worker",)),
            Site("nat.c:49:7", "worker", "rte_eth_tx_burst", "tx", ("worker",)),
        ),
        warnings=(
            Finding("race", "nat.c:40:5", "counter: unprotected rmw in worker races with itself", "id-counter"),
            Finding("invisible_state", "nat.c:30:1", "state kept in a file descriptor"),
            Finding("unresolved_call", "nat.c:48:5", "indirect call through ops->handle"),
            Finding("novel_kind", "", "a kind this version has no rule text for"),
        ),
        coverage=Coverage(1, 1, 6),
    )


def test_sample_uses_every_class_protection_scope_and_mode() -> None:
    report = sample_report()
    assert {v.cls for v in report.variables} == set(CLASSES)
    assert {v.protection for v in report.variables} == set(PROTECTIONS) | {None}
    assert {v.scope for v in report.variables} == set(SCOPES)
    assert {a.mode for v in report.variables for a in v.accesses} == set(MODES)


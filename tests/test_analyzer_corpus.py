"""Precision and recall of the analyzer's classes over the corpus and its inline expectations.

Every corpus program is analyzed on its own (each has a main). An expectation matches the report
variable declared on its line with the same name and kind (file-scope/static vs heap vs stack); a
named one (`EXPECT(app.pool)`) the variable of that name and kind. Where the analysis reports a
variable's struct members as objects of their own, an expectation about the whole variable is
checked against their summary: the strongest class of its members (shared_rw, per_core,
shared_ro, thread_private), leaving out lock members when there are others (their class is that
of a lock object); the protection of its shared_rw members when they agree ("mixed" when not), the
locks they all hold, commutative when they all are.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest
from analyzer_util import dpdk_cflags
from corpus_expect import CLASSES, corpus_expectations, corpus_programs

from ftmb_instrument.analysis import Options, analyze
from ftmb_instrument.frontend import from_files
from ftmb_instrument.frontend.clang_tu import LOCK_TYPE
from ftmb_instrument.model import Variable
from ftmb_instrument.semantics import load_semantics

SCOPES_OF_KIND = {"var": ("global", "static", "static_local"), "heap": ("heap",), "stack": ("stack",)}
SUMMARY_ORDER = ("shared_rw", "per_core", "shared_ro", "thread_private")


def _summary(parts: list[Variable]) -> Variable:
    """One variable standing for the members of a struct reported one by one."""
    data = [v for v in parts if not LOCK_TYPE.search(v.type)] or parts
    cls = next(c for c in SUMMARY_ORDER if any(v.cls == c for v in data))
    shared = [v for v in data if v.cls == "shared_rw"]
    protections = {v.protection for v in shared}
    protection = protections.pop() if len(protections) == 1 else ("mixed" if shared else None)
    locks = set.intersection(*(set(v.locks) for v in shared)) if protection == "lock" else set()
    commutative = bool(shared) and all(v.commutative for v in shared)
    return dataclasses.replace(data[0], cls=cls, protection=protection, locks=tuple(sorted(locks)),
                               commutative=commutative)


@pytest.fixture(scope="module")
def reports():
    sem = load_semantics()
    out = {}
    for prog in corpus_programs():
        args = ["-std=gnu11", *(dpdk_cflags() if prog.style == "dpdk" else ())]
        out[prog.path.name] = analyze(from_files([prog.path], args), sem, Options(str(prog.path.parent), jobs=1))
    return out


@pytest.fixture(scope="module")
def outcomes(reports):
    """(expectation, matched variable or None) for every expectation in the corpus."""
    pairs = []
    for exp in corpus_expectations():
        report = reports[exp.file.rsplit("/", 1)[-1]] if "/" in str(exp.file) else reports[str(exp.file)]
        kind = [v for v in report.variables if v.scope in SCOPES_OF_KIND[exp.kind]]
        if exp.named:
            candidates = [v for v in kind if v.name == exp.name]
            pairs.append((exp, candidates[0] if candidates else None))
            continue
        here = [v for v in kind if int(v.decl.rsplit(":", 1)[1]) == exp.line]
        whole = [v for v in here if exp.kind == "heap" or v.name == exp.name]
        parts = [v for v in here if v.name != exp.name and (exp.kind == "heap" or re.match(
            re.escape(exp.name) + r"(\[\])?(\.|->)", v.name))]
        if exp.kind == "heap" and len(whole) > 1:
            whole, parts = [], whole
        pairs.append((exp, whole[0] if whole else _summary(parts) if parts else None))
    return pairs


def test_every_corpus_program_parses(reports):
    failed = [(name, u.diagnostics) for name, r in reports.items() for u in r.translation_units if u.status != "ok"]
    assert not failed


def test_corpus_has_enough_ground_truth(outcomes):
    classes = Counter(exp.cls for exp, _ in outcomes)
    assert len(corpus_programs()) >= 12
    assert all(classes[c] >= 5 for c in CLASSES), classes


def test_class_precision_and_recall(outcomes):
    confusion = Counter((exp.cls, v.cls if v else "missing") for exp, v in outcomes)
    lines, metrics = [], {}
    for c in CLASSES:
        tp = confusion[(c, c)]
        fn = sum(n for (e, g), n in confusion.items() if e == c and g != c)
        fp = sum(n for (e, g), n in confusion.items() if g == c and e != c)
        metrics[c] = (tp / (tp + fn) if tp + fn else 1.0, tp / (tp + fp) if tp + fp else 1.0)
        lines.append(f"{c:15} recall {tp}/{tp + fn}  precision {tp}/{tp + fp}")
    total = sum(confusion.values())
    accuracy = sum(n for (e, g), n in confusion.items() if e == g) / total
    misses = [f"{exp.file}:{exp.line} {exp.name or 'heap'}: expected {exp.cls}, got {v.cls if v else 'missing'}"
              for exp, v in outcomes if not v or v.cls != exp.cls]
    summary = "\n".join(lines + [f"accuracy {accuracy:.1%} over {total}"] + misses)
    print(summary)
    assert metrics["shared_rw"][0] == 1.0, summary
    assert metrics["shared_rw"][1] >= 0.90, summary
    assert accuracy >= 0.90, summary


def test_protection_and_locks_of_shared_rw(outcomes):
    shared = [(exp, v) for exp, v in outcomes if exp.cls == "shared_rw" and v is not None and v.cls == "shared_rw"]
    right = [exp for exp, v in shared if v.protection == exp.protection]
    wrong = [f"{exp.file}:{exp.line}: expected {exp.protection}, got {v.protection}"
             for exp, v in shared if v.protection != exp.protection]
    assert len(right) / len(shared) >= 0.90, wrong
    lock_misses = [f"{exp.file}:{exp.line}: expected locks {exp.locks}, got {v.locks}"
                   for exp, v in shared if exp.locks and v.protection == "lock" and not set(exp.locks) <= set(v.locks)]
    assert not lock_misses


def test_commutative_flags(outcomes):
    flagged = [(exp, v) for exp, v in outcomes if v is not None and exp.cls == "shared_rw" == v.cls]
    wrong = [f"{exp.file}:{exp.line}: expected commutative={exp.commutative}" for exp, v in flagged
             if exp.commutative and not v.commutative]
    assert not wrong


def test_commutative_precision(outcomes):
    both = [(exp, v) for exp, v in outcomes if v is not None and exp.cls == "shared_rw" == v.cls]
    spurious = [f"{exp.file}:{exp.line}" for exp, v in both if v.commutative and not exp.commutative]
    assert len(spurious) <= len(both) * 0.1, spurious

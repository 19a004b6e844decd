"""`analyze --keep-going` on a large C codebase: HAProxy's src/ from Debian 12's source package.

The sources come from Debian at run time (nothing third-party is committed): a deb-src entry for
bookworm in a private apt configuration under the work directory (the system's sources and lists
are left alone), then `apt-get source haproxy=VERSION` for the version in bookworm's main pool.
The compile commands are the ones HAProxy's own Makefile runs for the Debian target
(`make -n V=1 TARGET=linux-glibc`: `-Iinclude` and the USE_* defines), written as a
compile_commands.json. The analyzer must finish without a Python exception; the script reports
the translation units that parsed, the ones that did not and why (with gcc's verdict on each).

    .venv/bin/python bench/large_codebase.py [--limit N] [--jobs 2] [--work DIR] [--write-db DIR]

With `--thread-roots` a subset (`--limit N`) always holds the units that start HAProxy's threads
(src/haproxy.c, src/thread.c). `--write-db DIR` only writes the subset's compile_commands.json, for timing
`ftmb-instrument analyze` and `instrument -p ... --plan` on the same database (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "haproxy"
APT_SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
MAKE_ARGS = ["make", "-n", "V=1", "TARGET=linux-glibc"]


class FetchError(RuntimeError):
    """The source package could not be obtained."""


def source_entry() -> str:
    """A deb-src line for bookworm's main pool, on the mirror this machine's apt already uses."""
    for path in APT_SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in text.split("\n\n"):
                fields = dict(line.split(":", 1) for line in stanza.splitlines()
                              if ":" in line and not line.startswith("#"))
                suites = fields.get("Suites", "").split()
                if "deb" in fields.get("Types", "").split() and "bookworm" in suites:
                    return f"deb-src {fields['URIs'].split()[0]} bookworm main\n"
        else:
            for line in text.splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    return f"deb-src {words[1]} bookworm main\n"
    raise FetchError("no 'deb ... bookworm' entry in the apt sources to derive a deb-src entry from")


def _apt_options(work: Path) -> list[str]:
    return ["-o", f"Dir::Etc::SourceList={work / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}", "-q"]


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{what}: {' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FetchError(f"{what}: {' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def fetch_source(work: Path, package: str = PACKAGE) -> Path:
    """Download and unpack `package`'s bookworm source under `work`; return the source tree."""
    existing = sorted(p for p in work.glob(f"{package}-*") if p.is_dir())
    if existing:
        return existing[-1]
    for d in ("lists/partial", "cache/archives/partial"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(source_entry())
    opts = _apt_options(work)
    _run(["apt-get", *opts, "update"], work, "apt-get update with a bookworm deb-src entry")
    showsrc = _run(["apt-cache", *opts, "showsrc", package], work, f"apt-cache showsrc {package}")
    version = None
    for stanza in showsrc.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Package") == package and fields.get("Directory", "").startswith("pool/main/"):
            version = fields["Version"]  # the security pool is not mirrored here; bookworm's main pool is
    if version is None:
        raise FetchError(f"apt-cache showsrc {package}: no version in bookworm's main pool")
    _run(["apt-get", *opts, "source", f"{package}={version}"], work, f"apt-get source {package}={version}")
    existing = sorted(p for p in work.glob(f"{package}-*") if p.is_dir())
    if not existing:
        raise FetchError(f"apt-get source {package}={version} unpacked nothing under {work}")
    return existing[-1]


def compile_commands(src: Path) -> list[dict]:
    """HAProxy's compile commands for src/*.c, as its Makefile would run them."""
    out = _run(MAKE_ARGS, src, "make -n (HAProxy's compile commands)")
    entries = []
    for line in out.replace("\\\n", " ").splitlines():  # join the recipes' continued lines
        if not line.lstrip().startswith(("cc ", "gcc ")):
            continue  # make -n also prints the shell of its other recipes
        argv = shlex.split(line)
        if "-c" not in argv:
            continue
        files = [a for a in argv if a.endswith(".c") and a.startswith("src/")]
        if len(files) == 1:
            entries.append({"directory": str(src), "file": files[0], "arguments": argv})
    if not entries:
        raise FetchError(f"make -n in {src} printed no compile commands")
    return sorted(entries, key=lambda e: e["file"])


THREAD_ROOTS = ("src/haproxy.c", "src/thread.c")  # main and the thread start: without them there are no threads


def subset(entries: list[dict], limit: int | None, keep: tuple[str, ...] = ()) -> list[dict]:
    """`limit` entries: those of the files in `keep`, and the rest spread evenly over the sorted list
    (all when None)."""
    if limit is None or limit >= len(entries):
        return entries
    kept = [e for e in entries if e["file"] in keep][:limit]
    rest = [e for e in entries if e not in kept]
    step = len(rest) / (limit - len(kept)) if limit > len(kept) else 0
    chosen = kept + [rest[int(i * step)] for i in range(limit - len(kept))]
    return sorted(chosen, key=lambda e: e["file"])


@dataclass
class Outcome:
    returncode: int
    crashed: bool  # a Python traceback on stderr
    ok: int = 0
    failed: list[tuple[str, str, str | None]] = field(default_factory=list)  # (file, first error, gcc's error)
    functions: int = 0
    stderr: str = ""
    report: dict | None = None


def gcc_error(entry: dict) -> str | None:
    argv = [a for a in entry["arguments"]]
    i = argv.index("-o") if "-o" in argv else -1
    if i >= 0:
        argv[i + 1] = os.devnull
    argv[0] = "gcc"
    proc = subprocess.run(argv, cwd=entry["directory"], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200] or "failed")


def analyze(src: Path, entries: list[dict], jobs: int, out_dir: Path) -> Outcome:
    db = out_dir / "compile_commands.json"
    db.write_text(json.dumps(entries, indent=1))
    report_path = out_dir / "report.json"
    exe = Path(sys.executable).parent / "ftmb-instrument"
    proc = subprocess.run([str(exe), "analyze", "-p", str(db), "--project-root", str(src), "--keep-going",
                           "--jobs", str(jobs), "-f", "json", "-o", str(report_path)],
                          capture_output=True, text=True, timeout=3600)
    outcome = Outcome(proc.returncode, "Traceback" in proc.stderr, stderr=proc.stderr)
    if not report_path.exists():
        return outcome
    report = json.loads(report_path.read_text())
    outcome.report = report
    outcome.ok = report["coverage"]["translation_units_ok"]
    outcome.functions = report["coverage"]["functions_analyzed"]
    by_file = {e["file"]: e for e in entries}
    for unit in report["translation_units"]:
        if unit["status"] == "ok":
            continue
        first = next((d for d in unit["diagnostics"] if d["severity"] != "warning"), None)
        why = f"{first['loc']}: {first['message']}" if first else "parse failed"
        entry = by_file.get(unit["file"])
        outcome.failed.append((unit["file"], why, gcc_error(entry) if entry else "?"))
    return outcome


def describe(o: Outcome, n: int) -> str:
    lines = [f"{n} translation units: {o.ok} ok, {len(o.failed)} failed, {o.functions} functions analyzed; "
             f"exit {o.returncode}{', PYTHON EXCEPTION' if o.crashed else ', no Python exception'}"]
    for f, why, gcc in o.failed:
        lines.append(f"  failed: {f}: {why} (gcc: {'compiles' if gcc is None else gcc})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="analyze N files spread over src/ (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path, help="download and unpack here, and reuse it (default: a temporary directory)")
    ap.add_argument("--thread-roots", action="store_true",
                    help=f"a subset always holds the units that start the threads ({', '.join(THREAD_ROOTS)})")
    ap.add_argument("--write-db", type=Path, metavar="DIR",
                    help="only write the units' compile_commands.json into DIR (for timing analyze and instrument)")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="ftmb-large-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = fetch_source(work)
        entries = subset(compile_commands(src), a.limit, THREAD_ROOTS if a.thread_roots else ())
        if a.write_db is not None:
            a.write_db.mkdir(parents=True, exist_ok=True)
            (a.write_db / "compile_commands.json").write_text(json.dumps(entries, indent=1))
            print(f"{a.write_db / 'compile_commands.json'}: {len(entries)} units of {src}")
            return 0
        print(f"{src.name}: analyzing {len(entries)} translation units of src/ with --jobs {a.jobs}", flush=True)
        out = work / "out"
        out.mkdir(exist_ok=True)
        outcome = analyze(src, entries, a.jobs, out)
        print(describe(outcome, len(entries)))
        if outcome.crashed:
            print(outcome.stderr[-4000:], file=sys.stderr)
        return 1 if outcome.crashed or outcome.report is None else 0
    except FetchError as exc:
        print(f"large_codebase: cannot obtain the sources: {exc}", file=sys.stderr)
        return 2
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

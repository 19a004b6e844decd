"""The DPDK 22.11 example applications as analyzer input (Debian's dpdk-doc and libdpdk-dev).

Each application listed in examples/meson.build is built the way that file builds it: its sources
from its own meson.build (`files(...)`, the x86 choice where it branches on the architecture), the
include directories `<example>` and `common` plus its `include_directories(...)`, the flags of
`pkg-config --cflags libdpdk`, `-DALLOW_EXPERIMENTAL_API` where it sets `allow_experimental_apis`,
and its unconditional `cflags += '...'`. A directory with C files that examples/meson.build does
not list is an application only if it has its own meson.build; otherwise every .c of it is taken,
less the ones for other architectures.

Every translation unit is first compiled uninstrumented with gcc; the ones that do not compile are
reported with gcc's first error line and left out. The rest go into one compile_commands.json per
application (the analyzer sees one program per application).

Used by tests/test_realcode_dpdk.py and bench/bench_analyze.py; as a script it prints the list:

    .venv/bin/python bench/dpdk_examples.py [--jobs 2] [--out DIR]   # DIR gets the databases
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

EXAMPLES_DIR = Path("/usr/share/dpdk/examples")
# Sources for other architectures or stubs the x86 build replaces.
OTHER_ARCH = re.compile(r"(neon|altivec|_arm|_ppc|_nop)\.c$")


@dataclass(frozen=True)
class Example:
    name: str  # as examples/meson.build lists it, e.g. "multi_process/simple_mp"
    directory: Path
    sources: tuple[Path, ...]
    flags: tuple[str, ...]  # everything but the source file and -c/-o


@dataclass
class CompileResult:
    ok: list[tuple[Example, Path]] = field(default_factory=list)
    failed: list[tuple[Example, Path, str]] = field(default_factory=list)  # (example, file, gcc's first error)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (directory, why it is not an application)

    def examples_ok(self) -> list[Example]:
        """Applications all of whose translation units compile."""
        bad = {e.name for e, _, _ in self.failed}
        seen: dict[str, Example] = {}
        for e, _ in self.ok:
            if e.name not in bad:
                seen.setdefault(e.name, e)
        return list(seen.values())


def dpdk_cflags() -> list[str]:
    try:
        out = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"pkg-config --cflags libdpdk failed ({exc}): install libdpdk-dev and pkg-config") from None
    return shlex.split(out)


def _strings(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _calls(text: str, func: str) -> list[str]:
    """Arguments (the text between the parentheses) of every `func(...)` in a meson file."""
    return [m.group(1) for m in re.finditer(rf"\b{func}\(([^)]*)\)", text, re.S)]


def _from_meson(name: str, directory: Path, meson: Path, base_flags: list[str]) -> Example:
    text = "\n".join(line.split("#", 1)[0] for line in meson.read_text().splitlines())
    sources = [directory / s for call in _calls(text, "files") for s in _strings(call)]
    if "RTE_ARCH_X86_64" in text:
        sources = [s for s in sources if not OTHER_ARCH.search(s.name)]
    includes = [directory, EXAMPLES_DIR / "common"]
    includes += [directory / s for call in _calls(text, "include_directories") for s in _strings(call)]
    flags = list(base_flags)
    if re.search(r"^\s*allow_experimental_apis\s*=\s*true", text, re.M):
        flags.append("-DALLOW_EXPERIMENTAL_API")
    for m in re.finditer(r"^cflags\s*\+=\s*'([^']*)'", text, re.M):  # unconditional only: not indented
        flags.append(m.group(1))
    flags += [f"-I{os.path.normpath(i)}" for i in includes]
    return Example(name, directory, tuple(dict.fromkeys(sources)), tuple(flags))


def _plain_dir(name: str, directory: Path, base_flags: list[str]) -> Example:
    sources = sorted(p for p in directory.rglob("*.c") if not OTHER_ARCH.search(p.name))
    dirs = sorted({directory} | {p.parent for p in directory.rglob("*.h")})
    flags = [*base_flags, "-DALLOW_EXPERIMENTAL_API", *(f"-I{d}" for d in dirs), f"-I{EXAMPLES_DIR / 'common'}"]
    return Example(name, directory, tuple(sources), tuple(flags))


def enumerate_examples(root: Path = EXAMPLES_DIR) -> tuple[list[Example], list[tuple[str, str]]]:
    """The applications under `root`, and the directories with C files that are not applications."""
    if not root.is_dir():
        raise RuntimeError(f"{root}: no DPDK examples; install dpdk-doc (apt-get install dpdk-doc)")
    base = dpdk_cflags()
    top = root / "meson.build"
    listed = []
    if top.is_file():
        m = re.search(r"all_examples\s*=\s*\[(.*?)\]", top.read_text(), re.S)
        listed = _strings(m.group(1)) if m else []
    examples, skipped = [], []
    for name in listed:
        d = root / name
        meson = d / "meson.build"
        if meson.is_file():
            examples.append(_from_meson(name, d, meson, base))
        elif d.is_dir():
            examples.append(_plain_dir(name, d, base))
    covered = {e.directory for e in examples}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d in covered or any(c.is_relative_to(d) for c in covered):
            continue
        if not any(d.rglob("*.c")):
            continue
        if (d / "meson.build").is_file():
            examples.append(_from_meson(d.name, d, d / "meson.build", base))
        else:
            skipped.append((d.name, "not an application: examples/meson.build does not list it and it has no meson.build"))
    return examples, skipped


def gcc_error(example: Example, source: Path) -> str | None:
    """gcc's first error line for `source`, or None when it compiles."""
    cmd = ["gcc", *example.flags, "-c", str(source), "-o", os.devnull]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=example.directory)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.splitlines()
    first = next((ln for ln in lines if "error" in ln), lines[0] if lines else f"gcc exited {proc.returncode}")
    return first.replace(str(EXAMPLES_DIR) + "/", "")


def compile_check(examples: list[Example], jobs: int = 2) -> CompileResult:
    """Compile every translation unit uninstrumented with gcc."""
    units = [(e, s) for e in examples for s in e.sources]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        errors = list(pool.map(lambda u: gcc_error(*u), units))
    result = CompileResult()
    for (e, s), err in zip(units, errors):
        if err is None:
            result.ok.append((e, s))
        else:
            result.failed.append((e, s, err))
    return result


def write_databases(result: CompileResult, out: Path) -> dict[str, Path]:
    """One compile_commands.json per application whose units all compile; {name: database}."""
    dbs = {}
    for e in result.examples_ok():
        units = [s for ex, s in result.ok if ex.name == e.name]
        d = out / e.name.replace("/", "__")
        d.mkdir(parents=True, exist_ok=True)
        entries = [{"directory": str(e.directory), "file": str(s),
                    "arguments": ["gcc", *e.flags, "-c", str(s), "-o", str(d / (s.stem + ".o"))]} for s in units]
        (d / "compile_commands.json").write_text(json.dumps(entries, indent=1))
        dbs[e.name] = d / "compile_commands.json"
    return dbs


def prepare(out: Path, jobs: int = 2) -> tuple[CompileResult, dict[str, Path], dict[str, Example]]:
    """Enumerate, compile-check and write the databases: (compile result, databases, examples by name)."""
    examples, skipped = enumerate_examples()
    result = compile_check(examples, jobs)
    result.skipped = skipped
    return result, write_databases(result, out), {e.name: e for e in examples}


def summary(result: CompileResult) -> str:
    ok_examples = result.examples_ok()
    failed_examples = sorted({e.name for e, _, _ in result.failed})
    lines = [f"{len(ok_examples)} applications ({len(result.ok)} translation units) compile uninstrumented; "
             f"{len(failed_examples)} applications do not ({len(result.failed)} translation units)"]
    for e, s, why in result.failed:
        lines.append(f"  does not compile: {e.name}: {s.relative_to(EXAMPLES_DIR)}: {why}")
    for name, why in result.skipped:
        lines.append(f"  skipped: {name}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write one compile_commands.json per application under DIR")
    a = ap.parse_args(argv)
    examples, skipped = enumerate_examples()
    result = compile_check(examples, a.jobs)
    result.skipped = skipped
    print(summary(result))
    if a.out:
        for name, db in write_databases(result, a.out).items():
            print(f"{name}: {db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

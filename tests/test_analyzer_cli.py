"""`ftmb-instrument analyze` as a user runs it: inputs, outputs, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftmb_instrument.schema import check

GOOD = """
#include <pthread.h>
static int hits;
static void *w(void *p) { (void)p; hits++; return 0; }
int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); return hits; }
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "ftmb-instrument"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_files_with_clang_args_to_json(tmp_path):
    (tmp_path / "p.c").write_text(GOOD)
    proc = run("analyze", "p.c", "-f", "json", "-o", "r.json", "--", "-DUNUSED=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the report went to the file, logs to stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert check(report) == []
    assert report["coverage"] == {"translation_units_ok": 1, "translation_units_failed": 0, "functions_analyzed": 2}
    assert "coverage: 1 translation units ok, 0 failed" in proc.stderr
    assert [v["class"] for v in report["variables"] if v["name"] == "hits"] == ["shared_rw"]


def test_compile_commands_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "p.c").write_text('#include "cfg.h"\n' + GOOD)
    (tmp_path / "src" / "inc").mkdir()
    (tmp_path / "src" / "inc" / "cfg.h").write_text("#define LIMIT 3\n")
    build = tmp_path / "build"
    build.mkdir()
    (build / "compile_commands.json").write_text(json.dumps([{
        "directory": str(tmp_path / "src"),
        "command": "gcc -Iinc -MD -MF p.d -Werror -fno-tree-vrp -c p.c -o p.o",
        "file": "p.c",
    }]))
    proc = run("analyze", "-p", "build", "-f", "sarif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"


@pytest.mark.parametrize("fmt", ["table", "dot"])
def test_text_formats_on_stdout(tmp_path, fmt):
    (tmp_path / "p.c").write_text(GOOD)
    proc = run("analyze", "p.c", "-f", fmt, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hits" in proc.stdout


def test_missing_file(tmp_path):
    proc = run("analyze", "nope.c", cwd=tmp_path)
    assert proc.returncode == 1
    assert "nope.c" in one_error_line(proc)


def test_malformed_compile_commands_names_file_and_line(tmp_path):
    (tmp_path / "compile_commands.json").write_text('[\n {"file": "a.c",\n')
    proc = run("analyze", "-p", ".", cwd=tmp_path)
    assert proc.returncode == 1
    assert "compile_commands.json:3" in one_error_line(proc)


def test_translation_unit_that_does_not_parse_fails_unless_keep_going(tmp_path):
    (tmp_path / "good.c").write_text(GOOD)
    (tmp_path / "bad.c").write_text("int main(void) {\n  return undeclared_thing;\n}\n")
    proc = run("analyze", "good.c", "bad.c", "-f", "json", "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "bad.c:2:" in line and "undeclared_thing" in line
    assert "1 translation units ok, 1 failed" in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    bad = next(u for u in report["translation_units"] if u["file"] == "bad.c")
    assert bad["status"] == "failed" and bad["functions"] == 0
    keep = run("analyze", "good.c", "bad.c", "--keep-going", "-f", "json", "-o", "k.json", cwd=tmp_path)
    assert keep.returncode == 0


def test_unknown_model_key(tmp_path):
    (tmp_path / "p.c").write_text(GOOD)
    (tmp_path / "m.toml").write_text('[[spawnn]]\nnames = ["my_spawn"]\n')
    proc = run("analyze", "p.c", "--model", "m.toml", "-f", "json", "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 1
    assert "m.toml" in one_error_line(proc) and "spawnn" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_user_model_adds_a_spawn_function(tmp_path):
    (tmp_path / "p.c").write_text("""
    typedef void *(*fn_t)(void *);
    int my_spawn(fn_t f, void *arg);
    static int hits;
    static void *w(void *p) { (void)p; hits++; return 0; }
    int main(void) { for (int i = 0; i < 2; i++) my_spawn(w, 0); return hits; }
    """)
    (tmp_path / "m.toml").write_text('[[spawn]]\nnames = ["my_spawn"]\nfunction_arg = 0\narg_arg = 1\n')
    proc = run("analyze", "p.c", "--model", "m.toml", "-f", "json", "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert any(t["entry"] == "w" and t["how"] == "my_spawn" for t in report["threads"])


@pytest.mark.parametrize("marker, message", [
    ("/* ftmb: ignor(race) typo */", "malformed ftmb marker"),
    ("/* ftmb: ignore(races) reason */", "unknown suppression"),
    ("/* ftmb: ignore(race) */", "needs a reason"),
    ("/* ftmb-ignore(race) reason */", "malformed ftmb marker"),
])
def test_bad_suppression_marker_is_an_error_naming_the_line(tmp_path, marker, message):
    (tmp_path / "p.c").write_text(GOOD.replace("static int hits;", f"static int hits; {marker}"))
    proc = run("analyze", "p.c", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "p.c:3" in line and message in line


def test_existing_output_is_kept_when_the_run_fails(tmp_path):
    (tmp_path / "r.json").write_text("previous report")
    proc = run("analyze", "missing.c", "-f", "json", "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 1
    assert (tmp_path / "r.json").read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_version_and_usage_errors(tmp_path):
    proc = run("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ftmb-instrument ")
    proc = run("analyze", "--no-such-option", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_entry_option_adds_a_root(tmp_path):
    (tmp_path / "p.c").write_text("static int n;\nvoid on_packet(void) { n++; }\nint main(void) { return n; }\n")
    proc = run("analyze", "p.c", "--entry", "on_packet", "-f", "json", "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert any(t["entry"] == "on_packet" and t["how"] == "entry" for t in report["threads"])
    assert [v["class"] for v in report["variables"] if v["name"] == "n"] == ["shared_rw"]


def test_parallel_jobs_give_the_same_report(tmp_path):
    for i in range(5):
        (tmp_path / f"u{i}.c").write_text(f"int g{i};\nint f{i}(void) {{ return g{i}++; }}\n")
    (tmp_path / "main.c").write_text(GOOD)
    files = sorted(p.name for p in tmp_path.glob("*.c"))
    one = run("analyze", *files, "-j", "1", "-f", "json", "-o", "one.json", cwd=tmp_path)
    two = run("analyze", *files, "-j", "2", "-f", "json", "-o", "two.json", cwd=tmp_path)
    assert one.returncode == two.returncode == 0
    assert json.loads((tmp_path / "one.json").read_text()) == json.loads((tmp_path / "two.json").read_text())
    assert os.path.exists(tmp_path / "two.json")

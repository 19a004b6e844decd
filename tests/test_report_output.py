from __future__ import annotations

import os
import stat

import pytest

from ftmb_instrument.errors import FtmbError
from ftmb_instrument.report.output import emit, write_atomic


def test_writes_and_replaces(tmp_path) -> None:
    target = tmp_path / "r.json"
    write_atomic(target, "first\n")
    write_atomic(target, "second ü\n")
    assert target.read_text(encoding="utf-8") == "second ü\n"
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_new_file_gets_the_umask_mode_and_an_existing_one_keeps_its_mode(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        write_atomic(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        write_atomic(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "r.json"
    target.write_text("good\n")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["r.json"]


def test_unwritable_places_are_ftmb_errors_naming_the_path(tmp_path) -> None:
    with pytest.raises(FtmbError, match=f"^{tmp_path}/missing/r.json: cannot write: its directory does not exist \\({tmp_path}/missing\\)$"):
        write_atomic(tmp_path / "missing" / "r.json", "x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(FtmbError, match="adir: cannot write: Is a directory$"):
        write_atomic(tmp_path / "adir", "x")
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_emit_goes_to_stdout_without_a_path(capsys, tmp_path) -> None:
    emit("hello\n", None)
    assert capsys.readouterr().out == "hello\n"
    emit("file\n", tmp_path / "f")
    assert (tmp_path / "f").read_text() == "file\n" and capsys.readouterr().out == ""

"""Compile-command sanitizing and library model files."""

from __future__ import annotations

import pytest

from ftmb_instrument.errors import ModelError
from ftmb_instrument.frontend.compdb import sanitize
from ftmb_instrument.semantics import load_semantics


def test_sanitize_drops_what_libclang_must_not_see():
    argv = ["/usr/bin/gcc", "-c", "src/a.c", "-o", "a.o", "-MD", "-MF", "a.d", "-MT", "a.o", "-Werror",
            "-Werror=format", "-fno-tree-vrp", "-Iinc", "-I", "other", "-isystem", "/opt/x", "-DX=1",
            "-include", "rte_config.h", "-O2"]
    out = sanitize(argv, "/proj", "src/a.c")
    assert "-c" not in out and "a.o" not in out and "src/a.c" not in out and "/usr/bin/gcc" not in out
    assert not [a for a in out if a.startswith(("-M", "-Werror", "-fno-tree"))]
    assert "a.d" not in out
    assert "-I/proj/inc" in out
    assert out[out.index("-I") + 1] == "/proj/other"
    assert out[out.index("-isystem") + 1] == "/opt/x"
    assert out[out.index("-include") + 1] == "rte_config.h"  # not in /proj: found on the include path
    assert "-DX=1" in out and "-O2" in out


def test_bundled_models_cover_the_api_families():
    sem = load_semantics()
    assert sem.role("pthread_create", "spawn").get("function_arg") == 2
    assert sem.role("rte_eal_mp_remote_launch", "spawn").get("instances") == "several"
    assert sem.role("rte_spinlock_trylock", "lock").get("op") == "try_acquire"
    assert sem.role("rte_rwlock_read_lock", "lock").get("shared") is True
    assert sem.role("rte_atomic32_add_return", "atomic") is not None  # by pattern
    assert sem.role("__atomic_fetch_add", "atomic").get("mode") == "rmw"
    assert sem.role("rte_rdtsc", "nondeterminism").get("category") == "time"
    assert sem.role("getrandom", "nondeterminism").get("category") == "random"
    assert sem.role("rte_eth_tx_buffer_flush", "packet_io").get("direction") == "tx"
    assert sem.role("pcap_next_ex", "packet_io").get("direction") == "rx"
    assert sem.role("rte_zmalloc", "alloc") is not None
    assert sem.role("rte_hash_create", "opaque_create") is not None
    assert sem.role("rte_lcore_id", "core_identity") is not None
    assert sem.role("memcpy", "lock") is None


@pytest.mark.parametrize("text, message", [
    ('[[spawn]]\nnames = ["f"]\nfunction_ar = 1\n', "unknown key 'function_ar'"),
    ('[[lock]]\nnames = ["f"]\nop = "grab"\n', "'op' must be one of"),
    ('[[atomic]]\nnames = []\n', "'names' must be a non-empty list"),
    ('[[join]]\nnames = ["f"\n', "invalid TOML"),
    ('[[lock]]\nnames = ["f"]\nlock_arg = "0"\n', "'lock_arg' must be int"),
])
def test_model_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "user.toml"
    path.write_text(text)
    with pytest.raises(ModelError) as exc:
        load_semantics([path])
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_user_model_extends_the_bundled_ones(tmp_path):
    path = tmp_path / "user.toml"
    path.write_text('[[nondeterminism]]\nnames = ["my_clock_*"]\ncategory = "time"\n')
    sem = load_semantics([path])
    assert sem.role("my_clock_ns", "nondeterminism").get("category") == "time"
    assert sem.role("pthread_create", "spawn") is not None

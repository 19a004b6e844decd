"""The runtime ABI: generated files match the single source of truth, the header stands alone,
every entry point is implemented, and a mismatched ABI version fails at link time."""

import re
import subprocess
from pathlib import Path

import pytest

from ftmb_instrument.abi import AbiCallError, generate, replacement_call, spec
from ftmb_instrument.abi.emit_table import TABLE

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
BUILD = RUNTIME / "build"
HEADER = RUNTIME / "include" / "ftmb" / "ftmb.h"


@pytest.fixture(scope="module")
def libs():
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all"], check=True, capture_output=True, timeout=600)
    return BUILD


def test_checked_in_files_match_the_generator():
    for rel, render in generate.OUTPUTS.items():
        assert (ROOT / rel).read_text() == render(), f"{rel} is stale: run `python -m ftmb_instrument.abi`"


def test_generator_check_mode_reports_drift(tmp_path):
    for rel, render in generate.OUTPUTS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(render())
    cmd = ["python", "-m", "ftmb_instrument.abi", "--check", "--root", str(tmp_path)]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    (tmp_path / generate.HEADER_PATH).write_text(render_header_edited())
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "runtime/include/ftmb/ftmb.h: differs" in proc.stderr


def render_header_edited():
    return generate.render_header().replace("int ftmb_init(void);", "int ftmb_init(int);")


def test_table_agrees_with_spec():
    assert TABLE["abi_version"] == spec.ABI_VERSION
    assert set(TABLE["entries"]) == {e.name for e in spec.ENTRIES}
    assert TABLE["wraps"]["pthread_mutex_lock"] == ["ftmb_pthread_mutex_lock"]
    assert TABLE["wraps"]["rte_eth_rx_burst"] == ["ftmb_rx_burst"]
    assert TABLE["wraps"]["__atomic_fetch_add"] == [f"ftmb_atomic_fetch_add_{n}" for n in (1, 2, 4, 8)]
    assert TABLE["wraps"]["__atomic_load_4"] == ["ftmb_atomic_load_4"]
    assert TABLE["entries"]["ftmb_atomic_fetch_add_4"]["args"]["atomic_fetch_add"] == "$0, $1, 5"
    for name, entry in TABLE["entries"].items():
        assert name.startswith("ftmb_")
        if entry["kind"] in ("lock", "atomic"):
            assert entry["trailing_ids"] == ["obj", "site"], name
        if entry["kind"] == "nondet":
            assert entry["trailing_ids"] == [], name


def test_argument_templates_fit_their_entries(tmp_path):
    # each template gives exactly the entry's arguments (before the ids), and the rewritten calls compile
    calls = []
    for name, entry in TABLE["entries"].items():
        for call, template in entry["args"].items():
            assert call in entry["wraps"]
            items = [a.strip() for a in template.split(",")]
            assert len(items) == len(entry["params"]), (name, call, template)
            if entry["kind"] == "atomic" and name.endswith("_4"):
                by_pointer = "compare" in name and not call.startswith("__sync")
                argv = {"$0": "&x", "$1": "&e" if by_pointer else "1", "$2": "7", "$3": "5", "$4": "5"}
                ids = ", 1, 2" if entry["trailing_ids"] else ""
                rendered = [re.sub(r"\$(\d)", lambda m: argv[m.group(0)], a) for a in items]
                calls.append(f"    (void){name}({', '.join(rendered)}{ids});")
    assert calls
    src = tmp_path / "calls.c"
    src.write_text('#include "ftmb/ftmb.h"\nvoid f(void) {\n    ftmb_u32 x = 0, e = 0;\n' + "\n".join(calls) + "\n}\n")
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-c", str(src), "-I", str(RUNTIME / "include"),
                    "-o", str(tmp_path / "calls.o")], check=True)


def test_header_stands_alone(tmp_path):
    text = HEADER.read_text()
    assert "#include" not in text
    src = tmp_path / "only_header.c"
    src.write_text('#include "ftmb/ftmb.h"\nint main(void) { return ftmb_mode(); }\n')
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(src),
                    "-I", str(RUNTIME / "include"), "-o", str(tmp_path / "o.o")], check=True)


def defined_symbols(*archives):
    out = subprocess.run(["nm", "--defined-only", *map(str, archives)], capture_output=True, text=True,
                         check=True).stdout
    return set(re.findall(r" [TDRB] (\w+)$", out, re.M))


def test_every_entry_point_is_implemented(libs):
    core = defined_symbols(libs / "libftmb.a")
    adapters = {lib: defined_symbols(libs / f"libftmb_{lib}.a") for lib in ("dpdk", "pcap")
                if (libs / f"libftmb_{lib}.a").exists()}
    for e in spec.ENTRIES:
        if e.library == "core":
            assert e.slow in core, f"{e.slow} is in the ABI table but not in libftmb.a"
        elif e.library in adapters:
            assert e.slow in adapters[e.library], f"{e.slow} is in the ABI table but not in libftmb_{e.library}.a"
    assert f"ftmb_abi_version_{spec.ABI_VERSION}" in core
    # the inline fast path's thread-local view (a TLS symbol: nm's B/D do not say so, readelf does)
    tls = subprocess.run(["readelf", "-sW", str(libs / "libftmb.a")], capture_output=True, text=True,
                         check=True).stdout
    assert re.search(r"TLS +GLOBAL +DEFAULT +\d+ ftmb_fast_thread$", tls, re.M), "ftmb_fast_thread is not exported"


def test_inline_fast_path_makes_no_call(tmp_path):
    """The held access, ordered region and logged atomics of a rewritten program run their common
    case inline: with compile-time ids the fast path's code has no call, only the fallback has (to
    the entry's _slow), and the thread's view is one initial-exec TLS load (%fs-relative)."""
    src = tmp_path / "fast.c"
    src.write_text('#include "ftmb/ftmb.h"\n'
                   "ftmb_u64 x;\n"
                   "void held(void) { ftmb_held_access(7, 3); }\n"
                   "void ordered(void) { ftmb_ordered_begin(9, 4); x++; ftmb_ordered_end(9); }\n"
                   "ftmb_u64 add(void) { return ftmb_atomic_fetch_add_8(&x, 1, 5, 11, 5); }\n")
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Wshadow", "-Werror", "-S", str(src), "-I",
                    str(RUNTIME / "include"), "-o", str(tmp_path / "fast.s")], check=True)
    asm = (tmp_path / "fast.s").read_text()
    for fn, slow in (("held", ["ftmb_held_access_slow"]), ("ordered", ["ftmb_ordered_begin_slow",
                                                                       "ftmb_ordered_end_slow"]),
                     ("add", ["ftmb_atomic_fetch_add_8_slow"])):
        body = asm.split(f"\n{fn}:\n", 1)[1].split("\t.size\t", 1)[0]
        called = sorted(set(re.findall(r"\t(?:call|jmp)\t(\w+)", body)))
        assert called == sorted(slow), (fn, called)
        assert re.search(r"ftmb_fast_thread@(got)?tpoff", body), fn  # initial-exec, never __tls_get_addr
    # the record's head folds: obj 7 and site 3 of the held access are one constant
    held = asm.split("\nheld:\n", 1)[1].split("\t.size\t", 1)[0]
    assert str(3 | (3 << 24) | (7 << 40)) in held or hex(3 | (3 << 24) | (7 << 40)) in held, held


def test_mismatched_abi_version_fails_at_link_time(libs, tmp_path, monkeypatch):
    prog = '#include "ftmb/ftmb.h"\nint main(void) { return ftmb_init(); }\n'
    (tmp_path / "p.c").write_text(prog)

    def link(include_dir):
        return subprocess.run(["gcc", "-std=c11", str(tmp_path / "p.c"), "-I", str(include_dir),
                               str(libs / "libftmb.a"), "-pthread", "-o", str(tmp_path / "p")],
                              capture_output=True, text=True)

    assert link(RUNTIME / "include").returncode == 0
    monkeypatch.setattr(spec, "ABI_VERSION", spec.ABI_VERSION + 1)
    other = tmp_path / "inc" / "ftmb"
    other.mkdir(parents=True)
    (other / "ftmb.h").write_text(generate.render_header())
    proc = link(tmp_path / "inc")
    assert proc.returncode != 0
    assert f"undefined reference to `ftmb_abi_version_{spec.ABI_VERSION}'" in proc.stderr


def test_replacement_calls_are_rendered_from_the_table():
    assert replacement_call("pthread_mutex_lock", ["&m"], obj=3, site=17) == "ftmb_pthread_mutex_lock(&m, 3, 17)"
    assert replacement_call("rte_eth_rx_burst", ["port", "q", "pkts", "32"]) == \
        "ftmb_rx_burst(port, q, pkts, 32)"
    assert replacement_call("time", ["NULL"]) == "ftmb_time(NULL)"
    assert replacement_call("atomic_fetch_add", ["&n", "1"], size=4, obj=5, site=2) == \
        "ftmb_atomic_fetch_add_4(&n, 1, 5, 5, 2)"
    assert replacement_call("__atomic_compare_exchange_n", ["p", "&e", "d", "0", "5", "5"], size=8, obj=1,
                            site=0) == "ftmb_atomic_compare_exchange_8(p, &e, d, 0, 5, 5, 1, 0)"
    assert replacement_call("atomic_compare_exchange_weak_explicit", ["p", "&e", "d", "2", "0"], size=2, obj=1,
                            site=9) == "ftmb_atomic_compare_exchange_2(p, &e, d, 1, 2, 0, 1, 9)"
    assert replacement_call("__sync_bool_compare_and_swap", ["&w", "old", "new"], size=4, obj=2, site=3) == \
        "ftmb_atomic_compare_exchange_4(&w, (void *)&(__typeof__(*(&w))){ old }, new, 0, 5, 5, 2, 3)"
    with pytest.raises(AbiCallError, match="no replacement"):
        replacement_call("memcpy", ["a", "b", "n"])
    with pytest.raises(AbiCallError, match="operand size"):
        replacement_call("__atomic_fetch_add", ["p", "1", "5"], obj=1, site=1)
    with pytest.raises(AbiCallError, match="compile-time obj id"):
        replacement_call("pthread_spin_lock", ["&s"])
    with pytest.raises(AbiCallError, match="1 arguments, ftmb_tx_burst takes 4"):
        replacement_call("rte_eth_tx_burst", ["p"])


SAME_SHAPE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include "ftmb/ftmb.h"
/* nondeterministic and allocation wrappers have exactly the originals' types */
time_t (*p_time)(time_t *) = ftmb_time;
int (*p_clock_gettime)(clockid_t, struct timespec *) = ftmb_clock_gettime;
int (*p_rand)(void) = ftmb_rand;
long (*p_random)(void) = ftmb_random;
ssize_t (*p_getrandom)(void *, size_t, unsigned) = ftmb_getrandom;
void *(*p_malloc)(size_t) = ftmb_state_alloc;
void *(*p_calloc)(size_t, size_t) = ftmb_state_calloc;
void *(*p_realloc)(void *, size_t) = ftmb_state_realloc;
void (*p_free)(void *) = ftmb_state_free;
/* lock wrappers take the original arguments first and return the original type */
int lock_it(pthread_mutex_t *m, pthread_spinlock_t *s, pthread_rwlock_t *rw)
{
    return ftmb_pthread_mutex_lock(m, 1, 2) + ftmb_pthread_spin_lock(s, 3, 4) + ftmb_pthread_rwlock_rdlock(rw, 5, 6);
}
int spawn(pthread_t *t, void *(*f)(void *)) { return ftmb_pthread_create(t, NULL, f, NULL); }
"""

SAME_SHAPE_DPDK = r"""
#define _GNU_SOURCE
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_random.h>
#include "ftmb/ftmb.h"
uint16_t (*p_rx)(uint16_t, uint16_t, struct rte_mbuf **, const uint16_t) = ftmb_rx_burst;
uint16_t (*p_tx)(uint16_t, uint16_t, struct rte_mbuf **, uint16_t) = ftmb_tx_burst;
uint16_t (*p_flush)(uint16_t, uint16_t, struct rte_eth_dev_tx_buffer *) = ftmb_tx_buffer_flush;
int (*p_setup)(uint16_t, uint16_t, uint16_t, unsigned int, const struct rte_eth_rxconf *,
               struct rte_mempool *) = ftmb_eth_rx_queue_setup;
int (*p_launch)(lcore_function_t *, void *, unsigned) = ftmb_rte_eal_remote_launch;
uint64_t (*p_rte_rand)(void) = ftmb_rte_rand;
uint64_t (*p_rdtsc)(void) = ftmb_rte_rdtsc;
int spin(rte_spinlock_t *sl, rte_atomic32_t *a)
{
    ftmb_rte_spinlock_lock(sl, 1, 2);
    ftmb_rte_spinlock_unlock(sl, 1, 3);
    return ftmb_rte_atomic32_add_return(a, 1, 4, 5);
}
"""


def test_wrappers_have_the_shape_of_the_originals(tmp_path):
    src = tmp_path / "shape.c"
    src.write_text(SAME_SHAPE)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-c", str(src), "-I", str(RUNTIME / "include"),
                    "-o", str(tmp_path / "shape.o")], check=True)
    cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True)
    if cflags.returncode != 0:
        pytest.skip("DPDK is not installed")
    src = tmp_path / "shape_dpdk.c"
    src.write_text(SAME_SHAPE_DPDK)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-c", str(src), "-I", str(RUNTIME / "include"),
                    *cflags.stdout.split(), "-o", str(tmp_path / "shape_dpdk.o")], check=True)

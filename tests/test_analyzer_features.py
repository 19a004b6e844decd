"""The analyzer on small programs, one concurrency pattern each."""

from __future__ import annotations

import pytest
from analyzer_util import analyze_source, dpdk_cflags, var

PTHREAD_HEAD = """
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
"""


def test_lock_wrapper_through_parameter_and_heap_table(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    struct tbl { pthread_mutex_t lock; long hits; };
    static struct tbl *g_tbl;
    static void tbl_lock(struct tbl *t) { pthread_mutex_lock(&t->lock); }
    static void tbl_unlock(struct tbl *t) { pthread_mutex_unlock(&t->lock); }
    static void *worker(void *arg) {
        (void)arg;
        for (int i = 0; i < 100; i++) { tbl_lock(g_tbl); g_tbl->hits++; tbl_unlock(g_tbl); }
        return NULL;
    }
    int main(void) {
        pthread_t t[2];
        g_tbl = calloc(1, sizeof *g_tbl);
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return (int)g_tbl->hits;
    }
    """)
    table = var(r, "g_tbl->hits", "heap")  # the members of the heap struct, each an object
    assert (table.cls, table.protection) == ("shared_rw", "lock")
    assert "g_tbl->lock" in table.locks
    assert table.commutative
    assert (var(r, "g_tbl->lock", "heap").cls, var(r, "g_tbl->lock", "heap").protection) == ("shared_rw", "atomic")
    assert var(r, "g_tbl", "static").cls == "shared_ro"  # the pointer: written before the threads start
    worker = next(t for t in r.threads if t.entry == "worker")
    assert (worker.how, worker.instances) == ("pthread_create", "several")


def test_unlock_in_a_branch_that_returns_keeps_the_lock_after_it(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    static int queue_len;
    static void *worker(void *arg) {
        (void)arg;
        for (;;) {
            pthread_mutex_lock(&m);
            if (queue_len == 0) { pthread_mutex_unlock(&m); return NULL; }
            queue_len--;
            pthread_mutex_unlock(&m);
        }
    }
    int main(void) {
        pthread_t t[2];
        queue_len = 50;
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return 0;
    }
    """)
    q = var(r, "queue_len")
    assert (q.cls, q.protection, q.locks) == ("shared_rw", "lock", ("m",))
    assert var(r, "m").cls == "shared_rw"


def test_signal_handler_stop_flag_is_a_race_and_is_warned(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    static volatile int stop;
    static long packets;
    static void on_sigint(int sig) { (void)sig; stop = 1; }
    static void *worker(void *arg) { (void)arg; while (!stop) packets++; return NULL; }
    int main(void) {
        pthread_t t;
        signal(SIGINT, on_sigint);
        pthread_create(&t, NULL, worker, NULL);
        pthread_join(t, NULL);
        return (int)packets;
    }
    """)
    stop = var(r, "stop")
    assert (stop.cls, stop.protection) == ("shared_rw", "unprotected")
    assert any(t.entry == "on_sigint" and t.how == "signal" for t in r.threads)
    assert any(w.kind == "race" and w.variable == stop.id for w in r.warnings)
    assert var(r, "packets").cls == "thread_private"  # one worker instance, main only reads after join


def test_per_thread_argument_and_tls_are_per_core(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    struct targ { int id; long seen; };
    static struct targ args[4];
    static long per_thread_bytes[4];
    static __thread long scratch;
    static _Atomic long total;
    static void *worker(void *p) {
        struct targ *a = p;
        for (int i = 0; i < 10; i++) { a->seen++; per_thread_bytes[a->id] += 64; scratch++; atomic_fetch_add(&total, 1); }
        return NULL;
    }
    int main(void) {
        pthread_t t[4];
        long sum = 0;
        for (int i = 0; i < 4; i++) { args[i].id = i; pthread_create(&t[i], NULL, worker, &args[i]); }
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < 4; i++) sum += args[i].seen + per_thread_bytes[i];
        return (int)(sum + total);
    }
    """)
    assert var(r, "args[].seen").cls == "per_core"  # a member of every element of the array
    assert var(r, "args[].id").cls == "per_core"
    assert var(r, "per_thread_bytes").cls == "per_core"
    assert var(r, "scratch").cls == "per_core"
    total = var(r, "total")
    assert (total.cls, total.protection, total.commutative) == ("shared_rw", "atomic", True)


def test_packet_data_index_is_not_per_thread(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    static unsigned flows[256];
    static void *worker(void *p) {
        unsigned id = (unsigned)(long)p;
        for (unsigned pkt = 0; pkt < 1000; pkt++) flows[(id ^ pkt) % 256]++;
        return NULL;
    }
    int main(void) {
        pthread_t t[2];
        for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)i);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return (int)flows[0];
    }
    """)
    flows = var(r, "flows")
    assert (flows.cls, flows.protection) == ("shared_rw", "unprotected")


def test_spawn_through_function_pointer_and_indirect_dispatch(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    typedef void (*handler_fn)(int);
    static int counter_a, counter_b;
    static void handle_a(int x) { counter_a += x; }
    static void handle_b(int x) { counter_b += x; }
    static const handler_fn handlers[] = { handle_a, handle_b };
    static void *worker(void *p) { (void)p; for (int i = 0; i < 8; i++) handlers[i & 1](i); return NULL; }
    static void *(*entry)(void *) = worker;
    int main(void) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, entry, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return counter_a + counter_b;
    }
    """)
    assert any(t.entry == "worker" for t in r.threads)
    assert var(r, "counter_a").cls == "shared_rw"
    assert var(r, "counter_b").cls == "shared_rw"
    assert var(r, "handlers").cls == "shared_ro"


def test_recovery_warnings_nondeterminism_and_loop_state(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    static long seen;
    static void *worker(void *p) {
        (void)p;
        long last = 0;
        for (int i = 0; i < 10; i++) { last += time(NULL) + rand(); seen = last; }
        return NULL;
    }
    int main(void) { pthread_t t; pthread_create(&t, NULL, worker, NULL); pthread_join(t, NULL); return (int)seen; }
    """)
    calls = {(s.call, s.category) for s in r.nondeterminism}
    assert {("time", "time"), ("rand", "random")} <= calls
    assert any(w.kind == "invisible_state" and "'last'" in w.message for w in r.warnings)


DPDK_SOURCE = """
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_spinlock.h>
#include <rte_cycles.h>
static rte_spinlock_t lk = RTE_SPINLOCK_INITIALIZER;
static uint64_t per_lcore_rx[RTE_MAX_LCORE];
static uint64_t shared_total;
static uint16_t port;
static int lcore_main(void *arg) {
    (void)arg;
    unsigned me = rte_lcore_id();
    struct rte_mbuf *bufs[32];
    for (int i = 0; i < 10; i++) {
        uint16_t n = rte_eth_rx_burst(port, 0, bufs, 32);
        per_lcore_rx[me] += n;
        rte_spinlock_lock(&lk);
        shared_total += rte_rdtsc() & n;
        rte_spinlock_unlock(&lk);
        rte_eth_tx_burst(port, 0, bufs, n);
    }
    return 0;
}
int main(int argc, char **argv) {
    if (rte_eal_init(argc, argv) < 0) return 1;
    port = 0;
    rte_eal_mp_remote_launch(lcore_main, NULL, CALL_MAIN);
    rte_eal_mp_wait_lcore();
    return (int)shared_total;
}
"""


def test_dpdk_launch_lcore_arrays_spinlocks_and_packet_io(tmp_path):
    r = analyze_source(tmp_path, DPDK_SOURCE, args=dpdk_cflags())
    assert all(u.status == "ok" for u in r.translation_units), r.translation_units
    root = next(t for t in r.threads if t.entry == "lcore_main")
    assert (root.how, root.instances) == ("rte_eal_mp_remote_launch", "several")
    assert var(r, "per_lcore_rx").cls == "per_core"
    total = var(r, "shared_total")
    assert (total.cls, total.protection, total.locks) == ("shared_rw", "lock", ("lk",))
    assert var(r, "port").cls == "shared_ro"
    assert {(s.call, s.category) for s in r.packet_io} == {("rte_eth_rx_burst", "rx"), ("rte_eth_tx_burst", "tx")}
    assert any(s.call == "rte_rdtsc" for s in r.nondeterminism)


def test_ids_are_stable_when_code_moves(tmp_path):
    src = PTHREAD_HEAD + """
    static int hits;
    static void *w(void *p) { (void)p; hits++; return NULL; }
    int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, w, NULL); return hits; }
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = analyze_source(tmp_path / "a", src)
    after = analyze_source(tmp_path / "b", "/* a new comment */\n\n\n" + src)
    assert var(before, "hits").id == var(after, "hits").id
    assert var(before, "hits").decl != var(after, "hits").decl


@pytest.mark.parametrize("what", ["race", "variable"])
def test_suppression_keeps_the_variable_visible_but_silences_the_race(tmp_path, what):
    r = analyze_source(tmp_path, PTHREAD_HEAD + f"""
    static int hits; /* ftmb: ignore({what}) statistics only, lost updates are fine */
    static void *w(void *p) {{ (void)p; hits++; return NULL; }}
    int main(void) {{ pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, w, NULL); return hits; }}
    """)
    hits = var(r, "hits")
    assert hits.cls == "shared_rw"
    assert hits.suppressed == "statistics only, lost updates are fine"
    assert not [w for w in r.warnings if w.kind == "race" and w.variable == hits.id]


def test_access_suppression_is_recorded_on_the_access(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    static int hits;
    static void *w(void *p) {
        (void)p;
        hits++; /* ftmb: ignore(access) debug counter */
        return NULL;
    }
    int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, w, NULL); return hits; }
    """)
    acc = [a for a in var(r, "hits").accesses if a.function == "w"]
    assert acc and all(a.suppressed == "debug counter" for a in acc)


FIELDS_HEAD = PTHREAD_HEAD + """
#include <string.h>
struct counters { long rx; long tx; };
struct params { long a; long b; struct counters c; long *table; long *other; };
"""


def _run_two_workers(body_a: str, body_b: str, main_before: str = "", globals_: str = "") -> str:
    return FIELDS_HEAD + globals_ + f"""
    static struct params app;
    static void *wa(void *x) {{ (void)x; for (int i = 0; i < 10; i++) {{ {body_a} }} return NULL; }}
    static void *wb(void *x) {{ (void)x; for (int i = 0; i < 10; i++) {{ {body_b} }} return NULL; }}
    int main(void) {{
        pthread_t t[2];
        {main_before}
        pthread_create(&t[0], NULL, wa, NULL);
        pthread_create(&t[1], NULL, wb, NULL);
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
        return (int)(app.a + app.b + app.c.rx + app.c.tx);
    }}
    """


def test_fields_of_a_global_struct_are_independent_objects(tmp_path):
    r = analyze_source(tmp_path, _run_two_workers("app.a++; app.c.rx++;", "app.b++; app.c.tx++;",
                                                  main_before="memset(&app, 0, sizeof app);"))
    for name in ("app.a", "app.b", "app.c.rx", "app.c.tx"):  # each written by one worker only
        assert var(r, name, "static").cls == "thread_private", name
    assert not [v for v in r.variables if v.name == "app"]  # main's memset runs alone: it counts on each part
    assert var(r, "app.a").id != var(r, "app.b").id


def test_a_whole_struct_access_conflicts_with_its_fields(tmp_path):
    whole = analyze_source(tmp_path, _run_two_workers(
        "app.a++;", "struct params copy; memcpy(&copy, &app, sizeof copy); app.b = copy.b;"))
    app = var(whole, "app", "static")  # memcpy reads all of app while wa writes app.a: one object
    assert (app.cls, app.protection) == ("shared_rw", "unprotected")
    assert {a.function for a in app.accesses} >= {"wa", "wb"}
    assert not [v for v in whole.variables if v.name.startswith("app.")]
    fields = analyze_source(tmp_path, _run_two_workers("app.a++;", "app.b++;"))
    assert var(whole, "app").id != var(fields, "app.a").id  # the whole variable keeps the id it always had


def test_byte_arithmetic_from_a_field_reaches_the_whole_struct(tmp_path):
    r = analyze_source(tmp_path, _run_two_workers(
        "app.b++;", "*(long *)((char *)&app.a + sizeof(long)) = 1;"))
    app = var(r, "app", "static")
    assert app.cls == "shared_rw"
    assert {a.function for a in app.accesses} >= {"wa", "wb"}


def test_a_struct_seen_through_another_struct_type_is_one_object(tmp_path):
    r = analyze_source(tmp_path, _run_two_workers(
        "app.b++;", "((struct counters *)&app)->tx++;"))
    assert var(r, "app", "static").cls == "shared_rw"  # counters::tx overlaps params::b


def test_pointer_stored_in_a_field_and_loaded_back_resolves(tmp_path):
    r = analyze_source(tmp_path, _run_two_workers(
        "app.table[i % 4]++;", "app.table[(i + 1) % 4]++; app.other[0]++;",
        main_before="app.table = calloc(4, sizeof(long)); app.other = calloc(1, sizeof(long));"))
    assert var(r, "app.table", "static").cls == "shared_ro"  # the pointer: written before the threads
    table = [v for v in r.variables if v.scope == "heap"]
    assert [(v.name, v.cls) for v in table] == [("app.table", "shared_rw")]  # app.other's block: wb's alone


def test_a_union_is_one_object(tmp_path):
    r = analyze_source(tmp_path, PTHREAD_HEAD + """
    union word { long whole; int half[2]; };
    struct holder { union word w; long n; };
    static union word u;
    static struct holder h;
    static void *wa(void *x) { (void)x; u.whole++; h.w.whole++; h.n++; return NULL; }
    static void *wb(void *x) { (void)x; u.half[1]++; h.w.half[0]++; return NULL; }
    int main(void) {
        pthread_t t[2];
        pthread_create(&t[0], NULL, wa, NULL);
        pthread_create(&t[1], NULL, wb, NULL);
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
        return (int)(u.whole + h.n);
    }
    """)
    assert var(r, "u", "static").cls == "shared_rw"
    assert var(r, "h.w", "static").cls == "shared_rw"  # the union member of a struct: one object
    assert var(r, "h.n", "static").cls == "thread_private"

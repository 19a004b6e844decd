"""Thread roots through tables, struct copies and unknown values; library callbacks as calls."""

from __future__ import annotations

import pytest
from analyzer_util import analyze_source, dpdk_cflags, var

from ftmb_instrument.errors import ModelError
from ftmb_instrument.semantics import load_semantics

HEAD = """
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
"""


def roots(report) -> dict[str, str]:
    return {t.entry: t.instances for t in report.threads if t.how != "main"}


def warnings(report, kind: str) -> list:
    return [w for w in report.warnings if w.kind == kind]


def test_void_pointer_table_of_k_and_r_functions_spawns_each(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    static long pkts;
    void *emit_thread();
    void *scan_thread();
    static void *threads[] = {&emit_thread, &scan_thread};
    int main(void) {
        pthread_t t[2];
        pthread_attr_t attr;
        int i;
        pthread_attr_init(&attr);
        for (i = 0; i < 2; i++) pthread_create(&t[i], &attr, threads[i], 0);
        for (i = 0; i < 2; i++) pthread_join(t[i], 0);
        printf("%ld\\n", pkts);
        return 0;
    }
    void *emit_thread() { pkts++; return 0; }
    void *scan_thread() { pkts--; return 0; }
    """)
    assert roots(r) == {"emit_thread": "several", "scan_thread": "several"}
    assert var(r, "pkts").cls == "shared_rw"
    assert not warnings(r, "unresolved_spawn")


def test_static_local_table_and_designated_struct_initializers(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    static long rx_pkts, stats;
    static void *rx_loop(void *a) { (void)a; rx_pkts++; return NULL; }
    static void *stats_loop(void *a) { (void)a; stats = rx_pkts; return NULL; }
    static int parse(const char *s) { return s[0]; }
    struct stage { const char *name; void *(*run)(void *); int (*parse)(const char *); };
    int main(void) {
        static const struct stage stages[] = {
            { .name = "rx", .run = rx_loop, .parse = parse },
            { .name = "stats", .run = stats_loop, .parse = parse },
        };
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, stages[i].run, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return (int)stats + stages[0].parse("x");
    }
    """)
    # `parse` is stored in the same table but is not of the argument's type: not a thread.
    assert roots(r) == {"rx_loop": "several", "stats_loop": "several"}
    assert var(r, "rx_pkts").cls == "shared_rw"


def test_struct_copy_selects_the_launch_target(tmp_path):
    """DPDK l3fwd: `l3fwd_lkp = l3fwd_lpm_lkp;` copies a struct of function pointers, then
    `rte_eal_mp_remote_launch(l3fwd_lkp.main_loop, ...)`."""
    r = analyze_source(tmp_path, HEAD + """
    static long routed;
    static int em_loop(void *a) { (void)a; routed++; return 0; }
    static int lpm_loop(void *a) { (void)a; routed++; return 0; }
    static void em_setup(int socket) { (void)socket; }
    static void lpm_setup(int socket) { (void)socket; }
    struct lkp_mode { void (*setup)(int); int (*main_loop)(void *); };
    static struct lkp_mode lkp;
    static struct lkp_mode em_lkp = { .setup = em_setup, .main_loop = em_loop };
    static struct lkp_mode lpm_lkp = { .setup = lpm_setup, .main_loop = lpm_loop };
    static void *start(void *fn) { ((int (*)(void *))fn)(NULL); return NULL; }
    int main(int argc, char **argv) {
        (void)argv;
        pthread_t t[2];
        if (argc > 1) lkp = em_lkp; else lkp = lpm_lkp;
        lkp.setup(0);
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, start, (void *)lkp.main_loop);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return (int)routed;
    }
    """)
    assert roots(r) == {"start": "several"}
    threads_of_loops = {a.function: a.threads for a in var(r, "routed").accesses}
    assert threads_of_loops["em_loop"] == threads_of_loops["lpm_loop"] == ("start",)
    assert var(r, "routed").cls == "shared_rw"


def test_struct_copy_launch_in_dpdk(tmp_path):
    r = analyze_source(tmp_path, """
    #include <rte_eal.h>
    #include <rte_launch.h>
    #include <rte_lcore.h>
    static unsigned long fwd;
    static int em_main_loop(void *a) { (void)a; fwd++; return 0; }
    static int lpm_main_loop(void *a) { (void)a; fwd++; return 0; }
    static int em_check_ptype(int port) { return port; }
    static int lpm_check_ptype(int port) { return port + 1; }
    struct l3fwd_lkp_mode { int (*check_ptype)(int); int (*main_loop)(void *); };
    static struct l3fwd_lkp_mode l3fwd_lkp;
    static struct l3fwd_lkp_mode l3fwd_em_lkp = { .check_ptype = em_check_ptype, .main_loop = em_main_loop };
    static struct l3fwd_lkp_mode l3fwd_lpm_lkp = { .check_ptype = lpm_check_ptype, .main_loop = lpm_main_loop };
    int main(int argc, char **argv) {
        if (rte_eal_init(argc, argv) < 0) return 1;
        if (argc > 3) l3fwd_lkp = l3fwd_em_lkp; else l3fwd_lkp = l3fwd_lpm_lkp;
        if (l3fwd_lkp.check_ptype(0)) return 1;
        rte_eal_mp_remote_launch(l3fwd_lkp.main_loop, NULL, CALL_MAIN);
        rte_eal_mp_wait_lcore();
        return (int)fwd;
    }
    """, args=dpdk_cflags())
    # check_ptype has one parameter too: only the exact type `int (void *)` is launched.
    assert roots(r) == {"em_main_loop": "several", "lpm_main_loop": "several"}
    assert not warnings(r, "unresolved_spawn")


def test_spawn_wrapper_parameter_resolves_to_the_callers_functions(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    static long hits;
    static void *rx(void *a) { (void)a; hits++; return NULL; }
    static void *tx(void *a) { (void)a; hits++; return NULL; }
    static void *unused(void *a) { return a; }
    static void *(*volatile keep)(void *) = unused;
    static void start(pthread_t *t, void *(*fn)(void *)) { pthread_create(t, NULL, fn, NULL); }
    int main(void) {
        pthread_t t[2];
        start(&t[0], rx);
        start(&t[1], tx);
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
        return (int)hits;
    }
    """)
    assert roots(r) == {"rx": "one", "tx": "one"}
    assert var(r, "hits").cls == "shared_rw"
    assert not warnings(r, "unresolved_spawn")
    [w] = warnings(r, "unreached_function")
    assert w.loc == "prog.c:9:1" and w.message.startswith("unused runs in no thread")


def test_unresolved_spawn_takes_every_compatible_function_and_warns(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    void *lookup_entry(const char *name);  /* elsewhere, e.g. dlsym */
    static long hits;
    static void *rx(void *a) { (void)a; hits++; return NULL; }
    static void *tx(void *a) { (void)a; hits++; return NULL; }
    static int cmp(const void *a, const void *b) { return (int)((const char *)a - (const char *)b); }
    static void *table[] = { rx, tx };
    static int (*compare)(const void *, const void *) = cmp;
    int main(int argc, char **argv) {
        pthread_t t;
        void *(*entry)(void *) = (void *(*)(void *))lookup_entry(argv[0]);
        pthread_create(&t, NULL, entry, table[argc]);
        pthread_join(t, NULL);
        return (int)hits + compare(argv, argv);
    }
    """)
    assert roots(r) == {"rx": "one", "tx": "one"}  # cmp has two parameters: not a candidate
    [w] = warnings(r, "unresolved_spawn")
    assert w.loc.startswith("prog.c:16:") and "pthread_create in main" in w.message
    assert var(r, "hits").cls == "shared_rw"


def test_unresolved_void_pointer_spawn_takes_every_address_taken_function(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    void *lookup_entry(const char *name);
    static long hits;
    static void *rx(void *a) { (void)a; hits++; return NULL; }
    static void ctl(void) { hits = 0; }
    static void (*volatile reset)(void) = ctl;
    int main(int argc, char **argv) {
        pthread_t t[2];
        (void)argc;
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, lookup_entry(argv[i]), NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        reset();
        return (int)hits + (rx == 0);
    }
    """)
    assert set(roots(r)) == {"rx", "ctl"}
    assert len(warnings(r, "unresolved_spawn")) == 1


# ---- callbacks -------------------------------------------------------------------------------

def test_caller_callback_runs_in_the_calling_thread(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    static int order[64];
    static long compared;
    static int cmp(const void *a, const void *b) { compared++; return *(const int *)a - *(const int *)b; }
    static void *sorter(void *arg) { (void)arg; qsort(order, 64, sizeof order[0], cmp); return NULL; }
    int main(void) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, sorter, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return (int)compared;
    }
    """)
    compared = var(r, "compared")
    assert compared.cls == "shared_rw"
    assert {a.threads for a in compared.accesses if a.function == "cmp"} == {("sorter",)}
    assert not warnings(r, "unreached_function")


def test_pcap_loop_handler_gets_the_user_argument_and_the_callers_thread(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    #include <pcap/pcap.h>
    struct counters { long pkts; long bytes; };
    static struct counters totals;
    static long last_len;
    static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
        struct counters *c = (struct counters *)user;
        (void)bytes;
        c->pkts++;
        c->bytes += h->caplen;
        last_len = h->caplen;
    }
    static void *capture(void *arg) { pcap_loop((pcap_t *)arg, -1, on_packet, (u_char *)&totals); return NULL; }
    static void *report(void *arg) { (void)arg; printf("%ld %ld\\n", totals.pkts, last_len); return NULL; }
    int main(void) {
        char err[PCAP_ERRBUF_SIZE];
        pcap_t *p = pcap_open_offline("in.pcap", err);
        pthread_t a, b;
        pthread_create(&a, NULL, capture, p);
        pthread_create(&b, NULL, report, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        return 0;
    }
    """)
    totals = var(r, "totals.pkts")
    assert totals.cls == "shared_rw"
    assert {a.threads for a in totals.accesses if a.function == "on_packet"} == {("capture",)}
    assert var(r, "totals.bytes").cls == "thread_private"  # only the capture thread's callback uses it
    assert var(r, "last_len").cls == "shared_rw"


DPDK_HEAD = """
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_spinlock.h>
#include <rte_timer.h>
#include <rte_ethdev.h>
"""


def test_timer_callbacks_run_in_the_lcores_that_manage_timers_under_their_locks(tmp_path):
    r = analyze_source(tmp_path, DPDK_HEAD + """
    static struct rte_timer expiry_timer;
    static rte_spinlock_t table_lock = RTE_SPINLOCK_INITIALIZER;
    static unsigned long live_flows;
    static unsigned long expired;
    static volatile int quit;
    static void expire_cb(struct rte_timer *t, void *arg) {
        unsigned long *n = arg;
        (void)t;
        if (live_flows > 0) live_flows--;
        (*n)++;
    }
    static int worker(void *a) {
        (void)a;
        while (!quit) {
            rte_spinlock_lock(&table_lock);
            live_flows++;
            rte_timer_manage();
            rte_spinlock_unlock(&table_lock);
        }
        return 0;
    }
    int main(int argc, char **argv) {
        if (rte_eal_init(argc, argv) < 0) return 1;
        rte_timer_subsystem_init();
        rte_timer_init(&expiry_timer);
        rte_timer_reset(&expiry_timer, 1000, PERIODICAL, rte_lcore_id(), expire_cb, &expired);
        rte_eal_mp_remote_launch(worker, NULL, SKIP_MAIN);
        rte_eal_mp_wait_lcore();
        return (int)(live_flows + expired);
    }
    """, args=dpdk_cflags())
    flows = var(r, "live_flows")
    assert (flows.cls, flows.protection, flows.locks) == ("shared_rw", "lock", ("table_lock",))
    assert {a.threads for a in flows.accesses if a.function == "expire_cb"} == {("worker",)}
    expired = var(r, "expired")  # reached through the timer's argument
    assert (expired.cls, expired.protection) == ("shared_rw", "lock")


def test_timer_callback_without_a_manager_is_unreached(tmp_path):
    r = analyze_source(tmp_path, DPDK_HEAD + """
    static struct rte_timer tick_timer;
    static unsigned long ticks;
    static void tick_cb(struct rte_timer *t, void *arg) { (void)t; (void)arg; ticks++; }
    int main(int argc, char **argv) {
        if (rte_eal_init(argc, argv) < 0) return 1;
        rte_timer_subsystem_init();
        rte_timer_init(&tick_timer);
        rte_timer_reset(&tick_timer, 1000, PERIODICAL, rte_lcore_id(), tick_cb, NULL);
        return (int)ticks;
    }
    """, args=dpdk_cflags())
    [w] = warnings(r, "unreached_function")
    assert "tick_cb" in w.message and "no thread calls rte_timer_manage" in w.message


def test_rx_callback_runs_in_the_lcores_that_receive(tmp_path):
    r = analyze_source(tmp_path, DPDK_HEAD + """
    static uint64_t rx_seen;
    static uint64_t tx_seen;
    static volatile int quit;
    static uint16_t count_rx(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
                             uint16_t max, void *user) {
        (void)port; (void)queue; (void)pkts; (void)max; (void)user;
        rx_seen += n;
        return n;
    }
    static uint16_t count_tx(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n, void *user) {
        (void)port; (void)queue; (void)pkts; (void)user;
        tx_seen += n;
        return n;
    }
    static int lcore_main(void *a) {
        struct rte_mbuf *bufs[32];
        (void)a;
        while (!quit) {
            uint16_t n = rte_eth_rx_burst(0, (uint16_t)rte_lcore_id(), bufs, 32);
            rte_eth_tx_burst(0, (uint16_t)rte_lcore_id(), bufs, n);
        }
        return 0;
    }
    int main(int argc, char **argv) {
        if (rte_eal_init(argc, argv) < 0) return 1;
        rte_eth_add_rx_callback(0, 0, count_rx, NULL);
        rte_eth_add_tx_callback(0, 0, count_tx, NULL);
        rte_eal_mp_remote_launch(lcore_main, NULL, SKIP_MAIN);
        rte_eal_mp_wait_lcore();
        return (int)(rx_seen + tx_seen);
    }
    """, args=dpdk_cflags())
    for name, fn in (("rx_seen", "count_rx"), ("tx_seen", "count_tx")):
        v = var(r, name)
        assert (v.cls, v.protection, v.commutative) == ("shared_rw", "unprotected", True), name
        assert {a.threads for a in v.accesses if a.function == fn} == {("lcore_main",)}


def test_service_callback_inside_the_spec_struct(tmp_path):
    r = analyze_source(tmp_path, DPDK_HEAD + """
    #include <string.h>
    #include <rte_service_component.h>
    static uint64_t service_runs;
    static int run_service(void *user) { (*(uint64_t *)user)++; return 0; }
    static int worker(void *a) {
        uint32_t id = *(uint32_t *)a;
        for (int i = 0; i < 100; i++) rte_service_run_iter_on_app_lcore(id, 1);
        return 0;
    }
    int main(int argc, char **argv) {
        struct rte_service_spec spec;
        static uint32_t id;
        if (rte_eal_init(argc, argv) < 0) return 1;
        memset(&spec, 0, sizeof spec);
        spec.callback = run_service;
        spec.callback_userdata = &service_runs;
        rte_service_component_register(&spec, &id);
        rte_eal_mp_remote_launch(worker, &id, SKIP_MAIN);
        rte_eal_mp_wait_lcore();
        return (int)service_runs;
    }
    """, args=("-DALLOW_EXPERIMENTAL_API", *dpdk_cflags()))
    runs = var(r, "service_runs")
    assert runs.cls == "shared_rw"
    assert {a.threads for a in runs.accesses if a.function == "run_service"} == {("worker",)}


@pytest.mark.parametrize("joined, cls", [(True, "thread_private"), (False, "shared_rw")])
def test_exit_handler_runs_in_main_after_the_join(tmp_path, joined, cls):
    join = "pthread_join(t, NULL);" if joined else ""
    r = analyze_source(tmp_path, HEAD + f"""
    static long served;
    static void print_totals(void) {{ printf("%ld\\n", served); served = 0; }}
    static void *worker(void *a) {{ (void)a; served++; return NULL; }}
    int main(void) {{
        pthread_t t;
        atexit(print_totals);
        pthread_create(&t, NULL, worker, NULL);
        {join}
        return 0;
    }}
    """)
    served = var(r, "served")
    assert served.cls == cls
    totals = [a for a in served.accesses if a.function == "print_totals"]
    assert totals and all(a.threads == ("main",) and a.concurrent is not joined for a in totals)


def test_pthread_once_initializer_runs_in_each_calling_thread(tmp_path):
    r = analyze_source(tmp_path, HEAD + """
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    static int table_ready;
    static void init_table(void) { table_ready = 1; }
    static void *worker(void *a) { (void)a; pthread_once(&once, init_table); return NULL; }
    int main(void) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        return table_ready;
    }
    """)
    ready = var(r, "table_ready")
    assert ready.cls == "shared_rw"
    assert {a.threads for a in ready.accesses if a.function == "init_table"} == {("worker",)}


def test_callback_model_driver_field_is_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[callback]]\nnames = ["reg"]\nruns_in = "driver"\n')
    with pytest.raises(ModelError, match="'driver'"):
        load_semantics([bad])
    bad.write_text('[[callback]]\nnames = ["reg"]\nruns_in = "caller"\ndriver = ["run"]\n')
    with pytest.raises(ModelError, match="'driver'"):
        load_semantics([bad])
    bad.write_text('[[callback]]\nnames = ["reg"]\nruns_in = "driver"\ndriver = [1]\n')
    with pytest.raises(ModelError, match="list of function names"):
        load_semantics([bad])

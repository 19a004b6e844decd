"""A launch is a happens-before edge: main's access conflicts only with the roots already started."""

from __future__ import annotations

from analyzer_util import analyze_source, dpdk_cflags, var
from dpdk_example import source

SOURCE = """
#include <pthread.h>
#include <stdio.h>

static long early_cfg, late_cfg, helper_cfg, started_by_helper_cfg, grandchild_cfg, twice_cfg, loop_cfg;

static void *grandchild(void *a) { (void)a; printf("%ld\\n", grandchild_cfg); return 0; }
static void *child(void *a) {
    pthread_t t;
    (void)a;
    pthread_create(&t, 0, grandchild, 0);
    pthread_join(t, 0);
    return 0;
}
static void *early(void *a) { (void)a; printf("%ld %ld\\n", early_cfg, loop_cfg); return 0; }
static void *late(void *a) { (void)a; printf("%ld %ld %ld\\n", late_cfg, helper_cfg, twice_cfg); return 0; }
static void *by_helper(void *a) { (void)a; printf("%ld\\n", started_by_helper_cfg); return 0; }

static pthread_t th[8];
static void set_helper_cfg(long v) { helper_cfg = v; }
static void start_helper_thread(void) { pthread_create(&th[7], 0, by_helper, 0); }

int main(void) {
    int i;
    early_cfg = 1;
    for (i = 0; i < 2; i++) {
        loop_cfg = i;
        pthread_create(&th[i], 0, early, 0);
    }
    pthread_create(&th[2], 0, child, 0);
    pthread_create(&th[3], 0, late, 0);
    start_helper_thread();
    late_cfg = 2;
    set_helper_cfg(3);
    started_by_helper_cfg = 4;
    grandchild_cfg = 5;
    twice_cfg = 6;
    pthread_create(&th[4], 0, late, 0);
    for (i = 0; i < 8; i++) pthread_join(th[i], 0);
    printf("%ld %ld %ld %ld %ld %ld %ld\\n", early_cfg, late_cfg, helper_cfg, started_by_helper_cfg,
           grandchild_cfg, twice_cfg, loop_cfg);
    return 0;
}
"""


def test_write_before_the_only_readers_launch_is_read_only(tmp_path):
    r = analyze_source(tmp_path, SOURCE.replace("pthread_create(&th[3], 0, late, 0);\n", ""))
    assert var(r, "late_cfg").cls == "shared_ro"  # written while only early and child run
    assert var(r, "helper_cfg").cls == "shared_ro"  # the same, from a function main calls
    assert var(r, "early_cfg").cls == "shared_ro"  # before the first launch, as always


def test_write_after_a_launch_of_a_reader_stays_shared(tmp_path):
    r = analyze_source(tmp_path, SOURCE)
    # late is also started before the write (th[3]): its first instance may be reading
    assert var(r, "late_cfg").cls == "shared_rw"
    assert var(r, "helper_cfg").cls == "shared_rw"
    assert var(r, "twice_cfg").cls == "shared_rw"
    # started through a function main called earlier, and by a thread main started earlier
    assert var(r, "started_by_helper_cfg").cls == "shared_rw"
    assert var(r, "grandchild_cfg").cls == "shared_rw"
    # written in the spawn loop before the spawn: threads of earlier iterations read it
    assert var(r, "loop_cfg").cls == "shared_rw"


def test_packet_ordering_send_args_is_read_only_to_the_send_lcore(tmp_path):
    """DPDK's packet_ordering writes send_args.ring_in after launching the workers and before
    launching the send lcore, the only lcore that reads it: no ordered region on its every poll."""
    r = analyze_source(tmp_path, source("packet_ordering/main.c").read_text(), name="main.c",
                       args=(*dpdk_cflags(), "-DALLOW_EXPERIMENTAL_API"))
    ring_in = var(r, "send_args.ring_in")
    assert ring_in.cls == "shared_ro"
    assert any(a.function == "main" and a.mode == "write" for a in ring_in.accesses)
    assert any(a.function == "send_thread" and a.mode == "read" for a in ring_in.accesses)

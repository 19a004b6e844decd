/*
 * ftmb-test-fwd: a small multi-threaded forwarder written directly against the ABI, as the
 * rewriter would emit it. Worker i polls input queue i and sends every packet out unchanged,
 * touching shared state on the way: a packet counter under a mutex, a byte counter updated
 * atomically, a per-queue "last seen" table in an ordered region, and the virtual clock.
 *
 * usage: ftmb-test-fwd QUEUES    (mode and session come from FTMB_MODE / FTMB_SESSION)
 * Prints "forwarded N packets" on stdout at the end, and per worker a digest of every shared value
 * it observed (counter values, atomic results, times): a replay must print the same digests.
 * FTMB_TEST_FWD_STAMP=1 writes the queue into each packet's last byte; =pid writes the process id
 * read with getpid() and not logged (a per-process value the instrumentation missed: a replay in
 * another process sends other bytes). FTMB_TEST_FWD_FOREVER=1 polls on after the input ends, as a
 * DPDK application's endless receive loop does (it never exits by itself). FTMB_TEST_FWD_SPIN=1
 * polls without the sched_yield between empty receives, as a DPDK lcore does.
 * FTMB_TEST_FWD_SLOW_EXIT_MS=N: 100 ms after starting the workers main starts one more thread,
 * which returns at once but whose exit takes N ms (a TLS destructor that sleeps), and joins it
 * before the workers.
 * FTMB_TEST_FWD_BATCH=Q: the worker of queue Q runs at SCHED_BATCH; each worker's scheduling
 * policy at its end is printed ("policy Q N": a checkpoint's boost must give it back).
 * Exit: 0 done, 1 bad arguments or set-up.
 */
#define _GNU_SOURCE /* SCHED_BATCH */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "ftmb/ftmb.h"

enum { OBJ_PACKETS = 1, OBJ_BYTES = 2, OBJ_LAST_SEEN = 3 };

static pthread_mutex_t packets_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long packets;
static unsigned long long bytes;
static struct {
    long time;
    unsigned queue;
} last_seen;
static unsigned long long digest[FTMB_MAX_THREADS];
static int stamp_queue;
static int stamp_pid;
static int forever;
static int spin;
static unsigned char *state; /* FTMB_TEST_FWD_STATE_MIB: per-thread-written state in the arena */
static size_t state_len;

static unsigned long long mix(unsigned long long h, unsigned long long v)
{
    return (h ^ v) * 0x100000001b3ull;
}

static int batch_queue = -1; /* FTMB_TEST_FWD_BATCH=Q: the worker of queue Q runs at SCHED_BATCH */
static int policy_at_end[FTMB_MAX_THREADS];

static void *worker(void *arg)
{
    unsigned queue = (unsigned)(unsigned long)arg;
    unsigned long long h = 0xcbf29ce484222325ull;
    struct ftmb_pkt *pkts[32];
    if ((int)queue == batch_queue) {
        struct sched_param p = {.sched_priority = 0};
        if (sched_setscheduler(0, SCHED_BATCH, &p) != 0)
            perror("ftmb-test-fwd: SCHED_BATCH");
    }
    for (;;) {
        ftmb_u16 n = ftmb_pkt_rx_burst((ftmb_u16)queue, pkts, 32);
        if (n == 0) {
            if (!forever && ftmb_input_done((ftmb_u16)queue))
                break;
            if (!spin)
                sched_yield(); /* more threads than cores: let the loggers run */
            continue;
        }
        for (ftmb_u16 i = 0; i < n; i++) {
            ftmb_pthread_mutex_lock(&packets_lock, OBJ_PACKETS, 1);
            h = mix(h, packets++);
            ftmb_pthread_mutex_unlock(&packets_lock, OBJ_PACKETS, 2);
            h = mix(h, ftmb_atomic_fetch_add_8(&bytes, ftmb_pkt_len(pkts[i]), __ATOMIC_RELAXED, OBJ_BYTES, 3));
            if (state) /* one page written per packet, the queue's own bytes: copy-on-write after a fork */
                state[((h >> 7) % (state_len >> 12)) * 4096 + (size_t)queue] ^= 1;
            ftmb_ordered_begin(OBJ_LAST_SEEN, 4);
            h = mix(h, (unsigned long long)last_seen.time << 8 | last_seen.queue);
            last_seen.time = ftmb_time(NULL);
            last_seen.queue = queue;
            ftmb_ordered_end(OBJ_LAST_SEEN);
            ftmb_u32 len = ftmb_pkt_len(pkts[i]);
            if (stamp_queue && len)
                ((unsigned char *)ftmb_pkt_data(pkts[i]))[len - 1] = (unsigned char)queue;
            if (stamp_pid && len)
                ((unsigned char *)ftmb_pkt_data(pkts[i]))[len - 1] = (unsigned char)getpid();
        }
        ftmb_pkt_tx_burst((ftmb_u16)queue, pkts, n);
    }
    digest[queue] = h;
    policy_at_end[queue] = sched_getscheduler(0);
    return NULL;
}

static long slow_exit_ms;
static pthread_key_t slow_key;

static void slow_destructor(void *v)
{
    (void)v;
    struct timespec ts = {slow_exit_ms / 1000, (slow_exit_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *slow_exit(void *arg)
{
    pthread_setspecific(slow_key, arg);
    return NULL;
}

/* The thread roots, registered the way the rewriter's constructor registers an instrumented file's. */
static void (*const roots[])(void) = {(void (*)(void))worker, (void (*)(void))slow_exit};
__attribute__((constructor)) static void register_roots(void) { ftmb_register_file(NULL, NULL, 0, roots, 2); }

int main(int argc, char **argv)
{
    char *end = NULL;
    long queues = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || *end || queues < 1 || queues >= FTMB_MAX_THREADS) {
        fprintf(stderr, "usage: ftmb-test-fwd QUEUES (1 to %d)\n", FTMB_MAX_THREADS - 1);
        return 1;
    }
    if (ftmb_init() != 0)
        return 1;
    const char *state_mib = getenv("FTMB_TEST_FWD_STATE_MIB"); /* checkpoint benchmarks: state size */
    if (state_mib && *state_mib) {
        state_len = (size_t)strtoull(state_mib, NULL, 10) << 20;
        state = state_len ? ftmb_state_alloc(state_len) : NULL;
        if (state_len && !state) {
            fprintf(stderr, "ftmb-test-fwd: cannot allocate %s MiB of state\n", state_mib);
            return 1;
        }
        if (state)
            memset(state, 1, state_len);
    }
    const char *stamp = getenv("FTMB_TEST_FWD_STAMP");
    stamp_queue = stamp && strcmp(stamp, "1") == 0;
    stamp_pid = stamp && strcmp(stamp, "pid") == 0;
    const char *ever = getenv("FTMB_TEST_FWD_FOREVER");
    forever = ever && strcmp(ever, "1") == 0;
    const char *spinning = getenv("FTMB_TEST_FWD_SPIN");
    spin = spinning && strcmp(spinning, "1") == 0;
    const char *late = getenv("FTMB_TEST_FWD_START_MS"); /* a slow start after attaching (a DPDK EAL's) */
    if (late && *late) {
        long ms = strtol(late, NULL, 10);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    const char *batch = getenv("FTMB_TEST_FWD_BATCH");
    batch_queue = batch && *batch ? (int)strtol(batch, NULL, 10) : -1;
    const char *slow = getenv("FTMB_TEST_FWD_SLOW_EXIT_MS");
    slow_exit_ms = slow && *slow ? strtol(slow, NULL, 10) : 0;
    pthread_t th[FTMB_MAX_THREADS];
    for (long q = 0; q < queues; q++)
        if (ftmb_pthread_create(&th[q], NULL, worker, (void *)q) != 0) {
            fprintf(stderr, "ftmb-test-fwd: cannot start worker %ld\n", q);
            return 1;
        }
    if (slow_exit_ms > 0) {
        struct timespec ts = {0, 100000000L}; /* (a checkpoint's signal may end it early: no matter) */
        nanosleep(&ts, NULL);
        pthread_t slow_thread;
        if (pthread_key_create(&slow_key, slow_destructor) != 0 ||
            ftmb_pthread_create(&slow_thread, NULL, slow_exit, &slow_key) != 0) {
            fprintf(stderr, "ftmb-test-fwd: cannot start the slow-exit thread\n");
            return 1;
        }
        pthread_join(slow_thread, NULL);
    }
    for (long q = 0; q < queues; q++)
        pthread_join(th[q], NULL);
    ftmb_exit();
    printf("forwarded %llu packets (%llu bytes)\n", packets, bytes);
    for (long q = 0; q < queues; q++)
        printf("digest %ld %016llx\n", q, digest[q]);
    for (long q = 0; q < queues; q++)
        printf("policy %ld %d\n", q, policy_at_end[q]);
    return 0;
}

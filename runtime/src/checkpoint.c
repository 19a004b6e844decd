/*
 * Checkpoints (record mode, FTMB_CHECKPOINT_MS=N): every N ms the runtime's coordinator thread
 * quiesces every thread that receives input at a packet boundary (the top of its next receive:
 * the previous burst is processed and sent), fork()s, and resumes them; the child writes the
 * snapshot while the parent runs on (copy-on-write).
 *
 * The snapshot holds the executable's writable data (.data and .bss, from __data_start to _end:
 * the program's globals and statics and the runtime's own state, which includes each thread's
 * input positions, record and output counts and virtual time), and the arena's used part (the
 * per-object sequence words and each thread's heap up to its bump pointer). It is written to
 * FTMB_CHECKPOINT_DIR (default /dev/shm) as ftmb-<session>.ckpt, by a temporary name and renamed;
 * removed at exit unless FTMB_CHECKPOINT_KEEP=1. At exit one line on stderr gives the count and
 * the pause (request to resume: quiescing plus fork) and the fork's share, p50 and max.
 *
 * Not covered, and why restore is not built on it yet: DPDK's own memory (rte_hash, rte_ring,
 * rte_malloc'd objects the rewriter did not move into the arena, mbufs) is MAP_SHARED, so the
 * fork child sees it change under it. The failover backup therefore replays from the start (the
 * loggers keep everything), and checkpoints do not advance retain_from yet; they measure the
 * pause and produce the snapshot a restore would load.
 *
 * Ground rules: the per-packet cost is one relaxed load of the request epoch in each receive; the
 * coordinator is the runtime's own thread and never touches program state.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

extern char __data_start[] __attribute__((weak));
extern char _end[] __attribute__((weak));

#define CKPT_MAGIC 0x54504b43424d5446ull /* "FTMBCKPT" */
#define PARK_TIMEOUT_NS 100000000ull     /* a receiver that does not park within this: skip the round */
#define MAX_SAMPLES 65536

struct _ftmb_ckpt_state _ftmb_ckpt;

static struct {
    uint64_t interval_ns;
    char path[512], tmp[520];
    pthread_t thread;
    int running;
    pid_t child;
    uint64_t taken, skipped, bytes;
    uint64_t pause_ns[MAX_SAMPLES];
    uint64_t fork_ns[MAX_SAMPLES];
} ck;

/* A receiving thread: park until the coordinator has forked (called from the receive path). */
void _ftmb_ckpt_park(struct _ftmb_thread *t)
{
    /* Acquire pairs with the coordinator's release of req: nothing to read through it, but the
     * park count below must be for this epoch. */
    uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_acquire);
    t->ckpt_seen = e;
    /* Release: this thread's writes so far happen before the fork (pairs with the coordinator's
     * acquire load of parked). */
    atomic_fetch_add_explicit(&_ftmb_ckpt.parked, 1, memory_order_release);
    /* Acquire pairs with the coordinator's release of resume. */
    for (unsigned spins = 0; atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_acquire) < e; spins++)
        _ftmb_backoff(spins);
}

void _ftmb_ckpt_register(struct _ftmb_thread *t)
{
    t->ckpt_receiver = 1;
    /* Relaxed: the count is re-read by the coordinator each round; a thread registered late is
     * counted from the next round (its seen epoch is the current one). */
    t->ckpt_seen = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_relaxed);
    atomic_fetch_add_explicit(&_ftmb_ckpt.receivers, 1, memory_order_relaxed);
}

static int write_all(int fd, const void *p, uint64_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w <= 0)
            return -1;
        c += w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* In the fork child: only async-signal-safe calls (open, write, rename, _exit). */
static void write_snapshot(uint64_t epoch)
{
    struct _ftmb_span r[2 + FTMB_MAX_THREADS];
    unsigned nr = 0;
    if (__data_start && _end)
        r[nr++] = (struct _ftmb_span){(uint64_t)(uintptr_t)__data_start, (uint64_t)(_end - __data_start)};
    nr += _ftmb_arena_used(&r[nr], FTMB_MAX_THREADS + 1);
    int fd = open(ck.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        _exit(1);
    uint64_t hdr[4] = {CKPT_MAGIC, epoch, (uint64_t)FTMB_ABI_VERSION, nr};
    int bad = write_all(fd, hdr, sizeof hdr) || write_all(fd, r, nr * sizeof r[0]);
    for (unsigned i = 0; i < nr && !bad; i++)
        bad = write_all(fd, (const void *)(uintptr_t)r[i].addr, r[i].len);
    if (close(fd) != 0 || bad || rename(ck.tmp, ck.path) != 0)
        _exit(1);
    _exit(0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *coordinator(void *arg)
{
    (void)arg;
    struct timespec nap = {(time_t)(ck.interval_ns / 1000000000ull), (long)(ck.interval_ns % 1000000000ull)};
    for (;;) {
        nanosleep(&nap, NULL);
        if (atomic_load_explicit(&_ftmb_rt.exited, memory_order_relaxed) ||
            _ftmb_mode_now != FTMB_MODE_RECORD)
            break;
        if (ck.child > 0) { /* the previous snapshot is still being written: skip this round */
            if (waitpid(ck.child, NULL, WNOHANG) == 0) {
                ck.skipped++;
                continue;
            }
            ck.child = 0;
        }
        uint32_t need = atomic_load_explicit(&_ftmb_ckpt.receivers, memory_order_relaxed);
        if (!need)
            continue;
        uint64_t t0 = _ftmb_now_ns(CLOCK_MONOTONIC);
        atomic_store_explicit(&_ftmb_ckpt.parked, 0, memory_order_relaxed);
        /* Relaxed read: only this thread writes req. Release: pairs with the park's acquire. */
        uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_relaxed) + 1;
        atomic_store_explicit(&_ftmb_ckpt.req, e, memory_order_release);
        int all = 1;
        for (unsigned spins = 0; atomic_load_explicit(&_ftmb_ckpt.parked, memory_order_acquire) < need; spins++) {
            _ftmb_backoff(spins);
            if ((spins & 255) == 255 && _ftmb_now_ns(CLOCK_MONOTONIC) - t0 > PARK_TIMEOUT_NS) {
                all = 0; /* a receiver is blocked elsewhere (or finished): no snapshot this round */
                break;
            }
        }
        uint64_t t1 = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (all) {
            pid_t pid = fork();
            if (pid == 0)
                write_snapshot(e);
            ck.child = pid > 0 ? pid : 0;
        }
        /* Release: pairs with the parked threads' acquire; they run on from here. */
        atomic_store_explicit(&_ftmb_ckpt.resume, e, memory_order_release);
        uint64_t pause = _ftmb_now_ns(CLOCK_MONOTONIC) - t0;
        if (all && ck.child) {
            if (ck.taken < MAX_SAMPLES) {
                ck.pause_ns[ck.taken] = pause;
                ck.fork_ns[ck.taken] = _ftmb_now_ns(CLOCK_MONOTONIC) - t1;
            }
            ck.taken++;
        } else
            ck.skipped++;
    }
    return NULL;
}

int _ftmb_ckpt_start(void)
{
    const char *ms = getenv("FTMB_CHECKPOINT_MS");
    if (!ms || !*ms || _ftmb_mode_now != FTMB_MODE_RECORD)
        return 0;
    char *end;
    long v = strtol(ms, &end, 10);
    if (*end || v < 1 || v > 3600000) {
        fprintf(stderr, "ftmb: FTMB_CHECKPOINT_MS=%s: expected milliseconds from 1 to 3600000\n", ms);
        return -1;
    }
    ck.interval_ns = (uint64_t)v * 1000000ull;
    const char *dir = getenv("FTMB_CHECKPOINT_DIR");
    snprintf(ck.path, sizeof ck.path, "%s/ftmb-%s.ckpt", dir && *dir ? dir : "/dev/shm",
             _ftmb_rt.session[0] ? _ftmb_rt.session : "nosession");
    snprintf(ck.tmp, sizeof ck.tmp, "%s.tmp", ck.path);
    if (pthread_create(&ck.thread, NULL, coordinator, NULL) != 0) {
        fprintf(stderr, "ftmb: cannot start the checkpoint thread\n");
        return -1;
    }
    ck.running = 1;
    return 0;
}

/* At exit: stop the coordinator, wait for the last snapshot, report the pauses. */
void _ftmb_ckpt_stop(void)
{
    if (!ck.running)
        return;
    ck.running = 0;
    pthread_join(ck.thread, NULL);
    if (ck.child > 0)
        waitpid(ck.child, NULL, 0);
    uint64_t n = ck.taken < MAX_SAMPLES ? ck.taken : MAX_SAMPLES;
    double p50 = 0, max = 0, fork50 = 0, fmax = 0;
    if (n) {
        qsort(ck.pause_ns, n, sizeof ck.pause_ns[0], cmp_u64);
        qsort(ck.fork_ns, n, sizeof ck.fork_ns[0], cmp_u64);
        p50 = (double)ck.pause_ns[n / 2] / 1000.0;
        max = (double)ck.pause_ns[n - 1] / 1000.0;
        fork50 = (double)ck.fork_ns[n / 2] / 1000.0;
        fmax = (double)ck.fork_ns[n - 1] / 1000.0;
    }
    uint64_t bytes = 0;
    struct _ftmb_span r[1 + FTMB_MAX_THREADS];
    unsigned nr = _ftmb_arena_used(r, FTMB_MAX_THREADS + 1);
    for (unsigned i = 0; i < nr; i++)
        bytes += r[i].len;
    if (__data_start && _end)
        bytes += (uint64_t)(_end - __data_start);
    const char *keep = getenv("FTMB_CHECKPOINT_KEEP");
    if (!(keep && *keep == '1')) /* nothing restores from it yet (see the top): do not leave it */
        unlink(ck.path);
    fprintf(stderr,
            "ftmb: checkpoints %llu skipped %llu pause_us p50 %.1f max %.1f fork_us p50 %.1f max %.1f "
            "state_bytes %llu\n",
            (unsigned long long)ck.taken, (unsigned long long)ck.skipped, p50, max, fork50, fmax,
            (unsigned long long)bytes);
}

/*
 * ns per PAL and per transmit stamp, through the public ABI (built by `make -C runtime bench`): held,
 * ordered and atomic benchmarks run ftmb/ftmb.h's inline fast path, as a rewritten program does.
 *
 * usage: bench_pal [ITERS] [REPS] [FILTER]   prints one line per benchmark (FILTER: the one of
 *                                           that name, else those whose name contains it):
 *   <name> <min> <median> <max>        ns per operation over REPS repetitions of ITERS operations
 *        bench_pal --list                   each benchmark's name and the function that runs it once
 *                                           (ITERS operations): bench/runtime/pal_cost.py counts its
 *                                           instructions under callgrind
 *
 * Each benchmark runs in a forked child with its own session (both regions made here) and its own
 * mode. Record rings hold 4096 records like the floor loop's ring, and there is no output logger:
 * every 1024 operations the benchmark itself marks its ring consumed (one store), so the figure is
 * the producer's cost alone, as in the floor loops. "2t" benchmarks run two threads on one shared object and
 * report wall time per operation per thread. The benchmark thread counts as one that receives input,
 * as a packet-processing thread does after its first receive; "_control_thread" benchmarks measure a
 * thread that does not (its operations carry the checkpoints' in_op mark, rt.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"
#include "rt.h"

static uint64_t iters = 2000000;
static int reps = 7;
static char session[64];
static struct _ftmb_in_region *in_r;
static struct _ftmb_out_region *out_r;

static double now_ns(void) { return (double)_ftmb_now_ns(CLOCK_MONOTONIC); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the floor: the bare loops the issue quotes ------------------------------------------------ */

struct floor_ring {
    alignas(64) _Atomic uint64_t count;
    alignas(64) uint64_t seq;
    struct _ftmb_record slots[4096];
};
static struct floor_ring fr;

static void floor_plain(void)
{
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t c = atomic_load_explicit(&fr.count, memory_order_relaxed);
        uint64_t s = fr.seq++;
        fr.slots[c & 4095] = (struct _ftmb_record){7, s};
        atomic_store_explicit(&fr.count, c + 1, memory_order_release);
    }
}

static _Atomic uint64_t floor_word;
static void floor_atomic(void)
{
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t c = atomic_load_explicit(&fr.count, memory_order_relaxed);
        uint64_t s = atomic_fetch_add_explicit(&floor_word, 1, memory_order_relaxed);
        fr.slots[c & 4095] = (struct _ftmb_record){7, s};
        atomic_store_explicit(&fr.count, c + 1, memory_order_release);
    }
}

/* ---- through the ABI ------------------------------------------------------------------------------ */

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static uint64_t shared_word;

/* Stand-in for the output logger: mark everything this thread logged as consumed. */
static void drain_own(void)
{
    struct _ftmb_thread *t = _ftmb_self;
    if (t && t->has_rings)
        atomic_store_explicit(&t->rec.ctl->tail, t->rec.local, memory_order_release);
}

#define CHUNKED(body)                                                                                        \
    for (uint64_t done = 0; done < iters; done += 1024) {                                                    \
        for (int k = 0; k < 1024; k++) {                                                                     \
            body;                                                                                            \
        }                                                                                                    \
        drain_own();                                                                                         \
    }

static void held(void) { CHUNKED(ftmb_held_access(1, 1)); }

static void held_control_thread(void)
{
    _ftmb_me()->ckpt_receiver = 0;
    _ftmb_rec_fast_refresh(_ftmb_me());
    held();
}

static void ordered(void)
{
    CHUNKED(ftmb_ordered_begin(2, 2); shared_word++; ftmb_ordered_end(2));
}

static void atomic_add(void) { CHUNKED(ftmb_atomic_fetch_add_8(&shared_word, 1, __ATOMIC_SEQ_CST, 3, 3)); }

static void raw_atomic_add(void)
{
    for (uint64_t i = 0; i < iters; i++)
        __atomic_fetch_add(&shared_word, 1, __ATOMIC_SEQ_CST);
}

static void mutex_wrapped(void)
{
    CHUNKED(ftmb_pthread_mutex_lock(&mtx, 4, 4); shared_word++; ftmb_pthread_mutex_unlock(&mtx, 4, 5));
}

static void mutex_raw(void)
{
    for (uint64_t i = 0; i < iters; i++) {
        pthread_mutex_lock(&mtx);
        shared_word++;
        pthread_mutex_unlock(&mtx);
    }
}

static void tx_stamp(void)
{
    /* the vector read alone, with every thread index of the session handed out */
    for (uint64_t i = 0; i < iters; i++)
        _ftmb_tx_begin(0);
}

static void tx_packet(void)
{
    /* a whole 64-byte transmit: stamp, copy into the output ring; the ring is drained here */
    struct ftmb_pkt *p = ftmb_pkt_alloc();
    ftmb_pkt_set_len(p, 64);
    struct _ftmb_ring c;
    _ftmb_ring_attach(&c, out_r, &out_r->thread[0].out, 0);
    for (uint64_t i = 0; i < iters; i++) {
        if (_ftmb_tx_begin(0))
            _ftmb_tx_put(0, ftmb_pkt_data(p), 64, 0);
        uint64_t n = _ftmb_ring_refresh(&c);
        if (n > 512)
            _ftmb_ring_consume(&c, n);
    }
}

/* two threads on one object: a helper thread (spawned once) runs the same body in step */
static void (*two_body)(void);
static pthread_barrier_t start_b, end_b;
static pthread_t helper;
static int helper_started;

static void *two_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_barrier_wait(&start_b);
        two_body();
        pthread_barrier_wait(&end_b);
    }
    return NULL;
}

static void two(void (*body)(void))
{
    two_body = body;
    if (!helper_started) {
        pthread_barrier_init(&start_b, NULL, 2);
        pthread_barrier_init(&end_b, NULL, 2);
        ftmb_pthread_create(&helper, NULL, two_thread, NULL);
        helper_started = 1;
    }
    pthread_barrier_wait(&start_b);
    body();
    pthread_barrier_wait(&end_b);
}

static void ordered_2t(void) { two(ordered); }
static void atomic_2t(void) { two(atomic_add); }
static void mutex_2t(void) { two(mutex_wrapped); }

struct bench {
    const char *name;
    const char *mode; /* FTMB_MODE, NULL: no runtime */
    void (*fn)(void);
    const char *fn_name; /* its symbol: what an instruction counter is told to count (--list) */
    int threads_registered;
};
#define B(name, mode, fn, threads) {name, mode, fn, #fn, threads}

static const struct bench benches[] = {
    B("floor_plain_seq", NULL, floor_plain, 0),
    B("floor_atomic_seq", NULL, floor_atomic, 0),
    B("held_pal_record", "record", held, 0),
    B("held_pal_passthrough", "passthrough", held, 0),
    B("held_pal_record_control_thread", "record", held_control_thread, 0),
    B("ordered_record", "record", ordered, 0),
    B("ordered_passthrough", "passthrough", ordered, 0),
    B("atomic_add_record", "record", atomic_add, 0),
    B("atomic_add_passthrough", "passthrough", atomic_add, 0),
    B("atomic_add_raw", NULL, raw_atomic_add, 0),
    B("mutex_record", "record", mutex_wrapped, 0),
    B("mutex_passthrough", "passthrough", mutex_wrapped, 0),
    B("mutex_raw", NULL, mutex_raw, 0),
    B("tx_stamp_4threads_record", "record", tx_stamp, 4),
    B("tx_stamp_16threads_record", "record", tx_stamp, 16),
    B("tx_packet64_record", "record", tx_packet, 4),
    B("tx_packet64_passthrough", "passthrough", tx_packet, 4),
    B("ordered_2t_record", "record", ordered_2t, 0),
    B("ordered_2t_passthrough", "passthrough", ordered_2t, 0),
    B("atomic_add_2t_record", "record", atomic_2t, 0),
    B("atomic_add_2t_passthrough", "passthrough", atomic_2t, 0),
    B("mutex_2t_record", "record", mutex_2t, 0),
    B("mutex_2t_passthrough", "passthrough", mutex_2t, 0),
};

/* In a child: set up the session and mode, run the benchmark REPS times, print the figures. */
static int run_bench(const struct bench *b)
{
    if (b->mode) {
        snprintf(session, sizeof session, "bench-%d", (int)getpid());
        size_t in_size = _ftmb_in_region_size(1, 64);
        uint64_t rec_cap = 4096;
        uint32_t nthreads = b->threads_registered > 2 ? (uint32_t)b->threads_registered : 2;
        size_t out_size = _ftmb_out_region_size(nthreads, (uint32_t)rec_cap, 1024);
        in_r = _ftmb_region_create(session, "in", in_size);
        out_r = _ftmb_region_create(session, "out", out_size);
        if (!in_r || !out_r)
            return 1;
        _ftmb_in_region_init(in_r, in_size, 1, 64, 1000000000ull, 100000);
        _ftmb_out_region_init(out_r, out_size, nthreads, (uint32_t)rec_cap, 1024);
        _ftmb_region_set_ready(in_r);
        _ftmb_region_set_ready(out_r);
        _ftmb_region_heartbeat(in_r);
        _ftmb_region_heartbeat(out_r);
        setenv("FTMB_SESSION", session, 1);
        setenv("FTMB_MODE", b->mode, 1);
        setenv("FTMB_PEER_TIMEOUT_MS", "3600000", 1);
        int rc = ftmb_init();
        /* mapped by everyone who needs them: the names can go now, whatever happens next */
        _ftmb_region_unlink(session, "in");
        _ftmb_region_unlink(session, "out");
        if (rc != 0)
            return 1;
        for (int i = 1; i < b->threads_registered; i++)
            _ftmb_claim_thread_index();
        _ftmb_ckpt_register(_ftmb_me()); /* see the top */
        _ftmb_rec_fast_refresh(_ftmb_me()); /* what its receives do */
    }
    double per_op[64];
    int r = reps < 64 ? reps : 64;
    for (int i = 0; i < r; i++) {
        double t0 = now_ns();
        b->fn();
        per_op[i] = (now_ns() - t0) / (double)iters;
    }
    qsort(per_op, (size_t)r, sizeof per_op[0], cmp_double);
    printf("%-28s %8.2f %8.2f %8.2f\n", b->name, per_op[0], per_op[r / 2], per_op[r - 1]);
    fflush(stdout);
    return 0;
}

/* The thread roots, registered the way the rewriter's constructor registers an instrumented file's. */
static void (*const roots[])(void) = {(void (*)(void))two_thread};
__attribute__((constructor)) static void register_roots(void) { ftmb_register_file(NULL, NULL, 0, roots, 1); }

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
            printf("%s %s\n", benches[i].name, benches[i].fn_name);
        return 0;
    }
    if (argc > 1 && (iters = strtoull(argv[1], NULL, 0)) == 0) {
        fprintf(stderr, "bench_pal: ITERS %s: expected a positive integer\n", argv[1]);
        return 1;
    }
    if (argc > 2 && ((reps = atoi(argv[2])) < 1 || reps > 64)) {
        fprintf(stderr, "bench_pal: REPS %s: expected 1 to 64\n", argv[2]);
        return 1;
    }
    const char *only = argc > 3 ? argv[3] : NULL;
    int exact = 0; /* a FILTER that is a benchmark's whole name selects that one alone */
    for (size_t i = 0; only && i < sizeof benches / sizeof benches[0]; i++)
        exact |= strcmp(benches[i].name, only) == 0;
    printf("# benchmark                    min(ns)  median   max     (%llu ops x %d reps)\n",
           (unsigned long long)iters, reps);
    int failed = 0;
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) {
        if (only && (exact ? strcmp(benches[i].name, only) != 0 : !strstr(benches[i].name, only)))
            continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(run_bench(&benches[i]));
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "bench_pal: %s failed\n", benches[i].name);
            failed = 1;
        }
    }
    return failed;
}

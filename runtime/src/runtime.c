/*
 * The master runtime: modes, thread indexes, the record path (PALs into per-thread streams) and
 * the replay path (each ordered access waits for its logged turn), locks, atomics, and
 * nondeterministic values.
 *
 * Time model. Inside a session, time is virtual: a thread's clock is the arrival time (the input
 * logger's CLOCK_REALTIME) of the latest input entry it received, and the input logger sends a
 * tick entry to every queue that has been idle for tick_ns, so a busy-poll loop sees time move
 * without writing a record per empty poll: the entries it consumes are already logged by their
 * receive record. Every clock (time, clock_gettime for any clock id, gettimeofday, rte_rdtsc)
 * reads this one time base; rte_rdtsc() returns it scaled by the session's tsc_hz. A thread that
 * has not received any input yet (a control thread) reads the real CLOCK_REALTIME and logs each
 * value. In passthrough mode every clock is the real one. Once a queue has delivered its EOF
 * entry, each further receive of it advances the receiving thread's time by _FTMB_EOF_TICK_NS:
 * time goes on after the input ends, as many ticks as the thread polls, which replay repeats (the
 * log counts the thread's quiet operations, see below).
 *
 * Quiet operations. An idle busy-poll iteration logs nothing: a receive that consumes no entry, an
 * external read that sees what the thread's previous external read of the same variable saw, and a
 * quiet-capable ordered call that returned its quiet result (an empty ring dequeue, see
 * ftmb_ordered_quiet_begin) are quiet; each thread counts them, and its next loud record (an RX, an
 * external read with a new value, an ORDQ) carries the count (ftmb_internal.h). Replay hands out
 * exactly that many quiet results (nothing received, the same value, the call not made) before it
 * takes the loud record, so every receive, external read and quiet-capable call returns what it
 * returned in the record, and iteration counts, hence the times derived from them after the
 * input's end, are reproduced. A completed sleep is quiet too (see "Sleeps" below): replay does not
 * sleep. In record mode a poll that finds nothing first waits a little for input (the dwell, see
 * _ftmb_dwell), so an idle thread makes, and its replay repeats, few quiet operations.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

struct _ftmb_runtime _ftmb_rt;
struct _ftmb_thread _ftmb_threads[FTMB_MAX_THREADS];
_Thread_local struct _ftmb_thread *_ftmb_self __attribute__((tls_model("initial-exec")));
__thread struct ftmb_fast *ftmb_fast_thread __attribute__((tls_model("initial-exec")));
int _ftmb_mode_now = FTMB_MODE_PASSTHROUGH;

static const char *const mode_names[] = {"passthrough", "record", "replay"};

void _ftmb_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ftmb: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void _ftmb_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waiting for a peer: spin briefly, then yield the CPU (more threads than cores must progress). */
void _ftmb_backoff(unsigned spins)
{
    if (spins < 64)
        _ftmb_cpu_relax();
    else
        sched_yield();
}

/* ---- thread indexes ------------------------------------------------------------------------ */

/* Tell the output logger that thread indexes below n exist. */
static void publish_nthreads(struct _ftmb_out_region *out, uint32_t n)
{
    /* N1: release, pairs with the output logger's acquire load of nthreads and makes the count
     * visible before any record of the new thread (claimed in the spawner, before it runs). */
    uint32_t cur = atomic_load_explicit(&out->nthreads, memory_order_relaxed);
    while (cur < n && !atomic_compare_exchange_weak_explicit(&out->nthreads, &cur, n, memory_order_release,
                                                             memory_order_relaxed))
        ;
}

uint32_t _ftmb_claim_thread_index(void)
{
    /* Relaxed: indexes are handed out by spawn calls, whose order the program determines. */
    uint32_t idx = atomic_fetch_add_explicit(&_ftmb_rt.next_index, 1, memory_order_relaxed);
    if (idx >= FTMB_MAX_THREADS)
        _ftmb_fatal("more than %d threads; FTMB_MAX_THREADS is the limit", FTMB_MAX_THREADS);
    struct _ftmb_out_region *out = _ftmb_rt.out;
    if (out) {
        if (idx >= out->max_threads)
            _ftmb_fatal("thread index %u but the output logger of session %s has rings for %u threads; start "
                        "it with --threads %u or more",
                        idx, _ftmb_rt.session, out->max_threads, idx + 1);
        publish_nthreads(out, idx + 1);
    }
    return idx;
}

void _ftmb_adopt_thread_index(uint32_t idx)
{
    _ftmb_live_hold(_ftmb_rt.out, idx, _ftmb_rt.live_backup); /* before any store to the regions (death watch) */
    struct _ftmb_thread *t = &_ftmb_threads[idx];
    t->index = idx;
    if (_ftmb_rt.out && !t->has_rings) {
        _ftmb_ring_attach(&t->rec, _ftmb_rt.out, &_ftmb_rt.out->thread[idx].rec, 1);
        _ftmb_ring_attach(&t->out, _ftmb_rt.out, &_ftmb_rt.out->thread[idx].out, 1);
        t->has_rings = 1;
    }
    if (!t->own && !(t->own = calloc(FTMB_MAX_OBJECTS, sizeof *t->own)))
        _ftmb_fatal("out of memory for thread %u's ordered-access marks", idx);
    t->rlog = _ftmb_rt.replay_log[idx];
    t->rlen = _ftmb_rt.replay_len[idx];
    t->rbase = _ftmb_rt.replay_base[idx];
    t->pthread = (uintptr_t)pthread_self();
    _ftmb_self = t;
    /* Release: pairs with the checkpoint coordinator's acquire; the fields above are set. */
    atomic_store_explicit(&t->os_state, _FTMB_OS_RUNNING, memory_order_release);
}

struct _ftmb_thread *_ftmb_self_slow(void)
{
    uint32_t idx = _ftmb_claim_thread_index();
    if (idx != 0 && _ftmb_mode_now != FTMB_MODE_PASSTHROUGH)
        fprintf(stderr, "ftmb: a thread not started by an ftmb_ spawn wrapper got thread index %u; its index "
                        "may differ on replay\n",
                idx);
    _ftmb_adopt_thread_index(idx);
    return _ftmb_self;
}

ftmb_u32 ftmb_thread_index(void) { return _ftmb_me()->index; }

int ftmb_mode(void) { return _ftmb_mode_now; }

struct spawn_ctx {
    void *(*start)(void *);
    void *arg;
    uint32_t index;
};

static void *spawn_trampoline(void *p)
{
    struct spawn_ctx c = *(struct spawn_ctx *)p;
    free(p);
    _ftmb_adopt_thread_index(c.index);
    void *ret = c.start(c.arg);
    _ftmb_thread_exiting(_ftmb_self); /* (an EAL worker instead stays in its launch loop: finished) */
    return ret;
}

int ftmb_pthread_create(void *thread, const void *attr, void *(*start_routine)(void *), void *arg)
{
    _ftmb_spawn_begin((void (*)(void))start_routine, "pthread_create");
    _ftmb_me(); /* the spawner holds an index before its children do */
    struct spawn_ctx *c = malloc(sizeof *c);
    if (!c)
        return ENOMEM;
    c->start = start_routine;
    c->arg = arg;
    c->index = _ftmb_claim_thread_index();
    int rc = pthread_create((pthread_t *)thread, (const pthread_attr_t *)attr, spawn_trampoline, c);
    if (rc != 0)
        free(c);
    return rc;
}

/* ---- liveness of the loggers ----------------------------------------------------------------- */

/*
 * The default action of the stop signals (SIGINT, SIGTERM) for a program that installs no handler
 * of its own (DPDK's skeleton): ftmb_init installs this one in their place, the program's own
 * signal() or sigaction() replaces it. The session's master marks itself stopped, so that the
 * loggers, the warm standby and its snapshot see a stop, not a failure, then dies of the signal as
 * it would have (SA_RESETHAND: the default action is back, and SA_NODEFER lets it through here).
 * Only async-signal-safe calls and atomic stores.
 */
static void stop_by_default(int sig)
{
    struct _ftmb_region_hdr *hs[2] = {_ftmb_rt.in ? &_ftmb_rt.in->hdr : NULL,
                                      _ftmb_rt.out ? &_ftmb_rt.out->hdr : NULL};
    for (int i = 0; i < 2; i++) {
        /* Relaxed: a process compares its own pid, which only it publishes (_ftmb_publish_master). */
        if (!hs[i] || atomic_load_explicit(&hs[i]->master_pid, memory_order_relaxed) != (int32_t)getpid())
            continue;
        uint32_t attached = _FTMB_MASTER_ATTACHED;
        /* Release: pairs with the acquire loads of master_state (loggers, standby, snapshot); they
         * act on it only once this process is gone. A master that called ftmb_exit stays done. */
        atomic_compare_exchange_strong_explicit(&hs[i]->master_state, &attached, _FTMB_MASTER_STOPPED,
                                                memory_order_release, memory_order_relaxed);
        _ftmb_region_ring(hs[i]);
    }
    raise(sig);
}

static void stop_signals_default(void)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa;
        if (sigaction(sigs[i], NULL, &sa) != 0 || (sa.sa_flags & SA_SIGINFO) || sa.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = stop_by_default;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static uint64_t peer_timeout_ns(void);

static void report_dead(_Atomic int *flag, const char *who, const struct _ftmb_region_hdr *h, const char *then)
{
    char why[64];
    if (peer_timeout_ns() == UINT64_MAX)
        snprintf(why, sizeof why, "its process is gone");
    else
        snprintf(why, sizeof why, "no heartbeat for %llu ms", (unsigned long long)(_ftmb_rt.peer_timeout_ns / 1000000));
    /* Relaxed (exited): after ftmb_exit a logger that goes is the session's end (its relays exit
     * once they forwarded it); the flag is still set, for a thread that waits on that logger. */
    if (atomic_exchange_explicit(flag, 1, memory_order_relaxed) == 0 &&
        !atomic_load_explicit(&_ftmb_rt.exited, memory_order_relaxed))
        fprintf(stderr, "ftmb: the %s logger of session %s (pid %d) is gone (%s); %s\n", who, _ftmb_rt.session,
                (int)atomic_load_explicit(&h->owner_pid, memory_order_relaxed), why, then);
}

/* A master (or a backup that took over) whose session is gone exits: nothing it does is logged or
 * released, and a process whose run was SIGKILLed would otherwise poll (and fork checkpoints)
 * forever. Called with the peer checks and by the checkpoint coordinator. */
void _ftmb_exit_if_session_gone(void)
{
    /* A program that called ftmb_exit ended its run itself: the loggers exit because of it (across
     * hosts its relays exit once they forwarded its end, while it may still be tearing down), and
     * its own clean-up and output go on. Relaxed: a flag; a check that misses it only exits 75. */
    if (!_ftmb_rt.in || !_ftmb_rt.out || _ftmb_rt.standby ||
        atomic_load_explicit(&_ftmb_rt.exited, memory_order_relaxed) ||
        !_ftmb_session_gone(&_ftmb_rt.in->hdr, &_ftmb_rt.out->hdr))
        return;
    fprintf(stderr, "ftmb: session %s is gone (both loggers have exited: its run ended); exiting\n",
            _ftmb_rt.session);
    _exit(FTMB_EXIT_SESSION_GONE);
}

/* How old a logger's heartbeat may be. A follower that has not taken over judges its loggers by
 * their processes alone (UINT64_MAX): it only replays, so a logger that a loaded machine starves
 * (or one that is stopped) is waited for; declaring it gone would turn a healthy session's backup
 * into a failed one (its input ended, its replay aborted). On another host the region's owner is
 * the relay import, which exits when its link is lost. The master, and a follower once it took
 * over, keep FTMB_PEER_TIMEOUT_MS (runtime/README.md, The loggers). */
static uint64_t peer_timeout_ns(void)
{
    /* Relaxed: handover is set once, at the takeover; a check that still sees 0 judges by pid. */
    if (_ftmb_follow_mode && !__atomic_load_n(&_ftmb_rt.handover, __ATOMIC_RELAXED))
        return UINT64_MAX;
    return _ftmb_rt.peer_timeout_ns;
}

void _ftmb_check_peers(void)
{
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    /* Relaxed: a rate limit; two threads checking at once is harmless. */
    uint64_t last = atomic_load_explicit(&_ftmb_rt.last_peer_check_ns, memory_order_relaxed);
    if (now - last < 10000000ull)
        return;
    atomic_store_explicit(&_ftmb_rt.last_peer_check_ns, now, memory_order_relaxed);
    _ftmb_exit_if_session_gone();
    if (_ftmb_rt.in && !atomic_load_explicit(&_ftmb_rt.in_dead, memory_order_relaxed) &&
        !_ftmb_peer_watch_alive(&_ftmb_rt.in_watch, &_ftmb_rt.in->hdr, peer_timeout_ns())) {
        /* No input can arrive any more. A program with a SIGINT handler gets its own clean stop
         * path (DPDK programs finish their loop and exit) instead of idling forever; others see
         * ftmb_input_done() == 1. FTMB_ON_INPUT_LOSS=idle keeps the old behaviour. */
        struct sigaction sa;
        const char *on_loss = getenv("FTMB_ON_INPUT_LOSS");
        int stop = !(on_loss && strcmp(on_loss, "idle") == 0) && sigaction(SIGINT, NULL, &sa) == 0 &&
                   !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN &&
                   sa.sa_handler != stop_by_default;
        report_dead(&_ftmb_rt.in_dead, "input", &_ftmb_rt.in->hdr,
                    stop ? "input ends here; stopping the program through its SIGINT handler"
                         : "input ends here");
        if (stop && !atomic_load_explicit(&_ftmb_rt.exited, memory_order_relaxed)) /* Relaxed: a flag */
            kill(getpid(), SIGINT);
    }
    if (_ftmb_rt.out && !atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed) &&
        !_ftmb_peer_watch_alive(&_ftmb_rt.out_watch, &_ftmb_rt.out->hdr, peer_timeout_ns()))
        report_dead(&_ftmb_rt.out_dead, "output", &_ftmb_rt.out->hdr,
                    "records and output packets are dropped from now on (no fault tolerance, no output)");
}

/* ---- the record path ------------------------------------------------------------------------- */

static struct _ftmb_record *rec_wait_space(struct _ftmb_thread *t)
{
    for (unsigned spins = 0;; spins++) {
        void *slot = _ftmb_ring_reserve(&t->rec);
        if (slot)
            return slot;
        if (_ftmb_rt.standby)
            _ftmb_fatal("standby: more than %llu records before the workers launched",
                        (unsigned long long)(t->rec.mask + 1));
        if (atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed)) {
            /* No consumer any more: recycle the ring so the master keeps running. */
            t->rec.cache = t->rec.local;
            continue;
        }
        _ftmb_region_ring(&_ftmb_rt.out->hdr);
        _ftmb_check_peers();
        _ftmb_backoff(spins);
    }
}

/* Write a record into `slot` and publish the count that covers it. */
static inline __attribute__((always_inline)) void emit_into(struct _ftmb_ring *r, struct _ftmb_record *slot,
                                                            uint64_t head, uint64_t value)
{
    slot->head = head | _ftmb_rec_check(head, value, r->local);
    slot->value = value;
    /* R1 (inside _ftmb_ring_publish): release store of the ring head, which is this thread's
     * record count. The record is written before the count covering it is published; pairs with
     * the output logger's acquire load of head (C1) and with nothing in other master threads:
     * they read the count relaxed (V1), see below. */
    _ftmb_ring_publish(r, 1);
}

/* emit() when the cached tail says the ring is full: a separate function, so that the fast path
 * makes no call and saves no registers. */
__attribute__((noinline)) static void emit_wait(struct _ftmb_thread *t, uint64_t head, uint64_t value)
{
    emit_into(&t->rec, rec_wait_space(t), head, value);
}

/* Append one record to the calling thread's stream and publish the count that covers it. */
static inline __attribute__((always_inline)) void emit(struct _ftmb_thread *t, uint64_t head, uint64_t value)
{
    struct _ftmb_ring *r = &t->rec;
    if (__builtin_expect(r->local - r->cache > r->mask, 0)) { /* no room by the cached tail (P0 as below) */
        emit_wait(t, head, value);
        return;
    }
    /* records: fixed 16-byte slots */
    emit_into(r, (struct _ftmb_record *)r->buf + (r->local & r->mask), head, value);
}

/* A loud record whose own fields cannot hold the thread's quiet count: a QUIET record with the count,
 * then the loud record, published together (a log never ends between the two). */
__attribute__((noinline)) static void emit_quiet_pair(struct _ftmb_thread *t, uint64_t quiet, uint64_t head,
                                                      uint64_t value)
{
    struct _ftmb_ring *r = &t->rec;
    uint64_t qhead = _ftmb_rec_head(_FTMB_REC_QUIET, 0, 0);
    struct _ftmb_record *a = _ftmb_ring_reserve(r);
    if (!a)
        a = rec_wait_space(t);
    a->head = qhead | _ftmb_rec_check(qhead, quiet, r->local);
    a->value = quiet;
    r->local++; /* reserve the second slot behind the first, unpublished */
    struct _ftmb_record *b = _ftmb_ring_reserve(r);
    if (!b)
        b = rec_wait_space(t);
    b->head = head | _ftmb_rec_check(head, value, r->local);
    b->value = value;
    r->local--;
    _ftmb_ring_publish(r, 2); /* R1 for both */
}

/* A transmit after quiet receives that moved the thread's clock (past its queue's EOF): the packet
 * may depend on how many there were, so the count goes into the log before it (a QUIET record). */
void _ftmb_emit_quiet(struct _ftmb_thread *t)
{
    emit(t, _ftmb_rec_head(_FTMB_REC_QUIET, 0, 0), t->quiet);
    t->quiet = 0;
    t->quiet_time = 0;
}

/* Append a loud record (an RX, or an external read that logs) carrying the thread's quiet
 * operations since its previous loud record: in the record's site field (external reads) or the
 * top of its value (RX) when the count fits, else in a QUIET record right before it. */
static void emit_loud(struct _ftmb_thread *t, uint64_t head, uint64_t value, int quiet_in_site)
{
    uint64_t quiet = t->quiet;
    t->quiet = 0;
    t->quiet_time = 0;
    uint64_t max = quiet_in_site ? _FTMB_EXT_QUIET_MAX : _FTMB_RX_QUIET_MAX;
    if (quiet > max) {
        emit_quiet_pair(t, quiet, head, value);
        return;
    }
    if (quiet_in_site)
        head |= quiet << 24;
    else
        value |= quiet << _FTMB_RX_SEQ_BITS;
    emit(t, head, value);
}

static inline struct _ftmb_obj *obj_of(ftmb_obj_t obj, ftmb_site_t site)
{
    if (__builtin_expect(obj >= FTMB_MAX_OBJECTS, 0))
        _ftmb_fatal("object id %u at site %u is out of range (FTMB_MAX_OBJECTS is %d)", obj, site,
                    FTMB_MAX_OBJECTS);
    return &_ftmb_rt.objs[obj];
}

/* ---- the replay path ------------------------------------------------------------------------- */

/*
 * Failover: the backup replays the log the output logger stored, then goes live. A thread's log
 * is a prefix of its stream, and the union of the prefixes is closed under "happened before on an
 * object" (a record is published before the object is released, and the output logger drained
 * every ring after the master died). So every logged access can be replayed without any access
 * the old master did not log, and no thread may go live while another still replays: a live
 * access could take a sequence number the log gives to a replaying thread. Each thread counts
 * itself out of replay_left when the operation of its last record has completed; a thread whose
 * log has ended waits at its next logged operation until replay_left is 0, and the first one
 * there switches the process to record mode; the others go live only once it has (before, a
 * receive of theirs went unlogged: io.c logs in record mode only). A thread waiting there holds
 * no lock a replaying thread needs: that thread's logged acquisition would come after a release
 * of ours, and our records up to that release would be in the log.
 */
static void replay_op_done(struct _ftmb_thread *t)
{
    if (t->rpos == t->rlen && t->rlen && !t->replay_finished) {
        t->replay_finished = 1;
        /* Release: this thread's replayed writes (sequence words, program state) happen before the
         * handover; pairs with the acquire load in wait_handover. */
        atomic_fetch_sub_explicit(&_ftmb_rt.replay_left, 1, memory_order_release);
    }
}

static void wait_handover(struct _ftmb_thread *t)
{
    for (unsigned spins = 0; atomic_load_explicit(&_ftmb_rt.replay_left, memory_order_acquire) != 0; spins++) {
        if (_ftmb_mode_now != FTMB_MODE_REPLAY)
            return;
        _ftmb_backoff(spins);
    }
    int expected = 0;
    if (atomic_compare_exchange_strong(&_ftmb_rt.handed_over, &expected, 1)) {
        uint64_t now = _ftmb_now_ns(CLOCK_REALTIME);
        __atomic_store_n(&_ftmb_mode_now, FTMB_MODE_RECORD, __ATOMIC_RELEASE);
        struct _ftmb_region_hdr *hs[2] = {_ftmb_rt.in ? &_ftmb_rt.in->hdr : NULL,
                                          _ftmb_rt.out ? &_ftmb_rt.out->hdr : NULL};
        for (int i = 0; i < 2; i++)
            if (hs[i]) /* Relaxed: a status for the orchestrator, guards nothing. */
                atomic_store_explicit(&hs[i]->master_mode, FTMB_MODE_RECORD, memory_order_relaxed);
        fprintf(stderr, "ftmb: failover: replayed %llu records; live (recording) from thread %u at %llu ns\n",
                (unsigned long long)_ftmb_rt.replay_records, t->index, (unsigned long long)now);
        uint64_t mono = _ftmb_now_ns(CLOCK_MONOTONIC), replay_ns = mono - _ftmb_rt.fo_restored_ns;
        uint64_t cpu = _ftmb_now_ns(CLOCK_PROCESS_CPUTIME_ID) - _ftmb_rt.fo_restored_cpu_ns;
        if (_ftmb_rt.fo_restored_ns) /* (a backup started after the death replays from its start: no split) */
            fprintf(stderr, "ftmb: failover: split log_us %.1f restore_us %.1f replay_us %.1f records %llu "
                            "records_per_s %.0f replay_cpu_us %.1f\n",
                    (double)(_ftmb_rt.fo_log_ns - _ftmb_rt.fo_died_ns) / 1e3,
                    (double)(_ftmb_rt.fo_restored_ns - _ftmb_rt.fo_log_ns) / 1e3, (double)replay_ns / 1e3,
                    (unsigned long long)_ftmb_rt.replay_records,
                    replay_ns ? (double)_ftmb_rt.replay_records * 1e9 / (double)replay_ns : 0.0, (double)cpu / 1e3);
    }
    /* The others wait for that store (the exchange's losers could otherwise run live in replay mode:
     * an unlogged receive, a wait or break flag taken the replay's way). */
    for (unsigned spins = 0; __atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) == FTMB_MODE_REPLAY; spins++)
        _ftmb_backoff(spins);
}

/* The verification replay: a thread past its log has sent everything its log accounts for. Once
 * every log is replayed, the first thread here gives the others a moment to get past theirs too,
 * marks the session done (ftmb_exit) and exits; the rest wait for that. */
/* The verification replay's end when not every log can be replayed (see rt.h): no record
 * consumed by any thread for 500 ms, during which the process also had 500 ms of CPU time (its
 * waiting threads spin and yield, so a replay that is blocked uses the CPU it gets; one that a
 * loaded machine starves does not: a NAT's verification replay at a load of 19 was ended 31 lock
 * turns short, 346 of 1257 packets regenerated, when wall time alone counted). */
static int replay_blocked(void)
{
    static _Thread_local uint64_t seen, since, since_cpu;
    /* Relaxed: a counter of a heuristic; nothing is read through it. */
    uint64_t p = atomic_load_explicit(&_ftmb_rt.replay_progress, memory_order_relaxed);
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC), cpu = _ftmb_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (p != seen || !since) {
        seen = p;
        since = now;
        since_cpu = cpu;
        return 0;
    }
    return now - since > 500000000ull && cpu - since_cpu > 500000000ull;
}

__attribute__((noreturn)) static void stop_at_end(struct _ftmb_thread *t, int stalled)
{
    struct timespec ms = {0, 1000000}, grace = {0, 100000000};
    /* Acquire pairs with the release in replay_op_done. */
    while (!stalled && atomic_load_explicit(&_ftmb_rt.replay_left, memory_order_acquire) != 0 &&
           !replay_blocked())
        nanosleep(&ms, NULL);
    int expected = 0;
    if (atomic_compare_exchange_strong(&_ftmb_rt.stopping, &expected, 1)) {
        nanosleep(&grace, NULL);
        fprintf(stderr, "ftmb: replay: every log replayed (%llu records; thread %u past its log first); exiting\n",
                (unsigned long long)_ftmb_rt.replay_records, t->index);
        fflush(NULL);
        ftmb_exit();
        _exit(0);
    }
    for (;;)
        nanosleep(&grace, NULL);
}

/* The verification replay, at a receive or an external read past the end of the thread's log: the
 * record made such operations quietly after its last record (unlogged: nothing came after them to
 * carry their count) before the thread went on (a capture loop ending at its input's end, then the
 * thread's exit, which others join). So they stay quiet while any thread still replays: 1, the
 * operation returns what a quiet one does; 0 once every log is replayed (the caller then ends the
 * replay at _ftmb_replaying). A backup instead waits for the handover there (_ftmb_replaying). */
int _ftmb_quiet_past_log(struct _ftmb_thread *t)
{
    if (!_ftmb_rt.stop_at_end || __atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) != FTMB_MODE_REPLAY ||
        t->rpos < t->rlen)
        return 0;
    replay_op_done(t);
    /* Acquire pairs with the release in replay_op_done. */
    if (atomic_load_explicit(&_ftmb_rt.replay_left, memory_order_acquire) == 0)
        return 0;
    t->quiet++; /* counted as in record: no run of an ordered access goes on past it (replay_past_log_run) */
    return 1;
}

int _ftmb_replaying(struct _ftmb_thread *t)
{
    if (__atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) != FTMB_MODE_REPLAY)
        return 0;
    if (__builtin_expect(_ftmb_follow_mode, 0)) /* a follower: the next record may still be coming */
        _ftmb_follow_need(t);
    if (t->rpos < t->rlen)
        return 1;
    /* The log has ended at this operation, maybe inside a region our last record entered (nested
     * regions: begin(a) was logged, begin(b) was not). Count us out now, not when that region
     * ends, which would wait for the handover itself: nothing in the log waits for the region,
     * since another thread's later turn on it would follow a record of ours that is not there. */
    replay_op_done(t);
    if (_ftmb_rt.stop_at_end)
        stop_at_end(t, 0);
    if (!_ftmb_rt.handover)
        return 1;
    wait_handover(t);
    return 0;
}

static const struct _ftmb_record *replay_peek(struct _ftmb_thread *t)
{
    if (__builtin_expect(_ftmb_follow_mode, 0)) /* a follower: the next record may still be coming */
        _ftmb_follow_need(t);
    if (t->rpos >= t->rlen)
        return NULL;
    if (t->rpos < t->rbase)
        _ftmb_fatal("replay: thread %u needs record %llu, but the log keeps its records from %llu on", t->index,
                    (unsigned long long)t->rpos, (unsigned long long)t->rbase);
    const struct _ftmb_record *r = &t->rlog[t->rpos - t->rbase];
    if (!_ftmb_rec_valid(r, t->rpos))
        _ftmb_fatal("replay: thread %u record %llu fails its checksum (head %#llx value %#llx); it is not "
                    "replayed",
                    t->index, (unsigned long long)t->rpos, (unsigned long long)r->head,
                    (unsigned long long)r->value);
    return r;
}

/* What the instrumented files register (ftmb_register_file, from constructors before main: plain
 * stores, read only by diagnostics and spawn wrappers, which run after the constructors). */
static const char *site_where[1u << 16];
static uintptr_t *known_roots; /* the thread roots' addresses, in registration order */
static size_t nknown_roots;

void ftmb_register_file(const ftmb_u32 *sites, const char *const *where, ftmb_u32 nsites, void (*const *roots)(void),
                        ftmb_u32 nroots)
{
    for (ftmb_u32 i = 0; i < nsites; i++)
        if (sites[i] < sizeof site_where / sizeof site_where[0])
            site_where[sites[i]] = where[i];
    if (nroots == 0)
        return;
    uintptr_t *grown = realloc(known_roots, (nknown_roots + nroots) * sizeof *grown);
    if (!grown)
        _ftmb_fatal("out of memory registering %u thread roots", nroots);
    for (ftmb_u32 i = 0; i < nroots; i++)
        grown[nknown_roots + i] = (uintptr_t)roots[i];
    known_roots = grown;
    nknown_roots += nroots;
}

void _ftmb_spawn_begin(void (*start)(void), const char *wrapper)
{
    if (_ftmb_rt.standby)
        _ftmb_standby_takeover();
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return;
    for (size_t i = 0; i < nknown_roots; i++)
        if (known_roots[i] == (uintptr_t)start)
            return;
    /* A routine the analysis never saw: its accesses are not instrumented, so no replay could
     * reproduce what it does. Name it: by symbol when the program exports one, else by its offset
     * in its object (addr2line -f -e OBJECT OFFSET). */
    char what[512];
    Dl_info info;
    if (dladdr((void *)start, &info) && info.dli_sname && info.dli_saddr == (void *)start)
        snprintf(what, sizeof what, "%s", info.dli_sname);
    else if (info.dli_fname)
        snprintf(what, sizeof what, "%s+0x%lx", info.dli_fname,
                 (unsigned long)((uintptr_t)start - (uintptr_t)info.dli_fbase));
    else
        snprintf(what, sizeof what, "%p", (void *)start);
    const char *allow = getenv("FTMB_ALLOW_UNKNOWN_THREADS");
    if (allow && strcmp(allow, "1") == 0) {
        fprintf(stderr, "ftmb: warning: %s starts %s, not a thread root of the analysis: its accesses are not "
                        "instrumented and a replay may diverge (allowed by FTMB_ALLOW_UNKNOWN_THREADS=1)\n",
                wrapper, what);
        return;
    }
    fprintf(stderr, "ftmb: %s starts %s, not a thread root of the analysis (its accesses are not instrumented, "
                    "no replay could reproduce it); instrument the whole program with one plan (FTMB_PLAN), or "
                    "set FTMB_ALLOW_UNKNOWN_THREADS=1 to run it anyway\n",
            wrapper, what);
    exit(FTMB_EXIT_UNKNOWN_THREAD);
}

/* "site N (file:line)", or "site N" when no file named it; `buf` holds the text. */
static const char *site_name(char *buf, size_t len, uint32_t site)
{
    const char *w = site < sizeof site_where / sizeof site_where[0] ? site_where[site] : NULL;
    if (w)
        snprintf(buf, len, "site %u (%s)", site, w);
    else
        snprintf(buf, len, "site %u", site);
    return buf;
}

static const char *kind_name(unsigned k)
{
    static const char *const names[] = {"?", "lock", "ordered", "held", "trylock-fail", "nondet", "rx", "quiet",
                                        "ordered (quiet-capable)", "transmit after a run"};
    return k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static void settle_quiet(struct _ftmb_thread *t, int op_done);
static int carries_quiet(const struct _ftmb_record *r, uint64_t *count);

/* The next record of this thread's stream, which must be of kind `kind` on `obj`. */
static const struct _ftmb_record *replay_take(struct _ftmb_thread *t, unsigned kind, uint32_t obj, uint32_t site)
{
    const struct _ftmb_record *r = replay_peek(t);
    char here[320], logged[320], quiet[160] = "";
    if (__builtin_expect(_ftmb_follow_mode, 0) && r && kind != _FTMB_REC_QUIET &&
        _ftmb_rec_kind(r->head) == _FTMB_REC_QUIET) {
        /* A QUIET record behind the thread's previous record that had not arrived when that one was
         * taken: settled now, as it would have been then. */
        settle_quiet(t, 0);
        r = replay_peek(t);
    }
    if (!r)
        _ftmb_fatal("replay: thread %u ran past its log (%llu records) at a %s on object %u, %s", t->index,
                    (unsigned long long)t->rlen, kind_name(kind), obj, site_name(here, sizeof here, site));
    unsigned rk = _ftmb_rec_kind(r->head);
    int same_kind = rk == kind || (kind == _FTMB_REC_LOCK && rk == _FTMB_REC_TRYLOCK_FAIL);
    if (!same_kind || _ftmb_rec_obj(r->head) != obj) {
        if (t->loud_valid == 1 && t->loud_idx >= t->rpos && t->loud_idx < t->rlen)
            snprintf(quiet, sizeof quiet, "; %llu quiet operations made of the %llu its record %llu counts",
                     (unsigned long long)t->quiet, (unsigned long long)t->loud_need,
                     (unsigned long long)t->loud_idx);
        _ftmb_fatal("replay diverged: thread %u record %llu is a %s on object %u (%s) but the program "
                    "does a %s on object %u at %s; an access is missing its instrumentation%s",
                    t->index, (unsigned long long)t->rpos, kind_name(rk), _ftmb_rec_obj(r->head),
                    rk == _FTMB_REC_ND || rk == _FTMB_REC_RX || rk == _FTMB_REC_QUIET || rk == _FTMB_REC_ORDQ ||
                            rk == _FTMB_REC_ORDERED ?
                    "no site" :
                    site_name(logged, sizeof logged, _ftmb_rec_site(r->head)),
                    kind_name(kind), obj, site_name(here, sizeof here, site), quiet);
    }
    t->rpos++;
    if (_ftmb_rt.stop_at_end) /* Relaxed: a heuristic's counter (rt.h) */
        atomic_fetch_add_explicit(&_ftmb_rt.replay_progress, 1, memory_order_relaxed);
    uint64_t carried;
    if (carries_quiet(r, &carried)) {
        /* A loud record (take_loud): the record counted its quiet operations from here on anew, and
         * so does the replay, before it looks at what follows (a QUIET record right after it counts
         * the operations after it, not the ones before it). */
        t->quiet = 0;
        t->quiet_time = 0;
        t->loud_valid = 0;
    }
    /* (A follower looks only at a record that has arrived: waiting here, before this operation is
     * made, could wait on the master's thread for what this one does; one that arrives later is
     * settled when the thread takes its next record, replay_take.) */
    if (__builtin_expect(t->rpos < t->rlen && (!_ftmb_follow_mode || _ftmb_follow_have(t, t->rpos, 0)) &&
                             _ftmb_rec_kind(t->rlog[t->rpos - t->rbase].head) == _FTMB_REC_QUIET,
                         0))
        settle_quiet(t, 0); /* a QUIET record a transmit wrote after this one (the caller's operation
                               * is not done yet: it counts the thread out, replay_op_done) */
    return r;
}

/* ---- quiet operations in replay (see the top) ----------------------------------------------------- */

/* A record that carries a quiet count (the quiet operations since the thread's previous one): a
 * QUIET record, an RX, an external read, a loud quiet-capable ordered call (ORDQ), a claim (ORD). */
static int carries_quiet(const struct _ftmb_record *r, uint64_t *count)
{
    unsigned k = _ftmb_rec_kind(r->head);
    if (k == _FTMB_REC_QUIET)
        *count = r->value;
    else if (k == _FTMB_REC_RX)
        *count = r->value >> _FTMB_RX_SEQ_BITS;
    else if ((k == _FTMB_REC_ND && (_ftmb_rec_obj(r->head) == _FTMB_ND_EXTERNAL ||
                                    _ftmb_rec_obj(r->head) == _FTMB_ND_SLEEP)) ||
             k == _FTMB_REC_ORDQ || k == _FTMB_REC_ORDERED)
        *count = _ftmb_rec_site(r->head);
    else
        return 0;
    return 1;
}

/* Find the thread's next record that carries a quiet count, and the count. */
static void find_carrier(struct _ftmb_thread *t)
{
    if (t->rpos < t->rbase)
        _ftmb_fatal("replay: thread %u needs record %llu, but the log keeps its records from %llu on", t->index,
                    (unsigned long long)t->rpos, (unsigned long long)t->rbase);
    uint64_t need = UINT64_MAX, i = t->rpos; /* none left: every receive and external read is quiet */
    if (t->loud_valid == 2 && t->loud_idx > i)
        i = t->loud_idx; /* (a follower's records before it were looked at: none is a carrier) */
    for (;; i++) {
        /* A follower waits for the thread's next record (the master writes it later): it says
         * whether the operation at hand was loud (a loud one logs its carrier right there). Past it
         * the follower does not wait for the carrier: while the records it has up to there carry
         * no count, every quiet-capable operation before them was quiet whatever the count, which
         * is checked once the carrier comes (provisional: loud_valid 2). Waiting for it instead
         * stalled the follower behind the records it had (a NAT worker's expiry scan, one lock
         * record per binding, waited for the master's next receive; the other worker waited for
         * those locks: `thread 2 has waited 10000 ms for object 0`; after the input's end, for
         * good). After the takeover the log's end ends the search as in any replay. */
        if (__builtin_expect(_ftmb_follow_mode, 0) && !_ftmb_follow_have(t, i, i == t->rpos)) {
            if (i > t->rpos && i < t->rlen) {
                t->loud_idx = i;
                t->loud_need = UINT64_MAX;
                t->loud_valid = 2;
                return;
            }
            break;
        }
        if (i >= t->rlen)
            break;
        const struct _ftmb_record *r = &t->rlog[i - t->rbase];
        if (!_ftmb_rec_valid(r, i))
            _ftmb_fatal("replay: thread %u record %llu fails its checksum (head %#llx value %#llx); it is not "
                        "replayed",
                        t->index, (unsigned long long)i, (unsigned long long)r->head, (unsigned long long)r->value);
        if (carries_quiet(r, &need))
            break;
    }
    t->loud_idx = i;
    t->loud_need = i < t->rlen ? need : UINT64_MAX;
    t->loud_valid = 1;
}

/* A QUIET record is consumed once the thread is at it and has made its quiet operations. */
static void settle_quiet(struct _ftmb_thread *t, int op_done)
{
    for (;;) {
        if (t->loud_valid != 1 || t->loud_idx < t->rpos)
            find_carrier(t);
        if (t->loud_idx != t->rpos || t->loud_idx == t->rlen || t->quiet != t->loud_need ||
            _ftmb_rec_kind(t->rlog[t->rpos - t->rbase].head) != _FTMB_REC_QUIET)
            return;
        t->rpos++;
        t->quiet = 0;
        t->quiet_time = 0; /* as the transmit that wrote it did */
        t->loud_valid = 0;
        if (_ftmb_rt.stop_at_end) /* Relaxed: a heuristic's counter (rt.h) */
            atomic_fetch_add_explicit(&_ftmb_rt.replay_progress, 1, memory_order_relaxed);
        if (op_done)
            replay_op_done(t);
    }
}

/* Replay, at a receive or an external read: 1 if the record made it quietly (it is counted), 0 if
 * it is the operation of the thread's next loud record. */
int _ftmb_replay_quiet(struct _ftmb_thread *t)
{
    settle_quiet(t, 1);
    if (__builtin_expect(t->quiet > t->loud_need, 0)) /* (a follower's provisional quiet operations) */
        _ftmb_fatal("replay diverged: thread %u made %llu quiet operations before its record %llu, which counts %llu",
                    t->index, (unsigned long long)t->quiet, (unsigned long long)t->loud_idx,
                    (unsigned long long)t->loud_need);
    if (t->quiet < t->loud_need) {
        t->quiet++;
        if (_ftmb_rt.stop_at_end && (t->quiet & 1023) == 0) /* a long quiet stretch is progress too */
            atomic_fetch_add_explicit(&_ftmb_rt.replay_progress, 1, memory_order_relaxed); /* Relaxed: rt.h */
        settle_quiet(t, 1);
        return 1;
    }
    return 0;
}

/* Replay: take the loud record of this operation (replay_take starts the quiet count anew). */
static const struct _ftmb_record *take_loud(struct _ftmb_thread *t, unsigned kind, uint32_t obj)
{
    return replay_take(t, kind, obj, 0);
}

__attribute__((noreturn)) static void stop_at_end(struct _ftmb_thread *t, int stalled);
static int replay_blocked(void);

/*
 * Replay: a thread whose turn on an object has not come sleeps on the object's word (a futex on its
 * low half) after a short spin, and whoever moves a word in replay wakes its sleepers
 * (replay_wake): threads that yield-spin for their turn take the CPUs from the one whose turn it is
 * when a program has more threads than CPUs (DPDK's packet_ordering: 4 lcores on 2 CPUs replayed
 * 22,000-40,000 records a second, l2fwd 60,000-110,000). Dekker's pattern on replay_sleepers and the
 * word (a sequentially consistent count and load here, store then fence then load in the waker); the
 * sleep is bounded (REPLAY_SLEEP_NS), so a move without a wake costs that much, never a hang. Not in
 * the verification replay (stop_at_end), whose end is found by CPU time spent without progress.
 */
#define REPLAY_SPINS 128             /* _ftmb_backoff's 64 pauses, then 64 yields */
#define REPLAY_SLEEP_NS 1000000l
static _Atomic uint32_t replay_sleepers;

static void replay_sleep(_Atomic uint64_t *word, uint64_t want)
{
    atomic_fetch_add_explicit(&replay_sleepers, 1, memory_order_seq_cst);
    uint64_t cur = atomic_load_explicit(word, memory_order_seq_cst);
    if (cur != want) {
        struct timespec ts = {0, REPLAY_SLEEP_NS};
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, (uint32_t)cur, &ts, NULL, 0);
    }
    atomic_fetch_sub_explicit(&replay_sleepers, 1, memory_order_relaxed);
}

/* After a store that moves `word` in replay: wake the threads asleep on it (replay_sleep). */
static void replay_wake(_Atomic uint64_t *word)
{
    atomic_thread_fence(memory_order_seq_cst); /* (the store before, the count after: replay_sleep) */
    if (atomic_load_explicit(&replay_sleepers, memory_order_relaxed))
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Wait until `word` (read with acquire) equals `want`; warn once if that takes very long. */
static void replay_wait_word(struct _ftmb_thread *t, _Atomic uint64_t *word, uint64_t want, uint32_t obj)
{
    uint64_t spins = 0, start = 0;
    int may_sleep = !_ftmb_rt.stop_at_end;
    /* Acquire pairs with the release store that moves the word to our turn (E1, or the lock path). */
    while (atomic_load_explicit(word, memory_order_acquire) != want) {
        if (may_sleep && spins >= REPLAY_SPINS)
            replay_sleep(word, want);
        else
            _ftmb_backoff((unsigned)spins);
        if ((++spins & 0xfff) == 0 || (may_sleep && spins > REPLAY_SPINS)) {
            uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
            if (!start)
                start = now;
            else if (_ftmb_rt.stop_at_end && replay_blocked()) {
                /* The verification replay: an access the log orders after one nobody can replay
                 * here (a signal handler's, such as the stop flag the master's SIGINT set): the
                 * outputs before it are all sent, which is what the replay is for. */
                fprintf(stderr, "ftmb: replay: thread %u waits for object %u at word %llu (now %llu), which no "
                                "thread reaches here; treating it as the end\n",
                        t->index, obj, (unsigned long long)want, (unsigned long long)atomic_load(word));
                stop_at_end(t, 1);
            } else if (_ftmb_rt.stop_at_end) {
                /* keep waiting: another thread may still give us our turn */
            } else if (now - start > _ftmb_rt.replay_wait_warn_ns && _ftmb_rt.handover)
                /* a failover backup must not hang: a log that is not closed under the order on an
                 * object (records lost) can never be replayed */
                _ftmb_fatal("replay stalled: thread %u waited %llu ms for object %u to reach word %llu (it is at "
                            "%llu); the log misses a record of another thread on this object",
                            t->index, (unsigned long long)((now - start) / 1000000), obj, (unsigned long long)want,
                            (unsigned long long)atomic_load(word));
            else if (now - start > _ftmb_rt.replay_wait_warn_ns) {
                fprintf(stderr, "ftmb: replay: thread %u has waited %llu ms for object %u to reach word %llu "
                                "(now %llu)\n",
                        t->index, (unsigned long long)((now - start) / 1000000), obj,
                        (unsigned long long)want, (unsigned long long)atomic_load(word));
                start = now;
            }
        }
    }
}

/* ---- the record fast path --------------------------------------------------------------------- */

/*
 * Every PAL entry point (ordered regions, atomics, locks, held accesses) has a fast path and a
 * general path, a separate function that handles every case correctly. The fast path is record
 * mode and a thread that receives input (recording_receiver): checkpoints park such a thread at
 * the top of its receives, never inside an operation, so its operations carry no in_op mark and no
 * park check, and in record mode _ftmb_replaying() is 0. Its cost: one thread-local pointer load
 * (_ftmb_rec_fast, which says record mode and a receiver at once, rt.h), and the thread's own
 * record-ring line, which the record is written through anyway. An operation enters the fast path only when nothing can make it wait or
 * fail (fast_recorder: an object id in range, room in the record ring by the cached tail, and for
 * a sequence lock a first CAS that takes it); anything else goes to the general path, so the fast
 * path makes no call but tail calls and saves no registers. The general path covers replay, the
 * handover, the standby's initialization before any receive, threads that do not receive (with
 * the checkpoints' in_op mark, rt.h), a full ring, a contended object and a bad object id.
 * Held accesses, ordered regions and the generic atomics have the same fast path inline in the
 * program (ftmb/ftmb.h, written from ftmb_instrument/abi/fast_path.py: ABI v3), which calls their
 * *_slow entries below otherwise; the functions here serve the lock wrappers and rte_atomic*.
 */
static inline __attribute__((always_inline)) struct _ftmb_thread *recording_receiver(void)
{
    return _ftmb_rec_fast(); /* rt.h: set at the thread's receives */
}

static inline __attribute__((always_inline)) struct _ftmb_thread *fast_recorder(ftmb_obj_t obj)
{
    struct _ftmb_thread *t = recording_receiver();
    /* The ring only gains room while we run (we are its only producer, and only this thread
     * writes its handle), so room now is room at the emit. */
    if (__builtin_expect(t != NULL && obj < FTMB_MAX_OBJECTS && t->rec.local - t->rec.cache <= t->rec.mask, 1))
        return t;
    return NULL;
}

/* Where the fast path's record goes (after fast_recorder() said there is room). A held access
 * reads it before its object's word, whose store the compiler must assume may alias the ring
 * handle; a sequence lock after its CAS (fewer registers live across it). */
struct fast_rec {
    struct _ftmb_thread *t;
    struct _ftmb_record *slot;
    uint64_t local; /* the slot's stream index */
};
static inline __attribute__((always_inline)) struct fast_rec fast_slot(struct _ftmb_thread *t)
{
    uint64_t local = t->rec.local;
    return (struct fast_rec){t, (struct _ftmb_record *)t->rec.buf + (local & t->rec.mask), local};
}

/* emit() into the slot fast_recorder() found: the record, then R1 as in emit_into. */
static inline __attribute__((always_inline)) void emit_fast(const struct fast_rec *f, uint64_t head, uint64_t value)
{
    f->slot->head = head | _ftmb_rec_check(head, value, f->local);
    f->slot->value = value;
    f->t->rec.local = f->local + 1;
    atomic_store_explicit(&f->t->rec.ctl->head, f->local + 1, memory_order_release); /* R1 */
}

/* ---- ordered regions and atomics: the runtime's sequence lock on the object ----------------- */

static inline __attribute__((always_inline)) int run_continues(const struct _ftmb_thread *t, uint64_t mark,
                                                               uint64_t seq);

/* Record mode: take the object's sequence lock; log a claim unless the thread's run goes on. */
static void seq_lock_record(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj)
{
    /* Relaxed first look: the CAS below decides. */
    uint64_t w = atomic_load_explicit(&o->word, memory_order_relaxed);
    for (unsigned spins = 0;;) {
        if (w & 1) { /* held: spin, then yield (the holder may have been preempted) */
            _ftmb_backoff(spins++);
            w = atomic_load_explicit(&o->word, memory_order_relaxed);
            continue;
        }
        /* A1: acquire, pairs with E1 of the previous holder: we see its accesses and its record. */
        if (atomic_compare_exchange_weak_explicit(&o->word, &w, w | 1, memory_order_acquire, memory_order_relaxed))
            break;
    }
    uint64_t seq = w >> 1, mark = t->own[obj];
    t->own[obj] = seq + 2;
    if (_ftmb_rt.every_ordered || !run_continues(t, mark, seq))
        emit_loud(t, _ftmb_rec_head(_FTMB_REC_ORDERED, obj, 0), _ftmb_ord_value(seq, mark), 1); /* R1 */
    else
        t->run_at = t->rec.local + 1; /* (_ftmb_tx_records) */
}

/* Replay: wait for the object's sequence to reach `seq` and take its sequence lock at that turn. */
static void replay_take_turn(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj, uint64_t seq)
{
    uint64_t want = seq << 1;
    replay_wait_word(t, &o->word, want, obj);
    /* A1 as in seq_lock_record; only this thread may take the word at `want`. */
    uint64_t w = want;
    while (!atomic_compare_exchange_weak_explicit(&o->word, &w, want | 1, memory_order_acquire, memory_order_relaxed))
        w = want;
}

/* Replay: take the thread's next record (kind `kind` on `obj`) and the object's sequence lock at the
 * turn it logs; returns that sequence. */
static uint64_t replay_seq_lock(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj, unsigned kind,
                                ftmb_site_t site)
{
    const struct _ftmb_record *r = replay_take(t, kind, obj, site);
    uint64_t seq = kind == _FTMB_REC_ORDERED ? r->value & _FTMB_ORD_SEQ_MASK : r->value;
    replay_take_turn(t, o, obj, seq);
    return seq;
}

/*
 * Records on a change of owner (ftmb_internal.h, ORD records). A thread owns an object while no
 * other thread has made an access of it since its own latest one (t->own[obj] == the object's
 * sequence + 1). An ordered access of an owned object logs nothing (its run continues) unless the
 * thread made quiet operations since its last loud record (their count must come before the
 * access in its stream, see below) or the sequence is a multiple of 2^16 (a renewal, which bounds
 * a run: see replay_ordered); every other access is a claim, a loud ORD record with the sequence
 * and the low bits of the thread's mark before it. The object's sequence still advances at every
 * access, so the next claimant's record names where it took the object.
 *
 * Why a run needs no record: the thread's accesses in it follow its previous record with no quiet
 * operation in between, so a replay that has its records up to there makes them too, in program
 * order; the claim that ends the run waits for them (its sequence), and the transmit of the
 * claimant, whose vector holds every record published before the run's last access (R1 before
 * E1, as for every access), covers what they need. Replay tells a claim from a run's access by the
 * thread's next record: a claim is its next record, an ORD on the object whose mark is the
 * thread's own mark; an access inside a run has no record, and the thread's next ORD on the object
 * (if it is next at all) carries the mark of the run's end, which differs in its low 16 bits
 * because a run never crosses a multiple of 2^16. A backup's replay goes on with a run past the end
 * of the thread's log as long as no logged record has that sequence (replay_past_log_run). A
 * packet the thread transmits after its run's accesses is covered by a record after them (a TX
 * record if nothing else came: _ftmb_tx_records), so no released packet depends on a run's access
 * past the end of a log.
 * every_ordered (a relay or a follower behind the output logger) makes every access a claim.
 */
static inline __attribute__((always_inline)) int run_continues(const struct _ftmb_thread *t, uint64_t mark,
                                                               uint64_t seq)
{
    return mark == seq + 1 && t->quiet == 0 && (seq & _FTMB_ORD_MARK_MASK) != 0;
}

/* The sorted (object, sequence) keys of every logged ordered access (ORD, ORDQ) of all threads, built
 * once, when a thread first goes on with a run past its log (the logs are complete then). */
static uint64_t *logged_keys;
static size_t nlogged;
static pthread_once_t logged_once = PTHREAD_ONCE_INIT;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void build_logged(void)
{
    for (int pass = 0; pass < 2; pass++) {
        nlogged = 0;
        for (uint32_t i = 0; i < FTMB_MAX_THREADS; i++) {
            const struct _ftmb_record *log = _ftmb_rt.replay_log[i];
            uint64_t n = _ftmb_rt.replay_len[i] - _ftmb_rt.replay_base[i];
            for (uint64_t j = 0; log && j < n; j++) {
                unsigned k = _ftmb_rec_kind(log[j].head);
                if (k != _FTMB_REC_ORDERED && k != _FTMB_REC_ORDQ)
                    continue;
                if (pass)
                    logged_keys[nlogged] = (uint64_t)_ftmb_rec_obj(log[j].head) << _FTMB_ORD_SEQ_BITS |
                                           (log[j].value & _FTMB_ORD_SEQ_MASK);
                nlogged++;
            }
        }
        if (!pass && !(logged_keys = malloc((nlogged ? nlogged : 1) * sizeof *logged_keys)))
            _ftmb_fatal("out of memory indexing %zu logged ordered accesses", nlogged);
    }
    qsort(logged_keys, nlogged, sizeof *logged_keys, cmp_u64);
}

/* Whether a thread's log has an access of obj at sequence seq. */
static int logged_at(ftmb_obj_t obj, uint64_t seq)
{
    pthread_once(&logged_once, build_logged);
    uint64_t key = (uint64_t)obj << _FTMB_ORD_SEQ_BITS | (seq & _FTMB_ORD_SEQ_MASK);
    size_t lo = 0, hi = nlogged; /* the first logged key >= key */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (logged_keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nlogged && logged_keys[lo] == key;
}

/* Replay of an access of the thread's run (mark: its mark on obj), which logged nothing, once its
 * turn is taken: the new mark, run_at as the record noted it (_ftmb_tx_records). The verification
 * replay counts it as progress (replay_blocked): a run of thousands of accesses consumes no record. */
static void run_access_made(struct _ftmb_thread *t, ftmb_obj_t obj, uint64_t mark)
{
    t->own[obj] = mark + 1;
    t->run_at = t->rpos + 1;
    if (_ftmb_rt.stop_at_end) /* Relaxed: a heuristic's counter (rt.h) */
        atomic_fetch_add_explicit(&_ftmb_rt.replay_progress, 1, memory_order_relaxed);
}

static void replay_run_access(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj, uint64_t mark)
{
    replay_take_turn(t, o, obj, mark - 1);
    run_access_made(t, obj, mark);
}

/* A backup's or the verification replay's access past the end of the thread's log: 1 (the access
 * made, its turn taken) when it goes on with the thread's run on the object: the record would
 * have let it (run_continues) and no thread's log has an access at that sequence, so the old master
 * made it there without a record, or died before it. Otherwise 0: the thread waits for the
 * handover (_ftmb_replaying).
 *
 * Before the handover nobody else can take that sequence: another thread's logged accesses have
 * other sequences, and only the object's owner (this thread, whose access came just before) runs on
 * it. So the object's word is at this turn, unless the handover has come and a live thread took it.
 * A backup (a handover follows) therefore makes one attempt at the turn and goes live if it is gone;
 * it must not wait for it (once the handover has come, that wait could last for ever) nor stop at
 * every run past its log: a run access of another object may come first, and a claim of some thread's
 * log may wait for the access after it (l2fwd: a thread's log ends at its receive, its run goes on
 * with port_statistics, object 0, which no log names later, then tx_buffer, object 1, whose next
 * claim in thread 1's log waits for that access; stopping at object 0 stalls the backup for ever,
 * which fits `replay stalled: thread 1 waited 10000 ms for object 1` in one crash trial). An access
 * the old master did not make is harmless: nothing logged or released depends on it
 * (_ftmb_tx_records), and it is the access the program makes next. A replay with no handover (the verification replay of a complete log) makes
 * the trailing runs the old master made before it finished, waiting for their turns. Not a
 * follower's (every_ordered: its logs have a claim at every access, and it cannot see the other
 * threads' records ahead of theirs). */
static int replay_past_log_run(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj)
{
    if (__atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) != FTMB_MODE_REPLAY || _ftmb_follow_mode ||
        t->rpos < t->rlen)
        return 0;
    uint64_t mark = t->own[obj];
    if (mark == 0 || !run_continues(t, mark, mark - 1) || logged_at(obj, mark - 1))
        return 0;
    if (!_ftmb_rt.handover) {
        replay_run_access(t, o, obj, mark);
        return 1;
    }
    /* A1 as in replay_take_turn, one attempt: a live thread may have taken the turn. */
    uint64_t w = (mark - 1) << 1;
    if (!atomic_compare_exchange_strong_explicit(&o->word, &w, w | 1, memory_order_acquire, memory_order_relaxed))
        return 0;
    run_access_made(t, obj, mark);
    return 1;
}

/* Replay of an ordered access (the thread's log has records left): a claim at its logged turn, or
 * the next access of the thread's run (see above). */
static void replay_ordered(struct _ftmb_thread *t, struct _ftmb_obj *o, ftmb_obj_t obj, ftmb_site_t site)
{
    uint64_t mark = t->own[obj];
    const struct _ftmb_record *r = replay_peek(t);
    if (!r || (_ftmb_rec_kind(r->head) == _FTMB_REC_ORDERED && _ftmb_rec_obj(r->head) == obj &&
               (r->value >> _FTMB_ORD_SEQ_BITS) == (mark & _FTMB_ORD_MARK_MASK))) {
        t->own[obj] = replay_seq_lock(t, o, obj, _FTMB_REC_ORDERED, site) + 2;
        return;
    }
    if (mark == 0 || !run_continues(t, mark, mark - 1)) {
        char here[320];
        if (_ftmb_rec_kind(r->head) != _FTMB_REC_ORDERED || _ftmb_rec_obj(r->head) != obj)
            (void)replay_take(t, _FTMB_REC_ORDERED, obj, site); /* names the record found instead */
        _ftmb_fatal("replay diverged: thread %u record %llu is a claim of object %u after its access at sequence "
                    "%llu (mark %llu), but the program's access at %s is the thread's %s",
                    t->index, (unsigned long long)t->rpos, obj,
                    (unsigned long long)(((r->value >> _FTMB_ORD_SEQ_BITS) - 2) & _FTMB_ORD_MARK_MASK),
                    (unsigned long long)(r->value >> _FTMB_ORD_SEQ_BITS), site_name(here, sizeof here, site),
                    mark == 0 ? "first access of the object" : "access after quiet operations or at a renewal");
    }
    replay_run_access(t, o, obj, mark);
}

/*
 * The records a transmit of npkts packets logs first: a QUIET record after quiet receives that moved
 * the thread's clock (the time model, io.c), or a TX record after a run.
 *
 * A transmit after a run. A run's accesses log nothing, and the output logger releases a packet
 * once the records its vector counts are stored. A packet that depends on an access the thread made
 * after its latest record would be released with that access in no log: a backup whose log ends at
 * that record counts the thread out there, goes live, and a live thread may take the object's next
 * sequence before the thread makes the access again (replay_past_log_run lets it go live at that
 * access, and even a run made in replay could come too late), so the backup regenerates the
 * released packet with other bytes (a standby failover of libfam's stack family: thread 2, live,
 * claimed the sequence after thread 1's last claim, which thread 1's run had taken in the master).
 * So a transmit of packets while the thread's latest run access came after its latest record (the
 * record count + 1 it noted, run_at, is the count + 1) logs a TX record first, which the packets'
 * vector covers: every access a released packet depends on precedes a record in its thread's log,
 * and a backup replays the log up to that record before it counts the thread out. Replay notes
 * run_at alike (its position + 1 at a run's access) and takes the TX record at the same transmit;
 * a backup past its log there goes live first (the handover) and logs it as the record does.
 */
void _ftmb_tx_records(struct _ftmb_thread *t, unsigned npkts)
{
    int run = npkts != 0 && t->run_at != 0;
    _ftmb_op_enter(t);
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
        if (!run || t->run_at != t->rpos + 1) {
            _ftmb_op_leave(t);
            return;
        }
        if (_ftmb_replaying(t)) {
            (void)replay_take(t, _FTMB_REC_TX, 0, 0);
            replay_op_done(t);
            _ftmb_op_leave(t);
            return;
        }
        /* a backup past its log: the handover came here, it is live now and logs as the record does */
    }
    if (_ftmb_mode_now == FTMB_MODE_RECORD) {
        if (__builtin_expect(t->quiet_time, 0))
            _ftmb_emit_quiet(t); /* the packets depend on the times those quiet receives made (it
                                  * covers the run too: a record after its access) */
        else if (run && t->run_at == t->rec.local + 1)
            emit(t, _ftmb_rec_head(_FTMB_REC_TX, 0, 0), 0); /* R1, before the transmit reads the vector */
    }
    _ftmb_op_leave(t);
}

/* The general path of ordered_enter: op mark, replay (wait for the logged turn), or record. */
__attribute__((noinline)) static struct _ftmb_obj *ordered_enter_general(ftmb_obj_t obj, ftmb_site_t site)
{
    struct _ftmb_obj *o = obj_of(obj, site);
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t); /* left in ordered_leave */
    if (replay_past_log_run(t, o, obj))
        return o;
    if (_ftmb_replaying(t)) {
        replay_ordered(t, o, obj, site);
        return o;
    }
    seq_lock_record(t, o, obj);
    return o;
}

/* The fast path's enter: the object, its sequence lock taken and logged; NULL (nothing done) when
 * the operation needs the general path. */
static inline __attribute__((always_inline)) struct _ftmb_obj *ordered_enter_fast(ftmb_obj_t obj, ftmb_site_t site)
{
    struct _ftmb_thread *t = fast_recorder(obj);
    /* (a quiet count too large for the claim's site field: the general path writes a QUIET record) */
    if (__builtin_expect(t == NULL || t->quiet > _FTMB_EXT_QUIET_MAX, 0))
        return NULL;
    struct _ftmb_obj *o = &_ftmb_rt.objs[obj];
    if (o == NULL) /* never: tells the compiler that NULL here means the general path */
        __builtin_unreachable();
    /* Relaxed first look, then A1 as in seq_lock_record; a held or contended word goes there. */
    uint64_t w = atomic_load_explicit(&o->word, memory_order_relaxed);
    if (__builtin_expect(w & 1, 0) ||
        __builtin_expect(!atomic_compare_exchange_strong_explicit(&o->word, &w, w | 1, memory_order_acquire,
                                                                  memory_order_relaxed),
                         0))
        return NULL;
    (void)site;
    uint64_t seq = w >> 1, mark = t->own[obj];
    t->own[obj] = seq + 2;
    if (__builtin_expect(run_continues(t, mark, seq) && !_ftmb_rt.every_ordered, 1)) {
        t->run_at = t->rec.local + 1; /* (_ftmb_tx_records) */
        return o;
    }
    struct fast_rec f = fast_slot(t);
    emit_fast(&f, _ftmb_rec_head(_FTMB_REC_ORDERED, obj, (uint32_t)t->quiet), _ftmb_ord_value(seq, mark)); /* R1 */
    t->quiet = 0;
    t->quiet_time = 0;
    return o;
}

static inline __attribute__((always_inline)) struct _ftmb_obj *ordered_enter(ftmb_obj_t obj, ftmb_site_t site)
{
    struct _ftmb_obj *o = ordered_enter_fast(obj, site);
    return __builtin_expect(o != NULL, 1) ? o : ordered_enter_general(obj, site);
}

/* The general path of ordered_leave (after the store that released o): count the replayed
 * operation and wake whoever waits for its turn on o, drop the op mark. */
__attribute__((noinline)) static void ordered_leave_general(struct _ftmb_obj *o)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
        replay_op_done(t);
        replay_wake(&o->word);
    }
    _ftmb_op_leave(t);
}

/* The leave of an operation; fast: its enter was ordered_enter_fast's (then the thread is still a
 * recording receiver: nothing else to do). */
static inline __attribute__((always_inline)) void ordered_leave_as(struct _ftmb_obj *o, int fast)
{
    /* Relaxed: we hold the sequence lock, nobody else writes the word. */
    uint64_t w = atomic_load_explicit(&o->word, memory_order_relaxed);
    /* E1: release, pairs with A1 of the next holder (and with replay_wait_word). It comes after
     * R1 in program order, so the record count covering this access is published before the
     * object is released: whoever touches the object next reads a count that covers it. */
    atomic_store_explicit(&o->word, w + 1, memory_order_release);
    /* The general enter of a recording receiver (a full ring, a contended word) did nothing the
     * leave must undo; for everyone else the leave is general too (a thread only ever becomes a
     * receiver, and record mode only ends in a snapshot taking over, where no thread is inside an
     * operation). */
    if (!fast && __builtin_expect(recording_receiver() == NULL, 0))
        ordered_leave_general(o);
}

static inline __attribute__((always_inline)) void ordered_leave(struct _ftmb_obj *o) { ordered_leave_as(o, 0); }

/* The entries whose fast path is inline in the program (ftmb/ftmb.h, ABI v3) come here when it
 * did not apply: passthrough, or the general path. */
void ftmb_ordered_begin_slow(ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now != FTMB_MODE_PASSTHROUGH)
        ordered_enter_general(obj, site);
}

void ftmb_ordered_end_slow(ftmb_obj_t obj)
{
    /* (A recording receiver's end with an object id in range is the inline one.) */
    if (_ftmb_mode_now != FTMB_MODE_PASSTHROUGH)
        ordered_leave(obj < FTMB_MAX_OBJECTS ? &_ftmb_rt.objs[obj] : obj_of(obj, 0));
}

void ftmb_ordered_end_scope(const ftmb_obj_t *held)
{
    ftmb_ordered_end(*held);
}

/* Reentrant objects: a region of obj encloses a call that orders obj again (a function that takes
 * obj, called where obj is already taken). The inner region is part of the access the thread
 * already holds: it takes nothing, logs nothing and waits for nothing, in record and in replay alike
 * (the same code nests the same way in both), so only the outermost region takes and releases obj. */
void ftmb_ordered_reenter(ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return;
    struct _ftmb_thread *t = _ftmb_me();
    for (unsigned i = t->nheld; i-- > 0;)
        if (t->held_obj[i] == obj) {
            t->held_depth[i]++;
            return;
        }
    if (t->nheld == _FTMB_HELD_MAX)
        _ftmb_fatal("ftmb: thread %u holds %d reentrant objects at once, the most one thread may hold "
                    "(object %u, site %u)", t->index, _FTMB_HELD_MAX, obj, site);
    ftmb_ordered_begin(obj, site);
    t->held_obj[t->nheld] = obj;
    t->held_depth[t->nheld] = 1;
    t->nheld++;
}

void ftmb_ordered_reexit(ftmb_obj_t obj)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return;
    struct _ftmb_thread *t = _ftmb_me();
    for (unsigned i = t->nheld; i-- > 0;) {
        if (t->held_obj[i] != obj)
            continue;
        if (--t->held_depth[i] != 0)
            return;
        for (unsigned j = i + 1; j < t->nheld; j++) {
            t->held_obj[j - 1] = t->held_obj[j];
            t->held_depth[j - 1] = t->held_depth[j];
        }
        t->nheld--;
        ftmb_ordered_end(obj);
        return;
    }
    _ftmb_fatal("ftmb: thread %u ends a region of reentrant object %u that it is not inside", t->index, obj);
}

void ftmb_ordered_reexit_scope(const ftmb_obj_t *held)
{
    ftmb_ordered_reexit(*held);
}

/* ---- the dwell: fewer idle iterations in record mode --------------------------------------------- */

/*
 * Replay makes exactly as many quiet operations as the record did (see the top), so the cost of a
 * recovery follows the master's idle iterations since the checkpoint, not its packets: a
 * busy-polling lcore makes millions a second. Any schedule of the master is a valid record, so in
 * record mode a poll that finds nothing first waits a little for input (at most dwell_ns,
 * FTMB_DWELL_US, 20 µs by default), spinning (then yielding), not sleeping: it ends as soon as any
 * input queue of the thread has an entry (the receive then takes it), any quiet-capable object it polls
 * has moved (another thread's enqueue advanced its sequence), or a checkpoint asks the thread to
 * park. An idle thread then makes about one quiet operation per dwell instead of one per loop
 * iteration, and replay, which never dwells, has that few to make. Virtual time does not move
 * during a dwell (it moves with the entries a receive takes, ticks included, and a tick ends the
 * dwell), so a program's timers fire at the same receives as without it. Polls dwell only after
 * _FTMB_DWELL_AFTER quiet operations in a row (a loop that spins, not one that polls a few times
 * and then sleeps), and a thread that has called a sleep (t->slept) never dwells: it gives the CPU
 * away when idle by itself (the examples' nanosleep after 64 empty polls), a sleep is one quiet
 * operation per sleep period, and a dwell would turn its idle time into spinning that takes the
 * loggers' CPU (the examples' release latency grew tenfold on a loaded 2-CPU machine).
 */
static void dwell_watch(struct _ftmb_thread *t, ftmb_obj_t obj, uint64_t seq)
{
    unsigned i = 0;
    while (i < _FTMB_DWELL_OBJS && t->dwell_obj[i] != obj + 1)
        i++;
    if (i == _FTMB_DWELL_OBJS)
        i = t->dwell_next++ % _FTMB_DWELL_OBJS;
    t->dwell_obj[i] = obj + 1;
    t->dwell_seq[i] = seq;
}

/* 1 if something the thread polls has input for it, or a checkpoint asks it to park. */
static int dwell_over(struct _ftmb_thread *t)
{
    for (uint32_t m = t->dwell_queues; m; m &= m - 1) {
        struct _ftmb_inq *q = &_ftmb_rt.inq[__builtin_ctz(m)];
        if (_ftmb_ring_refresh(&q->ring) != 0) /* (only the owner consumes: a refresh is its own) */
            return 1;
    }
    for (unsigned i = 0; i < _FTMB_DWELL_OBJS; i++) {
        if (!t->dwell_obj[i])
            continue;
        /* Relaxed: a hint; the call that follows takes the object's lock (acquire) itself. */
        uint64_t w = atomic_load_explicit(&_ftmb_rt.objs[t->dwell_obj[i] - 1].word, memory_order_relaxed);
        if (w >> 1 != t->dwell_seq[i])
            return 1;
    }
    /* Relaxed: a hint, as at the top of a receive; the park re-reads it with acquire. */
    uint64_t req = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_relaxed);
    return req != t->ckpt_seen && atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_relaxed) < req;
}

void _ftmb_dwell(struct _ftmb_thread *t)
{
    if (!_ftmb_rt.dwell_ns || _ftmb_mode_now != FTMB_MODE_RECORD || _ftmb_rt.standby || t->slept ||
        t->quiet < _FTMB_DWELL_AFTER)
        return;
    uint64_t end = _ftmb_now_ns(CLOCK_MONOTONIC) + _ftmb_rt.dwell_ns;
    for (unsigned spins = 0; !dwell_over(t); spins++) {
        /* Pause, then yield: with more threads than CPUs the loggers (the input's producer) run
         * meanwhile, as they would between the iterations of a loop that yields when idle. */
        _ftmb_backoff(spins);
        if ((spins >= 64 || (spins & 7) == 7) && _ftmb_now_ns(CLOCK_MONOTONIC) >= end) {
            _ftmb_check_peers(); /* (rate-limited: a clock read) */
            return;
        }
    }
}

/* ---- quiet-capable ordered calls ---------------------------------------------------------------- */

/*
 * A library call that provably writes nothing when it returns its quiet result (the models'
 * `quiet_result`: an empty rte_ring dequeue reads the ring, finds no entry and moves no head) has
 * no effect any other thread could depend on: its only effect is its result. The rewriter puts it
 * between ftmb_ordered_quiet_begin and ftmb_ordered_quiet_end (with whether it returned that
 * result). Record: the call runs under the object's sequence lock like any ordered access; one that
 * returned its quiet result gives the lock back without advancing the sequence and is counted as a
 * quiet operation of the thread (no record); one that did not logs an ORDQ record (the sequence,
 * and the thread's quiet count since its previous loud record) before the sequence moves on (R1
 * before E1, as for every ordered access). Replay: where the count says the call was quiet, it is
 * not made (begin returns 1: the emitted code returns the quiet result, with zero in the entries
 * left); the loud ones wait for their logged turn as every ordered access does, and one that
 * returns the quiet result there diverged. General path only: an idle poll is not the hot path.
 */
int ftmb_ordered_quiet_begin(ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return 0;
    struct _ftmb_obj *o = obj_of(obj, site);
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t); /* left in ftmb_ordered_quiet_end, or here for a quiet replayed call */
    if (_ftmb_quiet_past_log(t)) { /* the verification replay past this thread's log (see there) */
        _ftmb_op_leave(t);
        return 1;
    }
    if (_ftmb_replaying(t)) {
        if (_ftmb_replay_quiet(t)) {
            _ftmb_op_leave(t);
            return 1;
        }
        t->own[obj] = replay_seq_lock(t, o, obj, _FTMB_REC_ORDQ, site) + 2;
        return 0;
    }
    /* Record: take the sequence lock; the record (if any) is written at the end. */
    uint64_t w = atomic_load_explicit(&o->word, memory_order_relaxed); /* relaxed first look */
    for (unsigned spins = 0;;) {
        if (w & 1) {
            _ftmb_backoff(spins++);
            w = atomic_load_explicit(&o->word, memory_order_relaxed);
            continue;
        }
        /* A1: acquire, pairs with E1 (or the quiet release below) of the previous holder. */
        if (atomic_compare_exchange_weak_explicit(&o->word, &w, w | 1, memory_order_acquire, memory_order_relaxed))
            return 0;
    }
}

void ftmb_ordered_quiet_end(int quiet, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return;
    struct _ftmb_obj *o = obj_of(obj, site);
    struct _ftmb_thread *t = _ftmb_me();
    /* Relaxed: we hold the sequence lock, nobody else writes the word. */
    uint64_t w = atomic_load_explicit(&o->word, memory_order_relaxed);
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) { /* a loud call, made at its logged turn */
        if (quiet) {
            char here[320];
            _ftmb_fatal("replay diverged: thread %u record %llu logs a call on object %u that returned a result, "
                        "but the program's call at %s returned its quiet result (nothing)",
                        t->index, (unsigned long long)t->rpos - 1, obj, site_name(here, sizeof here, site));
        }
        atomic_store_explicit(&o->word, w + 1, memory_order_release); /* E1 */
        replay_wake(&o->word);
        replay_op_done(t);
        _ftmb_op_leave(t);
        return;
    }
    if (quiet) {
        /* Nothing written: give the lock back at the same sequence (release: the next holder's A1
         * sees the state this call read, which it did not change) and count the call. */
        atomic_store_explicit(&o->word, w & ~1ull, memory_order_release);
        t->quiet++;
    } else {
        emit_loud(t, _ftmb_rec_head(_FTMB_REC_ORDQ, obj, 0), w >> 1, 1); /* R1 */
        t->own[obj] = (w >> 1) + 2; /* a logged access: the thread's run on the object starts here */
        atomic_store_explicit(&o->word, w + 1, memory_order_release);   /* E1, after R1 */
    }
    dwell_watch(t, obj, (w >> 1) + !quiet);
    _ftmb_op_leave(t);
    if (quiet)
        _ftmb_dwell(t); /* outside the operation: a checkpoint's signal parks the thread in it */
}

/* ---- locks: the order is taken inside the program's lock ------------------------------------ */

/* Record an acquisition of lock-kind object obj while its lock is held (f: where fast_recorder()
 * said the record goes; NULL: the general path's emit). */
static inline __attribute__((always_inline)) void pal_locked(struct _ftmb_thread *t, struct _ftmb_obj *o,
                                                             ftmb_obj_t obj, ftmb_site_t site, unsigned kind,
                                                             int shared, const struct fast_rec *f)
{
    /* A wrapper's acquisition takes the sequence atomically, also for a lock held alone: readers of an
     * rwlock hold it together, and one object id may stand for several locks (an array of locks,
     * locks the analysis pooled by type), whose holders would otherwise take the same sequence. A
     * held access (ftmb_held_access) is under one lock held exclusively: replay only checks its
     * sequence, it cannot order holders of different locks, so nothing shares its object's word
     * concurrently and a load and a store do (no locked instruction). Relaxed: the program's lock
     * orders the rest. */
    (void)shared;
    uint64_t s;
    if (kind == _FTMB_REC_HELD) {
        s = atomic_load_explicit(&o->word, memory_order_relaxed);
        atomic_store_explicit(&o->word, s + 1, memory_order_relaxed);
    } else
        s = atomic_fetch_add_explicit(&o->word, 1, memory_order_relaxed);
    if (f)
        emit_fast(f, _ftmb_rec_head(kind, obj, site), s);
    else
        emit(t, _ftmb_rec_head(kind, obj, site), s);
    /* The program releases its lock after this: its unlock (release) comes after R1, so the next
     * acquirer, and anyone it synchronizes with, reads a count covering this record. */
}

__attribute__((noinline)) static void held_access_general(ftmb_obj_t obj, ftmb_site_t site)
{
    struct _ftmb_obj *o = obj_of(obj, site);
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    if (!_ftmb_replaying(t))
        pal_locked(t, o, obj, site, _FTMB_REC_HELD, 0, NULL);
    else {
        uint64_t s = replay_take(t, _FTMB_REC_HELD, obj, site)->value;
        /* The caller already holds the lock, so its turn has come unless the log is inconsistent.
         * Relaxed (here and below): the held lock orders the accesses to this word. */
        if (atomic_load_explicit(&o->word, memory_order_relaxed) != s)
            _ftmb_fatal("replay diverged: thread %u holds the lock of object %u at site %u at sequence %llu, the "
                        "log says %llu",
                        t->index, obj, site, (unsigned long long)atomic_load(&o->word), (unsigned long long)s);
        atomic_store_explicit(&o->word, s + 1, memory_order_relaxed);
        replay_op_done(t);
    }
    _ftmb_op_leave(t);
}

void ftmb_held_access_slow(ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now != FTMB_MODE_PASSTHROUGH) /* (the fast path is inline: ftmb/ftmb.h) */
        held_access_general(obj, site);
}

typedef int (*lock_fn)(volatile void *);

/* Record mode: acquire (or try) the lock, then log the acquisition or the failed try inside it. */
static inline __attribute__((always_inline)) int locked_acquire_record(struct _ftmb_thread *t, lock_fn acquire,
                                                                       volatile void *lock, ftmb_obj_t obj,
                                                                       ftmb_site_t site, int is_try, int shared,
                                                                       const struct fast_rec *f)
{
    int rc = acquire(lock);
    if (__builtin_expect(rc == 0, 1))
        pal_locked(t, &_ftmb_rt.objs[obj], obj, site, _FTMB_REC_LOCK, shared, f);
    else if (is_try && f)
        emit_fast(f, _ftmb_rec_head(_FTMB_REC_TRYLOCK_FAIL, obj, site), (uint64_t)rc);
    else if (is_try)
        emit(t, _ftmb_rec_head(_FTMB_REC_TRYLOCK_FAIL, obj, site), (uint64_t)rc);
    return rc;
}

/*
 * The general path of one acquisition through a wrapper. In replay, a thread first waits for its
 * logged turn on the object and only then takes the program's lock (waiting inside the lock would
 * deadlock); a try-acquire that succeeded in the log blocks, one that failed fails without trying.
 */
__attribute__((noinline)) static int locked_acquire_general(lock_fn acquire, lock_fn blocking, volatile void *lock,
                                                            ftmb_obj_t obj, ftmb_site_t site, int is_try, int shared)
{
    struct _ftmb_obj *o = obj_of(obj, site);
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    int rc;
    if (_ftmb_replaying(t)) {
        const struct _ftmb_record *r = replay_take(t, _FTMB_REC_LOCK, obj, site);
        if (_ftmb_rec_kind(r->head) == _FTMB_REC_TRYLOCK_FAIL) {
            if (!is_try)
                _ftmb_fatal("replay diverged: thread %u record %llu is a failed try-lock on object %u but site %u "
                            "blocks",
                            t->index, (unsigned long long)(t->rpos - 1), obj, site);
            rc = (int)r->value;
        } else {
            replay_wait_word(t, &o->word, r->value, obj);
            rc = blocking(lock);
            if (rc == 0) {
                /* Release: pairs with the acquire in replay_wait_word of the thread whose turn is next. */
                if (shared)
                    atomic_fetch_add_explicit(&o->word, 1, memory_order_release);
                else
                    atomic_store_explicit(&o->word, r->value + 1, memory_order_release);
                replay_wake(&o->word);
            }
        }
        replay_op_done(t);
    } else
        rc = locked_acquire_record(t, acquire, lock, obj, site, is_try, shared, NULL);
    _ftmb_op_leave(t);
    return rc;
}

static inline __attribute__((always_inline)) int locked_acquire(lock_fn acquire, lock_fn blocking,
                                                                volatile void *lock, ftmb_obj_t obj,
                                                                ftmb_site_t site, int is_try, int shared)
{
    struct _ftmb_thread *t = fast_recorder(obj);
    if (__builtin_expect(t != NULL, 1)) {
        struct fast_rec f = fast_slot(t);
        return locked_acquire_record(t, acquire, lock, obj, site, is_try, shared, &f);
    }
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return acquire(lock);
    return locked_acquire_general(acquire, blocking, lock, obj, site, is_try, shared);
}

/* For lock families outside the core (the DPDK adapter's rte_rwlock). */
int _ftmb_locked_acquire(lock_fn acquire, lock_fn blocking, volatile void *lock, ftmb_obj_t obj, ftmb_site_t site,
                         int is_try, int shared)
{
    return locked_acquire(acquire, blocking, lock, obj, site, is_try, shared);
}

#define FTMB_LOCK_FAMILY(fam, type)                                                                          \
    static int fam##_lock_(volatile void *l) { return fam##_lock((type *)l); }                            \
    static int fam##_trylock_(volatile void *l) { return fam##_trylock((type *)l); }                      \
    int ftmb_##fam##_lock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)                          \
    {                                                                                                        \
        return locked_acquire(fam##_lock_, fam##_lock_, lock, obj, site, 0, 0);                              \
    }                                                                                                        \
    int ftmb_##fam##_trylock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)                       \
    {                                                                                                        \
        return locked_acquire(fam##_trylock_, fam##_lock_, lock, obj, site, 1, 0);                           \
    }                                                                                                        \
    int ftmb_##fam##_unlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)                        \
    {                                                                                                        \
        (void)obj;                                                                                           \
        (void)site;                                                                                          \
        return fam##_unlock((type *)lock);                                                                   \
    }

FTMB_LOCK_FAMILY(pthread_mutex, pthread_mutex_t)
FTMB_LOCK_FAMILY(pthread_spin, pthread_spinlock_t)

static int rw_rd(volatile void *l) { return pthread_rwlock_rdlock((pthread_rwlock_t *)l); }
static int rw_wr(volatile void *l) { return pthread_rwlock_wrlock((pthread_rwlock_t *)l); }
static int rw_tryrd(volatile void *l) { return pthread_rwlock_tryrdlock((pthread_rwlock_t *)l); }
static int rw_trywr(volatile void *l) { return pthread_rwlock_trywrlock((pthread_rwlock_t *)l); }

int ftmb_pthread_rwlock_rdlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)
{
    return locked_acquire(rw_rd, rw_rd, lock, obj, site, 0, 1);
}
int ftmb_pthread_rwlock_wrlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)
{
    return locked_acquire(rw_wr, rw_wr, lock, obj, site, 0, 0);
}
int ftmb_pthread_rwlock_tryrdlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)
{
    return locked_acquire(rw_tryrd, rw_rd, lock, obj, site, 1, 1);
}
int ftmb_pthread_rwlock_trywrlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)
{
    return locked_acquire(rw_trywr, rw_wr, lock, obj, site, 1, 0);
}
int ftmb_pthread_rwlock_unlock(volatile void *lock, ftmb_obj_t obj, ftmb_site_t site)
{
    (void)obj;
    (void)site;
    return pthread_rwlock_unlock((pthread_rwlock_t *)lock);
}

/* rte_spinlock_t is { volatile int locked; }: the same word DPDK's inline functions use. */
static int rte_sl_trylock(volatile void *sl)
{
    int expected = 0;
    /* Acquire pairs with the release in ftmb_rte_spinlock_unlock (or DPDK's own unlock). */
    return atomic_compare_exchange_strong_explicit((volatile _Atomic int *)sl, &expected, 1, memory_order_acquire,
                                                   memory_order_relaxed)
               ? 0
               : EBUSY;
}
static int rte_sl_lock(volatile void *sl)
{
    while (rte_sl_trylock(sl) != 0)
        while (atomic_load_explicit((volatile _Atomic int *)sl, memory_order_relaxed)) /* relaxed: only a hint */
            _ftmb_cpu_relax();
    return 0;
}

void ftmb_rte_spinlock_lock(volatile void *sl, ftmb_obj_t obj, ftmb_site_t site)
{
    locked_acquire(rte_sl_lock, rte_sl_lock, sl, obj, site, 0, 0);
}
int ftmb_rte_spinlock_trylock(volatile void *sl, ftmb_obj_t obj, ftmb_site_t site)
{
    /* rte_spinlock_trylock returns 1 on success */
    return locked_acquire(rte_sl_trylock, rte_sl_lock, sl, obj, site, 1, 0) == 0;
}
void ftmb_rte_spinlock_unlock(volatile void *sl, ftmb_obj_t obj, ftmb_site_t site)
{
    (void)obj;
    (void)site;
    atomic_store_explicit((volatile _Atomic int *)sl, 0, memory_order_release); /* pairs with rte_sl_trylock */
}

/* ---- atomics: performed inside the object's sequence lock, so log order = real order ---------- */

/*
 * In passthrough an atomic is the builtin itself. When logging, it runs inside the object's
 * sequence lock (A1 ... E1): the lock makes the order of operations on the object the order of
 * their sequence numbers, and it also makes the operation atomic, so inside it the operation is a
 * plain load and store (one read-modify-write instruction per operation, the lock's, instead of
 * two). This relies on every write to an object logged as atomic going through the runtime, which
 * instrumentation guarantees (an uninstrumented concurrent writer would break replay anyway).
 * Memory order: A1 is a sequentially consistent RMW (a full barrier), so the operation is ordered
 * after everything before it; the store inside is a release store whatever order the caller asked
 * for (on x86 every store is one; the order is not looked at, which keeps the fast path's registers
 * free), and E1 releases the lock after it; the next atomic on any logged object
 * starts with its own A1, which keeps sequentially consistent operations in one total order.
 */
/* The store inside the lock, with a constant order: an order known only at run time compiles to a
 * sequentially consistent store (an xchg on x86, a second locked instruction). */
#define STORE_INSIDE(p, v, memorder)                                                                         \
    do {                                                                                                     \
        (void)(memorder);                                                                                    \
        __atomic_store_n(p, v, __ATOMIC_RELEASE);                                                            \
    } while (0)

/*
 * Each logged atomic's fast path is inline in the program (ftmb/ftmb.h, ABI v3: the same sequence
 * lock, plain load and release store). NAME_slow is what it calls otherwise: the builtin in
 * passthrough, else the general enter, BODY, the general leave. BODY, in braces, works on `p` and
 * `o_` and ends with LEAVE(o_) and a return.
 */
#define LOGGED_FN(RET, NAME, T, PARAMS, ARGS, PASSTHROUGH, BODY)                                             \
    RET NAME##_slow PARAMS                                                                                   \
    {                                                                                                        \
        volatile T *p = ptr;                                                                                 \
        const int fast_ = 0;                                                                                 \
        if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)                                                         \
            return PASSTHROUGH;                                                                              \
        struct _ftmb_obj *o_ = ordered_enter_general(obj, site);                                             \
        BODY                                                                                                 \
    }
#define LEAVE(o) ordered_leave_as(o, fast_)

#define FTMB_ATOMIC_RMW(N, T, OP, EXPR)                                                                      \
    LOGGED_FN(T, ftmb_atomic_fetch_##OP##_##N, T,                                                            \
              (volatile void *ptr, T val, int memorder, ftmb_obj_t obj, ftmb_site_t site),                   \
              (ptr, val, memorder, obj, site), __atomic_fetch_##OP(p, val, memorder), {                      \
                  T old = __atomic_load_n(p, __ATOMIC_RELAXED); /* the sequence lock excludes writers */     \
                  STORE_INSIDE(p, (T)(EXPR), memorder);                                                      \
                  LEAVE(o_);                                                                                 \
                  return old;                                                                                \
              })                                                                                             \
    LOGGED_FN(T, ftmb_atomic_##OP##_fetch_##N, T,                                                            \
              (volatile void *ptr, T val, int memorder, ftmb_obj_t obj, ftmb_site_t site),                   \
              (ptr, val, memorder, obj, site), __atomic_##OP##_fetch(p, val, memorder), {                    \
                  T old = __atomic_load_n(p, __ATOMIC_RELAXED); /* the sequence lock excludes writers */     \
                  T new_ = (T)(EXPR);                                                                        \
                  STORE_INSIDE(p, new_, memorder);                                                           \
                  LEAVE(o_);                                                                                 \
                  return new_;                                                                               \
              })

#define FTMB_ATOMIC_SIZE(N, T)                                                                               \
    LOGGED_FN(T, ftmb_atomic_load_##N, const T,                                                              \
              (const volatile void *ptr, int memorder, ftmb_obj_t obj, ftmb_site_t site),                    \
              (ptr, memorder, obj, site), __atomic_load_n(p, memorder), {                                    \
                  (void)memorder; /* (unused in the general copy) */                                         \
                  T v = __atomic_load_n(p, __ATOMIC_RELAXED); /* ordered by A1 */                            \
                  LEAVE(o_);                                                                                 \
                  return v;                                                                                  \
              })                                                                                             \
    LOGGED_FN(void, ftmb_atomic_store_##N, T,                                                                \
              (volatile void *ptr, T val, int memorder, ftmb_obj_t obj, ftmb_site_t site),                   \
              (ptr, val, memorder, obj, site), __atomic_store_n(p, val, memorder), {                         \
                  STORE_INSIDE(p, val, memorder);                                                            \
                  LEAVE(o_);                                                                                 \
                  return;                                                                                    \
              })                                                                                             \
    LOGGED_FN(T, ftmb_atomic_exchange_##N, T,                                                                \
              (volatile void *ptr, T val, int memorder, ftmb_obj_t obj, ftmb_site_t site),                   \
              (ptr, val, memorder, obj, site), __atomic_exchange_n(p, val, memorder), {                      \
                  T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                              \
                  STORE_INSIDE(p, val, memorder);                                                            \
                  LEAVE(o_);                                                                                 \
                  return old;                                                                                \
              })                                                                                             \
    /* Logged, a weak CAS never fails spuriously: replay could not reproduce that. */                        \
    LOGGED_FN(_Bool, ftmb_atomic_compare_exchange_##N, T,                                                    \
              (volatile void *ptr, void *expected, T desired, _Bool weak, int success_memorder,              \
               int failure_memorder, ftmb_obj_t obj, ftmb_site_t site),                                      \
              (ptr, expected, desired, weak, success_memorder, failure_memorder, obj, site),                 \
              __atomic_compare_exchange_n(p, (T *)expected, desired, weak, success_memorder, failure_memorder), {\
                  (void)weak;                                                                                \
                  (void)failure_memorder; /* (unused in the general copy) */                                 \
                  T cur = __atomic_load_n(p, __ATOMIC_RELAXED);                                              \
                  _Bool ok = cur == *(T *)expected;                                                          \
                  if (ok)                                                                                    \
                      STORE_INSIDE(p, desired, success_memorder);                                            \
                  else                                                                                       \
                      *(T *)expected = cur;                                                                  \
                  LEAVE(o_);                                                                                 \
                  return ok;                                                                                 \
              })                                                                                             \
    FTMB_ATOMIC_RMW(N, T, add, old + val)                                                                    \
    FTMB_ATOMIC_RMW(N, T, sub, old - val)                                                                    \
    FTMB_ATOMIC_RMW(N, T, and, old & val)                                                                    \
    FTMB_ATOMIC_RMW(N, T, or, old | val)                                                                     \
    FTMB_ATOMIC_RMW(N, T, xor, old ^ val)

FTMB_ATOMIC_SIZE(1, ftmb_u8)
FTMB_ATOMIC_SIZE(2, ftmb_u16)
FTMB_ATOMIC_SIZE(4, ftmb_u32)
FTMB_ATOMIC_SIZE(8, ftmb_u64)

/* The rte_atomic wrappers keep the builtin inside the lock: they are rarer and DPDK's own
 * functions are full barriers, which the builtin keeps. */
#define ORDERED_OP(obj, site, expr)                                                                          \
    do {                                                                                                     \
        if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)                                                        \
            return expr;                                                                                     \
        struct _ftmb_obj *o_ = ordered_enter(obj, site);                                                    \
        __typeof__(expr) r_ = expr;                                                                          \
        ordered_leave(o_);                                                                                   \
        return r_;                                                                                           \
    } while (0)

#define ORDERED_VOID(obj, site, stmt)                                                                        \
    do {                                                                                                     \
        if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH) {                                                      \
            stmt;                                                                                            \
            return;                                                                                          \
        }                                                                                                    \
        struct _ftmb_obj *o_ = ordered_enter(obj, site);                                                    \
        stmt;                                                                                                \
        ordered_leave(o_);                                                                                   \
    } while (0)

/* rte_atomicN_t is { volatile intN_t cnt; }; DPDK's inline functions are sequentially consistent. */
#define SC __ATOMIC_SEQ_CST
#define FTMB_RTE_ATOMIC(B)                                                                                   \
    typedef int##B##_t i##B;                                                                                 \
    void ftmb_rte_atomic##B##_add(volatile void *v, i##B inc, ftmb_obj_t obj, ftmb_site_t site)                        \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_fetch_add((volatile i##B *)v, inc, SC));                           \
    }                                                                                                        \
    void ftmb_rte_atomic##B##_sub(volatile void *v, i##B dec, ftmb_obj_t obj, ftmb_site_t site)                        \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_fetch_sub((volatile i##B *)v, dec, SC));                           \
    }                                                                                                        \
    void ftmb_rte_atomic##B##_inc(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                                 \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_fetch_add((volatile i##B *)v, 1, SC));                             \
    }                                                                                                        \
    void ftmb_rte_atomic##B##_dec(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                                 \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_fetch_sub((volatile i##B *)v, 1, SC));                             \
    }                                                                                                        \
    i##B ftmb_rte_atomic##B##_add_return(volatile void *v, i##B inc, ftmb_obj_t obj, ftmb_site_t site)                 \
    {                                                                                                        \
        ORDERED_OP(obj, site, __atomic_add_fetch((volatile i##B *)v, inc, SC));                             \
    }                                                                                                        \
    i##B ftmb_rte_atomic##B##_sub_return(volatile void *v, i##B dec, ftmb_obj_t obj, ftmb_site_t site)                 \
    {                                                                                                        \
        ORDERED_OP(obj, site, __atomic_sub_fetch((volatile i##B *)v, dec, SC));                             \
    }                                                                                                        \
    int ftmb_rte_atomic##B##_inc_and_test(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                         \
    {                                                                                                        \
        ORDERED_OP(obj, site, (int)(__atomic_add_fetch((volatile i##B *)v, 1, SC) == 0));                   \
    }                                                                                                        \
    int ftmb_rte_atomic##B##_dec_and_test(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                         \
    {                                                                                                        \
        ORDERED_OP(obj, site, (int)(__atomic_sub_fetch((volatile i##B *)v, 1, SC) == 0));                   \
    }                                                                                                        \
    int ftmb_rte_atomic##B##_test_and_set(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                         \
    {                                                                                                        \
        i##B zero = 0;                                                                                       \
        ORDERED_OP(obj, site, (int)__atomic_compare_exchange_n((volatile i##B *)v, &zero, 1, 0, SC, SC));    \
    }                                                                                                        \
    i##B ftmb_rte_atomic##B##_read(const volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                          \
    {                                                                                                        \
        ORDERED_OP(obj, site, __atomic_load_n((const volatile i##B *)v, SC));                               \
    }                                                                                                        \
    void ftmb_rte_atomic##B##_set(volatile void *v, i##B new_value, ftmb_obj_t obj, ftmb_site_t site)                  \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_store_n((volatile i##B *)v, new_value, SC));                       \
    }                                                                                                        \
    void ftmb_rte_atomic##B##_clear(volatile void *v, ftmb_obj_t obj, ftmb_site_t site)                               \
    {                                                                                                        \
        ORDERED_VOID(obj, site, __atomic_store_n((volatile i##B *)v, 0, SC));                               \
    }                                                                                                        \
    int ftmb_rte_atomic##B##_cmpset(volatile void *dst, uint##B##_t exp, uint##B##_t src, ftmb_obj_t obj,    \
                                    ftmb_site_t site)                                                        \
    {                                                                                                        \
        ORDERED_OP(obj, site, (int)__atomic_compare_exchange_n((volatile uint##B##_t *)dst, &exp, src, 0, SC, \
                                                               SC));                                         \
    }

FTMB_RTE_ATOMIC(16)
FTMB_RTE_ATOMIC(32)
FTMB_RTE_ATOMIC(64)

/* ---- nondeterministic values ---------------------------------------------------------------- */

/* Log (record) or fetch (replay) one value; in passthrough the caller's value is returned. A warm
 * standby still initializing cannot know the master's value: it waits here for the takeover and
 * replays the rest of the initialization from the log (its records so far must match the log's). */
static uint64_t nd_value(unsigned source, uint64_t (*real)(void))
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return real();
    if (_ftmb_rt.standby)
        _ftmb_standby_takeover();
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    uint64_t v;
    if (_ftmb_replaying(t)) {
        v = replay_take(t, _FTMB_REC_ND, source, 0)->value;
        replay_op_done(t);
    } else {
        v = real();
        emit(t, _ftmb_rec_head(_FTMB_REC_ND, source, 0), v);
    }
    _ftmb_op_leave(t);
    return v;
}

static uint64_t real_clock(void) { return _ftmb_now_ns(CLOCK_REALTIME); }

/* The calling thread's time in ns since the epoch, under the time model described at the top. */
static uint64_t now_ns(void)
{
    if (_ftmb_mode_now != FTMB_MODE_PASSTHROUGH) {
        struct _ftmb_thread *t = _ftmb_me();
        if (t->vtime_ns)
            return t->vtime_ns;
    }
    return nd_value(_FTMB_ND_CLOCK, real_clock);
}

long ftmb_time(long *tloc)
{
    long s = (long)(now_ns() / 1000000000ull);
    if (tloc)
        *tloc = s;
    return s;
}

int ftmb_clock_gettime(int clockid, struct timespec *tp)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return clock_gettime(clockid, tp);
    uint64_t ns = now_ns();
    tp->tv_sec = (time_t)(ns / 1000000000ull);
    tp->tv_nsec = (long)(ns % 1000000000ull);
    return 0;
}

int ftmb_gettimeofday(struct timeval *tv, void *tz)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return gettimeofday(tv, tz);
    uint64_t ns = now_ns();
    if (tv) {
        tv->tv_sec = (time_t)(ns / 1000000000ull);
        tv->tv_usec = (suseconds_t)((ns % 1000000000ull) / 1000);
    }
    return 0;
}

static pthread_once_t calibrate_once = PTHREAD_ONCE_INIT;
static void calibrate(void)
{
    if (!_ftmb_rt.tsc_hz)
        _ftmb_rt.tsc_hz = _ftmb_calibrate_tsc_hz();
}

/* The session's rate (set by ftmb_init from the input logger or the replay log, before any worker
 * exists), else measured once; pthread_once orders the write before every reader. */
static uint64_t session_tsc_hz(void)
{
    pthread_once(&calibrate_once, calibrate);
    return _ftmb_rt.tsc_hz;
}

ftmb_u64 ftmb_rte_rdtsc(void)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH) {
#if defined(__x86_64__) || defined(__i386__)
        return __builtin_ia32_rdtsc();
#else
        return _ftmb_now_ns(CLOCK_MONOTONIC);
#endif
    }
    return (uint64_t)((unsigned __int128)now_ns() * session_tsc_hz() / 1000000000u);
}

ftmb_u64 ftmb_rte_get_tsc_hz(void) { return session_tsc_hz(); }

static uint64_t real_rand(void) { return (uint64_t)(uint32_t)rand(); }
static uint64_t real_random(void) { return (uint64_t)random(); }

int ftmb_rand(void) { return (int)nd_value(_FTMB_ND_RAND, real_rand); }
long ftmb_random(void) { return (long)nd_value(_FTMB_ND_RANDOM, real_random); }

/* Shared by ftmb_rte_rand in the DPDK adapter. */
uint64_t _ftmb_nd_logged(unsigned source, uint64_t (*real)(void)) { return nd_value(source, real); }

/* The `len` bytes at `buf`, 8 per record after the record that announced them: logged (record) or
 * overwritten with the logged ones (replay). */
static void nd_bytes(struct _ftmb_thread *t, unsigned source, void *buf, size_t len)
{
    for (size_t off = 0; off < len; off += 8) {
        size_t n = len - off < 8 ? len - off : 8;
        uint64_t v = 0;
        if (_ftmb_replaying(t)) {
            v = replay_take(t, _FTMB_REC_ND, source, 0)->value;
            replay_op_done(t);
            memcpy((char *)buf + off, &v, n);
        } else {
            memcpy(&v, (char *)buf + off, n);
            emit(t, _ftmb_rec_head(_FTMB_REC_ND, source, 0), v);
        }
    }
}

static _Thread_local struct {
    void *buf;
    size_t len;
    unsigned flags;
    long ret;
} gr;

static uint64_t real_getrandom(void)
{
    gr.ret = (long)getrandom(gr.buf, gr.len, gr.flags);
    return (uint64_t)gr.ret;
}

long ftmb_getrandom(void *buf, ftmb_size_t buflen, unsigned flags)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return (long)getrandom(buf, buflen, flags);
    struct _ftmb_thread *t = _ftmb_me();
    gr.buf = buf;
    gr.len = buflen;
    gr.flags = flags;
    long ret = (long)nd_value(_FTMB_ND_GETRANDOM, real_getrandom);
    if (ret > 0)
        nd_bytes(t, _FTMB_ND_GETRANDOM, buf, (size_t)ret); /* the bytes follow the return value */
    return ret;
}

static _Thread_local ftmb_size_t nd_bytes_size;
static uint64_t real_nd_bytes_size(void) { return nd_bytes_size; }

void ftmb_nondet_bytes(void *p, ftmb_size_t size)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return;
    if (!p) /* an optional out argument the call was not given (select's sets) */
        size = 0;
    nd_bytes_size = size;
    uint64_t logged = nd_value(_FTMB_ND_BYTES, real_nd_bytes_size);
    struct _ftmb_thread *t = _ftmb_me();
    if (logged != size)
        _ftmb_fatal("replay diverged: thread %u record %llu is a library value of %llu bytes but the program's "
                    "call gives %llu",
                    t->index, (unsigned long long)t->rpos - 1, (unsigned long long)logged,
                    (unsigned long long)size);
    nd_bytes(t, _FTMB_ND_BYTES, p, size);
}

/* A variable only signal handlers write is an input from outside. A read that sees what the
 * thread's previous external read of the same variable saw is quiet (counted, see the top); one that
 * sees another value, or reads another variable, logs the value, and replay hands each thread its
 * own values (no waiting on other threads; no signal comes in a replay, the logged values carry the
 * handler's effect). The caller dereferences the returned pointer at once, so one slot per thread
 * is enough (a handler interrupting between the call and the dereference reads its own variables
 * uninstrumented: nothing replays a handler). */
static _Thread_local _Alignas(8) unsigned char external_slot[8];

static uint64_t external_value(const volatile void *p, ftmb_size_t size)
{
    switch (size) {
    case 1: return *(const volatile uint8_t *)p;
    case 2: return *(const volatile uint16_t *)p;
    case 4: return *(const volatile uint32_t *)p;
    default: return *(const volatile uint64_t *)p;
    }
}

const volatile void *ftmb_external_read(const volatile void *p, ftmb_size_t size)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return p;
    if (size != 1 && size != 2 && size != 4 && size != 8)
        _ftmb_fatal("ftmb_external_read of %zu bytes at %p: only 1, 2, 4 or 8 bytes are logged", (size_t)size,
                    (const void *)p);
    if (_ftmb_rt.standby) /* only the master's log has the value: take over here (see nd_value) */
        _ftmb_standby_takeover();
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    int same_variable = t->ext_addr == p && t->ext_size == size;
    uint64_t v;
    if (same_variable && _ftmb_quiet_past_log(t)) {
        v = t->ext_value;
    } else if (_ftmb_replaying(t)) {
        if (_ftmb_replay_quiet(t)) {
            if (!same_variable)
                _ftmb_fatal("replay diverged: thread %u reads an external variable of %zu bytes where the log has "
                            "a read of the variable it read before (record %llu)",
                            t->index, (size_t)size, (unsigned long long)t->rpos);
            v = t->ext_value;
        } else {
            v = take_loud(t, _FTMB_REC_ND, _FTMB_ND_EXTERNAL)->value;
            replay_op_done(t);
        }
    } else {
        v = external_value(p, size);
        if (same_variable && v == t->ext_value)
            t->quiet++;
        else
            emit_loud(t, _ftmb_rec_head(_FTMB_REC_ND, _FTMB_ND_EXTERNAL, 0), v, 1);
    }
    t->ext_addr = p;
    t->ext_size = size;
    t->ext_value = v;
    _ftmb_op_leave(t);
    uint8_t v1 = (uint8_t)v;
    uint16_t v2 = (uint16_t)v;
    uint32_t v4 = (uint32_t)v;
    const void *sized[9] = {[1] = &v1, [2] = &v2, [4] = &v4, [8] = &v};
    memcpy(external_slot, sized[size], size);
    return external_slot;
}

/* Sleeps. Time inside a session is virtual (it moves with the input, see the top), so a sleep
 * changes nothing a replay must reproduce but its result. Record mode sleeps, outside the operation
 * (a checkpoint parks a thread that sleeps: a receiver after it, another by a signal, which ends the
 * sleep with EINTR); a sleep that completed is a quiet operation (counted like an empty receive, so
 * replay knows which call it was), an interrupted one logs its errno in a loud record carrying the
 * quiet count. Replay does not sleep: it hands out the quiet results, then the logged error, so the
 * idle stretches of a recording cost nothing in recovery. Whether an iteration sleeps depends only
 * on what its receives and external reads returned, which the quiet counts reproduce. `abs_ns`:
 * an absolute deadline (clock_nanosleep's TIMER_ABSTIME) on the session's clock, 0 for a relative
 * sleep of `req`. Returns 0 or the errno. */
static int sleep_through(const struct timespec *req, struct timespec *rem, uint64_t abs_ns)
{
    struct _ftmb_thread *t = _ftmb_me();
    int err = 0;
    t->slept = 1; /* a thread that sleeps when idle does not dwell (_ftmb_dwell) */
    if (__atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) != FTMB_MODE_REPLAY) {
        struct timespec rel = *req;
        if (abs_ns) { /* the deadline's distance from the thread's clock (virtual, or the real one) */
            uint64_t now = t->vtime_ns ? t->vtime_ns : _ftmb_now_ns(CLOCK_REALTIME);
            uint64_t d = abs_ns > now ? abs_ns - now : 0;
            rel = (struct timespec){(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
        }
        err = nanosleep(&rel, rem) == 0 ? 0 : errno;
    }
    _ftmb_op_enter(t);
    /* A snapshot restored inside the sleep above resumes here in replay: the log says what it got. */
    if (_ftmb_quiet_past_log(t)) {
        /* The verification replay, past this thread's log: nothing here is logged or waited for,
         * and sleeping leaves the CPU to the threads that still replay. */
        if (!abs_ns)
            nanosleep(req, NULL);
        err = 0; /* quiet, as the record's operations past its log were */
    } else if (_ftmb_replaying(t)) {
        if (_ftmb_replay_quiet(t)) {
            err = 0;
        } else {
            err = (int)take_loud(t, _FTMB_REC_ND, _FTMB_ND_SLEEP)->value;
            replay_op_done(t);
            if (rem) /* what was left is not logged */
                *rem = (struct timespec){0, 0};
        }
    } else if (_ftmb_mode_now == FTMB_MODE_RECORD) {
        /* (A replay that went live at this call, _ftmb_replaying, did not sleep: err is 0.) */
        if (!err)
            t->quiet++;
        else
            emit_loud(t, _ftmb_rec_head(_FTMB_REC_ND, _FTMB_ND_SLEEP, 0), (uint64_t)err, 1);
    }
    _ftmb_op_leave(t);
    return err;
}

int ftmb_nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return nanosleep(req, rem);
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L || req->tv_sec < 0) {
        errno = EINVAL;
        return -1;
    }
    int err = sleep_through(req, rem, 0);
    if (!err)
        return 0;
    errno = err;
    return -1;
}

int ftmb_clock_nanosleep(int clockid, int flags, const struct timespec *req, struct timespec *rem)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return clock_nanosleep((clockid_t)clockid, flags, req, rem);
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L || req->tv_sec < 0)
        return EINVAL;
    uint64_t abs_ns = 0;
    if (flags & TIMER_ABSTIME) { /* (a deadline at the epoch has passed: a relative sleep of 0) */
        abs_ns = (uint64_t)req->tv_sec * 1000000000ull + (uint64_t)req->tv_nsec;
        rem = NULL; /* clock_nanosleep leaves it alone then */
    }
    return sleep_through(req, rem, abs_ns);
}

int ftmb_usleep(unsigned usec)
{
    struct timespec ts = {(time_t)(usec / 1000000u), (long)(usec % 1000000u) * 1000};
    return ftmb_nanosleep(&ts, NULL);
}

/* An interrupted sleep() reports every second left (the time it slept is not part of the log). */
unsigned ftmb_sleep(unsigned seconds)
{
    struct timespec ts = {(time_t)seconds, 0};
    return ftmb_nanosleep(&ts, NULL) == 0 ? 0 : seconds;
}

/* A value the runtime itself reads at a point a real clock chose (the end of a libpcap wait: a
 * timeout, a pcap_breakloop): always logged as an external read (a loud record, carrying the quiet
 * operations before it), so the replay knows where it happened among the quiet receives; see
 * _ftmb_replay_at_logged_value. */
uint64_t _ftmb_logged_value(uint64_t v)
{
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    if (_ftmb_replaying(t)) {
        v = take_loud(t, _FTMB_REC_ND, _FTMB_ND_EXTERNAL)->value;
        replay_op_done(t);
    } else if (_ftmb_mode_now == FTMB_MODE_RECORD)
        emit_loud(t, _ftmb_rec_head(_FTMB_REC_ND, _FTMB_ND_EXTERNAL, 0), v, 1);
    t->ext_addr = NULL; /* the program's next external read logs its value */
    _ftmb_op_leave(t);
    return v;
}

/* Replay: 1 if the thread has made every quiet operation before its next loud record and that
 * record is an external read, i.e. the record's next operation here was a _ftmb_logged_value. */
int _ftmb_replay_at_logged_value(void)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (!_ftmb_replaying(t))
        return 0;
    settle_quiet(t, 1);
    return t->quiet == t->loud_need && t->loud_idx == t->rpos && t->loud_idx < t->rlen &&
           _ftmb_rec_kind(t->rlog[t->loud_idx - t->rbase].head) == _FTMB_REC_ND &&
           _ftmb_rec_obj(t->rlog[t->loud_idx - t->rbase].head) == _FTMB_ND_EXTERNAL;
}

/* Receives advance virtual time (io.c) and log their composition, with the quiet count. */
void _ftmb_emit_rx(uint16_t queue, uint32_t entries, uint64_t first_seq)
{
    emit_loud(_ftmb_me(), _ftmb_rec_head(_FTMB_REC_RX, queue, entries), first_seq & _FTMB_RX_SEQ_MASK, 0);
}

/* Replay: the receive of `queue` that the thread's next loud record logs (the caller asked
 * _ftmb_replay_quiet first): its entry count and first entry sequence. */
uint32_t _ftmb_replay_rx(uint16_t queue, uint64_t *first_seq)
{
    struct _ftmb_thread *t = _ftmb_me();
    const struct _ftmb_record *r = take_loud(t, _FTMB_REC_RX, queue);
    replay_op_done(t);
    *first_seq = r->value & _FTMB_RX_SEQ_MASK;
    return _ftmb_rec_site(r->head);
}

/* ---- init and exit ---------------------------------------------------------------------------- */

static long env_long(const char *name, long dflt, long min, long max)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || v < min || v > max) {
        fprintf(stderr, "ftmb: %s=%s: expected an integer from %ld to %ld\n", name, s, min, max);
        return -1;
    }
    return v;
}

/*
 * Map the output logger's log (FTMB_REPLAY_LOG) read-only; each thread's records are a slice of
 * the mapping. Only open, fstat, mmap and snprintf: a failover backup restored from a snapshot
 * calls this before the program's threads run again, while one of them may hold a libc lock.
 */
int _ftmb_map_replay_log(const char *path)
{
    char why[160] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    const uint8_t *m = MAP_FAILED;
    if (fd < 0 || fstat(fd, &st) != 0)
        snprintf(why, sizeof why, "%s", strerror(errno));
    else if ((size_t)st.st_size < sizeof(struct _ftmb_log_file_hdr))
        snprintf(why, sizeof why, "not an ftmb log file (written by ftmb-output-logger --log)");
    else if ((m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        snprintf(why, sizeof why, "%s", strerror(errno));
    if (fd >= 0)
        close(fd);
    const struct _ftmb_log_file_hdr *h = (const void *)m;
    if (!why[0] && h->magic == _FTMB_LOG_MAGIC_OLD)
        snprintf(why, sizeof why, "an FTMBLOG3 log of an older runtime, without a header check; record it again");
    else if (!why[0] && h->magic != _FTMB_LOG_MAGIC)
        snprintf(why, sizeof why, "not an ftmb log file (written by ftmb-output-logger --log)");
    else if (!why[0] && h->hdr_check != _ftmb_log_hdr_check(h))
        snprintf(why, sizeof why, "the header fails its check (tsc_hz, a thread count or base was changed or "
                                  "corrupted); the log is not replayed");
    else if (!why[0] && h->nthreads > FTMB_MAX_THREADS)
        snprintf(why, sizeof why, "not an ftmb log file (written by ftmb-output-logger --log)");
    else if (!why[0] && h->abi_version != FTMB_ABI_VERSION)
        snprintf(why, sizeof why, "written by ABI %u, this runtime is ABI %d", h->abi_version, FTMB_ABI_VERSION);
    uint64_t off = sizeof *h;
    for (uint32_t t = 0; !why[0] && t < h->nthreads; t++) {
        uint64_t bytes = (h->count[t] - h->base[t]) * sizeof(struct _ftmb_record);
        if (h->count[t] > (1ull << 40) || h->base[t] > h->count[t] || off + bytes > (uint64_t)st.st_size) {
            snprintf(why, sizeof why, "truncated in the records of thread %u (%llu claimed)", t,
                     (unsigned long long)h->count[t]);
            break;
        }
        _ftmb_rt.replay_log[t] = (struct _ftmb_record *)(m + off);
        _ftmb_rt.replay_len[t] = h->count[t];
        _ftmb_rt.replay_base[t] = h->base[t];
        off += bytes;
    }
    if (why[0]) {
        char line[512];
        int n = snprintf(line, sizeof line, "ftmb: FTMB_REPLAY_LOG=%s: %s\n", path, why);
        if (write(2, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
            (void)0;
        return -1;
    }
    _ftmb_rt.tsc_hz = h->tsc_hz;
    return 0;
}

/* A replay from the initial state: count the records and the threads that have some (before any
 * replaying thread runs); -1 if the log lost its beginning to garbage collection. */
static int count_replay(const char *path)
{
    _ftmb_rt.replay_records = 0;
    atomic_store_explicit(&_ftmb_rt.replay_left, 0, memory_order_relaxed);
    for (uint32_t t = 0; t < FTMB_MAX_THREADS; t++) {
        if (_ftmb_rt.replay_base[t]) {
            fprintf(stderr, "ftmb: FTMB_REPLAY_LOG=%s: the records of thread %u before %llu were garbage-collected "
                            "after a checkpoint; a replay from the start needs a master run with FTMB_CHECKPOINT_GC=0\n",
                    path, t, (unsigned long long)_ftmb_rt.replay_base[t]);
            return -1;
        }
        _ftmb_rt.replay_records += _ftmb_rt.replay_len[t];
        if (_ftmb_rt.replay_len[t])
            /* Relaxed: written before any thread exists (ftmb_init, the standby's takeover). */
            atomic_fetch_add_explicit(&_ftmb_rt.replay_left, 1, memory_order_relaxed);
    }
    return 0;
}

static int load_replay_log(const char *path)
{
    return _ftmb_map_replay_log(path) != 0 ? -1 : count_replay(path);
}

static int attach_session(const char *session, int timeout_ms, int mode)
{
    if (!_ftmb_valid_session_name(session)) {
        fprintf(stderr, "ftmb: FTMB_SESSION=%s: a session name is 1 to 64 of [A-Za-z0-9._-]\n", session);
        return -1;
    }
    snprintf(_ftmb_rt.session, sizeof _ftmb_rt.session, "%s", session);
    _ftmb_rt.out = _ftmb_region_attach(session, "out", _FTMB_OUT_MAGIC, timeout_ms, &_ftmb_rt.out_size);
    if (!_ftmb_rt.out) {
        fprintf(stderr, "ftmb: FTMB_SESSION=%s: no output logger (/dev/shm/ftmb-%s.out) within %d ms; start "
                        "ftmb-output-logger --session %s first\n",
                session, session, timeout_ms, session);
        return -1;
    }
    /* Records on a change of owner (claims), unless FTMB_ORDERED_CLAIMS=0 (runtime/README.md). Set
     * before ready (acquired by the attach). */
    const char *claims = getenv("FTMB_ORDERED_CLAIMS");
    _ftmb_rt.every_ordered = _ftmb_rt.out->every_ordered != 0 || (claims && strcmp(claims, "0") == 0);
    _ftmb_rt.in = _ftmb_region_attach(session, "in", _FTMB_IN_MAGIC, timeout_ms, &_ftmb_rt.in_size);
    if (!_ftmb_rt.in) {
        fprintf(stderr, "ftmb: FTMB_SESSION=%s: no input logger (/dev/shm/ftmb-%s.in) within %d ms; start "
                        "ftmb-input-logger --session %s first\n",
                session, session, timeout_ms, session);
        return -1;
    }
    if (mode == FTMB_MODE_RECORD)
        _ftmb_rt.tsc_hz = _ftmb_rt.in->tsc_hz;
    else if (mode == FTMB_MODE_REPLAY && !_ftmb_rt.tsc_hz) /* the log's rate wins (load_replay_log) */
        _ftmb_rt.tsc_hz = _ftmb_rt.in->tsc_hz;
    /* Published by the release store of master_state below; the output logger puts it in the log. */
    if (mode == FTMB_MODE_RECORD)
        _ftmb_rt.out->tsc_hz = _ftmb_rt.tsc_hz;
    for (uint32_t q = 0; q < _ftmb_rt.in->nqueues; q++)
        _ftmb_ring_attach(&_ftmb_rt.inq[q].ring, _ftmb_rt.in, &_ftmb_rt.in->queue[q].ring, 0);
    _ftmb_publish_master(mode);
    return 0;
}

/* The thread of the runtime that holds the process's death-watch slot where no checkpoint coordinator
 * does (a master without checkpoints, a backup that took over without a snapshot): it takes the
 * slot, says so (live_coord) and sleeps, every signal blocked, until the process ends. Every 100 ms
 * it looks whether the session is gone, as the coordinator does: a master idle after its input's end
 * checks no peers at its receives, and one whose run was killed would otherwise poll forever. */
static void *keeper(void *arg)
{
    int rc = pthread_mutex_trylock(arg);
    if (rc == 0 || rc == EOWNERDEAD)
        /* Release: pairs with the watchers' acquire; the slot is held. */
        atomic_store_explicit(&_ftmb_rt.out->live_coord, 1, memory_order_release);
    const struct timespec period = {0, 100 * 1000 * 1000};
    for (;;) {
        nanosleep(&period, NULL);
        _ftmb_exit_if_session_gone();
    }
    return NULL;
}

static void start_keeper(pthread_mutex_t *slot)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the keeper inherits it: no program signal goes there */
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 65536);
    pthread_t k;
    if (pthread_create(&k, &a, keeper, slot) != 0) /* the watch then never says dead: the pid tells */
        fprintf(stderr, "ftmb: cannot start the death watch's keeper thread; the pid alone tells this process's "
                        "death\n");
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The session's first record master arms the death watch (session.c, _ftmb_master_threads_dead):
 * this thread takes its slot, then names the process; every thread adopted later takes its own in
 * _ftmb_adopt_thread_index, the coordinator the process's (else the keeper, ftmb_init). A master
 * that takes over from a snapshot arms it again once its threads hold their slots afresh
 * (checkpoint.c, rehold_slot); one that attaches after another without a snapshot (standby,
 * follower) arms it on the backup slots its threads hold (_ftmb_publish_master). */
static void arm_death_watch(void)
{
    struct _ftmb_out_region *out = _ftmb_rt.out;
    /* Relaxed: only one master attaches at a time; a stale value only leaves the watch unarmed. */
    if (!out || atomic_load_explicit(&out->live_pid, memory_order_relaxed) != 0 || !_ftmb_self)
        return;
    if (pthread_mutex_trylock(&out->live[_ftmb_self->index]) != 0)
        return;
    /* Release: pairs with the watchers' acquire; this thread's slot is held. */
    atomic_store_explicit(&out->live_pid, (int32_t)getpid(), memory_order_release);
}

/* This process is the session's master from now on, in `mode`. */
void _ftmb_publish_master(int mode)
{
    struct _ftmb_region_hdr *hs[2] = {&_ftmb_rt.in->hdr, &_ftmb_rt.out->hdr};
    /* A master after the one that armed the death watch retires it (-1: no pid matches, and
     * arm_death_watch arms only from 0): a later master with the armed one's pid (reused) must not be
     * judged by the slots its threads do not hold. Relaxed: a watcher acquires master_state below.
     * A backup that attached without a snapshot (standby, follower) arms it again, on the backup
     * slots its threads hold since they started (_ftmb_live_hold), and the keeper holds the
     * process's (its live_coord: 0 until then). A snapshot re-arms it (checkpoint.c). */
    struct _ftmb_out_region *out = _ftmb_rt.out;
    int32_t armed = atomic_load_explicit(&out->live_pid, memory_order_relaxed);
    if (_ftmb_rt.live_backup && armed != (int32_t)getpid()) {
        atomic_store_explicit(&out->live_coord, 0, memory_order_relaxed);
        atomic_store_explicit(&out->live_backup, 1, memory_order_relaxed);
        /* Release: pairs with the watchers' acquire; the stores above come with it. */
        atomic_store_explicit(&out->live_pid, (int32_t)getpid(), memory_order_release);
        start_keeper(&out->backup_live[FTMB_MAX_THREADS]);
    } else if (armed != 0 && armed != (int32_t)getpid()) {
        atomic_store_explicit(&out->live_pid, -1, memory_order_relaxed);
    }
    for (int i = 0; i < 2; i++) {
        /* Relaxed: published by the release store of master_state below. */
        atomic_store_explicit(&hs[i]->master_pid, (int32_t)getpid(), memory_order_relaxed);
        atomic_store_explicit(&hs[i]->master_mode, (uint32_t)mode, memory_order_relaxed);
        /* Release: pairs with the loggers' acquire load of master_state. */
        atomic_store_explicit(&hs[i]->master_state, _FTMB_MASTER_ATTACHED, memory_order_release);
        _ftmb_region_ring(hs[i]);
    }
}

/* ---- warm standby ---------------------------------------------------------------------------- */

#define STANDBY_RECORDS 65536u
static struct {
    struct _ftmb_ring_ctl ctl;
    struct _ftmb_record rec[STANDBY_RECORDS];
} *standby_ring;

/* Records of the initialization go to a private ring: the log has them too (thread 0's prefix). */
static int standby_init(const char *session, int attach_ms)
{
    if (!session || !*session) {
        fprintf(stderr, "ftmb: FTMB_MODE=standby needs FTMB_SESSION and FTMB_REPLAY_LOG\n");
        return -1;
    }
    const char *log = getenv("FTMB_REPLAY_LOG");
    if (!log || !*log) {
        fprintf(stderr, "ftmb: FTMB_MODE=standby needs FTMB_REPLAY_LOG: where the output logger writes its log "
                        "when the master dies\n");
        return -1;
    }
    if (!_ftmb_valid_session_name(session)) {
        fprintf(stderr, "ftmb: FTMB_SESSION=%s: a session name is 1 to 64 of [A-Za-z0-9._-]\n", session);
        return -1;
    }
    snprintf(_ftmb_rt.session, sizeof _ftmb_rt.session, "%s", session);
    _ftmb_rt.watch_in = _ftmb_region_attach(session, "in", _FTMB_IN_MAGIC, attach_ms, &_ftmb_rt.watch_in_size);
    if (!_ftmb_rt.watch_in) {
        fprintf(stderr, "ftmb: standby: no input logger for session %s within %d ms\n", session, attach_ms);
        return -1;
    }
    _ftmb_rt.tsc_hz = _ftmb_rt.watch_in->tsc_hz; /* the master's rate: initialization may keep it */
    /* The master's death watch (its threads' slots, ftmb_internal.h): made ready before the input
     * region (the output logger starts first), so it is there; without it the pid alone tells. */
    _ftmb_rt.watch_out = _ftmb_region_attach(session, "out", _FTMB_OUT_MAGIC, 0, &_ftmb_rt.watch_out_size);
    standby_ring = aligned_alloc(_FTMB_CACHE_LINE, sizeof *standby_ring);
    if (!standby_ring)
        return -1;
    memset(standby_ring, 0, sizeof *standby_ring);
    standby_ring->ctl.capacity = STANDBY_RECORDS;
    standby_ring->ctl.slot_size = sizeof(struct _ftmb_record);
    standby_ring->ctl.buf_offset = offsetof(__typeof__(*standby_ring), rec);
    _ftmb_rt.standby = 1;
    return 0;
}

static int attach_session(const char *session, int timeout_ms, int mode);
static int load_replay_log(const char *path);

void _ftmb_standby_takeover(void)
{
    if (!_ftmb_rt.standby)
        return;
    struct _ftmb_in_region *in = _ftmb_rt.watch_in;
    int32_t pid = 0;
    struct timespec nap = {0, 100000};
    for (;;) { /* the master dies (attached, pid gone) or finishes (done: nothing to take over) */
        /* Acquire pairs with the master's release of master_state; pid is published with it. */
        uint32_t state = atomic_load_explicit(&in->hdr.master_state, memory_order_acquire);
        pid = atomic_load_explicit(&in->hdr.master_pid, memory_order_relaxed);
        if (state == _FTMB_MASTER_DONE || state == _FTMB_MASTER_STOPPED) {
            fprintf(stderr, "ftmb: standby: the master (pid %d) %s; nothing to take over\n", (int)pid,
                    state == _FTMB_MASTER_DONE ? "finished" : "was stopped by a signal");
            exit(0);
        }
        /* Dead: every thread of it past its robust list (the death watch, long before its address
         * space is torn down), or its pid gone. */
        if (state == _FTMB_MASTER_ATTACHED && pid != getpid() &&
            ((_ftmb_rt.watch_out && _ftmb_master_threads_dead(_ftmb_rt.watch_out, pid)) ||
             _ftmb_master_died(&in->hdr, pid)))
            break;
        /* A master that died before it attached leaves no record: the orchestrator, which saw it
         * die, writes an empty log, and that is the signal. */
        if (state == _FTMB_MASTER_NONE && access(getenv("FTMB_REPLAY_LOG"), R_OK) == 0)
            break;
        nanosleep(&nap, NULL);
    }
    /* Acquire pairs with the master's release store of snapshot_pid (checkpoint.c). */
    int32_t snap = atomic_load_explicit(&in->hdr.snapshot_pid, memory_order_acquire);
    if (snap > 0 && _ftmb_pid_alive(snap)) {
        fprintf(stderr, "ftmb: standby: the master (pid %d) died; the process holding its snapshot (pid %d) takes "
                        "over\n",
                (int)pid, (int)snap);
        exit(0);
    }
    uint64_t died = _ftmb_now_ns(CLOCK_REALTIME);
    _ftmb_rt.fo_died_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    const char *log = getenv("FTMB_REPLAY_LOG");
    struct timespec short_nap = {0, 20000};
    while (access(log, R_OK) != 0) /* the output logger writes it once it stored every record */
        nanosleep(&short_nap, NULL);
    if (load_replay_log(log) != 0)
        _ftmb_fatal("standby: cannot take over");
    _ftmb_rt.fo_log_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    _ftmb_rt.handover = 1;
    /* The initialization's records must be thread 0's first records in the log. */
    struct _ftmb_thread *t = _ftmb_me();
    uint64_t n = t->rec.local;
    if (t->index != 0 || n > _ftmb_rt.replay_len[0])
        _ftmb_fatal("standby: thread %u made %llu records before the workers launched; the master's log has %llu",
                    t->index, (unsigned long long)n, (unsigned long long)_ftmb_rt.replay_len[0]);
    for (uint64_t i = 0; i < n; i++) {
        const struct _ftmb_record *a = &standby_ring->rec[i], *b = &_ftmb_rt.replay_log[0][i];
        if (a->head != b->head || a->value != b->value)
            _ftmb_fatal("standby diverged during initialization: record %llu is %s (object %u, value %llu) here but "
                        "%s (object %u, value %llu) in the master's log; nondeterminism before the workers launch "
                        "needs a cold backup",
                        (unsigned long long)i, kind_name(_ftmb_rec_kind(a->head)), _ftmb_rec_obj(a->head),
                        (unsigned long long)a->value, kind_name(_ftmb_rec_kind(b->head)), _ftmb_rec_obj(b->head),
                        (unsigned long long)b->value);
    }
    long attach_ms = env_long("FTMB_ATTACH_TIMEOUT_MS", 5000, 0, 3600000);
    char session[sizeof _ftmb_rt.session];
    memcpy(session, _ftmb_rt.session, sizeof session); /* attach_session writes _ftmb_rt.session */
    if (attach_session(session, (int)attach_ms, FTMB_MODE_REPLAY) != 0)
        _ftmb_fatal("standby: cannot attach to session %s", session);
    uint32_t claimed = atomic_load_explicit(&_ftmb_rt.next_index, memory_order_relaxed);
    publish_nthreads(_ftmb_rt.out, claimed);
    t->has_rings = 0;
    _ftmb_adopt_thread_index(t->index); /* its rings in the session; its log */
    t->rpos = n;
    _ftmb_rt.standby = 0;
    __atomic_store_n(&_ftmb_mode_now, FTMB_MODE_REPLAY, __ATOMIC_RELEASE);
    replay_op_done(t); /* counts thread 0 out if the initialization was its whole log */
    _ftmb_rt.fo_restored_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    _ftmb_rt.fo_restored_cpu_ns = _ftmb_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    fprintf(stderr, "ftmb: standby: the master (pid %d) died; taking over at %llu ns with %llu records to replay\n",
            (int)pid, (unsigned long long)died, (unsigned long long)_ftmb_rt.replay_records);
}

/* libftmb_dpdk's, in a DPDK program (weak: the core library does not need it) */
extern void _ftmb_dpdk_after_eal(void) __attribute__((weak));

int ftmb_init(void)
{
    if (_ftmb_rt.initialized)
        return 0;
    const char *m = getenv("FTMB_MODE");
    int mode = FTMB_MODE_PASSTHROUGH, standby = m && strcmp(m, "standby") == 0;
    int follow = m && strcmp(m, "follow") == 0;
    if (standby)
        mode = FTMB_MODE_RECORD; /* into a private ring until the takeover */
    else if (follow)
        mode = FTMB_MODE_REPLAY; /* of the log as it arrives (follow.c) */
    else if (m && *m) {
        for (mode = 0; mode < 3 && strcmp(m, mode_names[mode]) != 0; mode++)
            ;
        if (mode == 3) {
            fprintf(stderr, "ftmb: FTMB_MODE=%s: expected passthrough, record, replay, standby or follow\n", m);
            return -1;
        }
    }
    long peer_ms = env_long("FTMB_PEER_TIMEOUT_MS", 1000, 1, 3600000);
    long attach_ms = env_long("FTMB_ATTACH_TIMEOUT_MS", 5000, 0, 3600000);
    long warn_ms = env_long("FTMB_REPLAY_WARN_MS", 10000, 1, 3600000);
    long dwell_us = env_long("FTMB_DWELL_US", 20, 0, 1000);
    if (peer_ms < 0 || attach_ms < 0 || warn_ms < 0 || dwell_us < 0)
        return -1;
    _ftmb_rt.peer_timeout_ns = (uint64_t)peer_ms * 1000000ull;
    _ftmb_rt.dwell_ns = (uint64_t)dwell_us * 1000ull;
    _ftmb_rt.replay_wait_warn_ns = (uint64_t)warn_ms * 1000000ull;
    if (_ftmb_arena_init() != 0)
        return -1;
    _ftmb_rt.objs = _ftmb_arena_runtime_part();
    const char *session = getenv("FTMB_SESSION");
    _ftmb_rt.live_backup = standby || follow; /* (before any thread adopts its index) */
    if (standby) {
        if (standby_init(session, (int)attach_ms) != 0)
            return -1;
        session = NULL; /* attached at the takeover */
    } else if (follow) {
        if (_ftmb_follow_init(session, (int)attach_ms) != 0)
            return -1;
        session = NULL; /* the master of the session at the takeover */
    } else if (mode == FTMB_MODE_RECORD && !(session && *session)) {
        fprintf(stderr, "ftmb: FTMB_MODE=record needs FTMB_SESSION naming a running output logger's session\n");
        return -1;
    }
    if (mode == FTMB_MODE_REPLAY && !follow) {
        const char *log = getenv("FTMB_REPLAY_LOG");
        if (!log || !*log) {
            fprintf(stderr, "ftmb: FTMB_MODE=replay needs FTMB_REPLAY_LOG naming a log file\n");
            return -1;
        }
        if (load_replay_log(log) != 0)
            return -1;
        long handover = env_long("FTMB_REPLAY_HANDOVER", 0, 0, 1);
        if (handover < 0)
            return -1;
        _ftmb_rt.handover = (int)handover;
        long stop = env_long("FTMB_REPLAY_STOP_AT_END", 0, 0, 1);
        if (stop < 0)
            return -1;
        _ftmb_rt.stop_at_end = (int)stop && !handover;
    }
    if (session && *session && attach_session(session, (int)attach_ms, mode) != 0)
        return -1;
    /* Relaxed: only this thread has claimed indexes so far (init runs before any spawn). */
    uint32_t claimed = atomic_load_explicit(&_ftmb_rt.next_index, memory_order_relaxed);
    if (_ftmb_rt.out && claimed) { /* indexes claimed before the session existed (early allocations) */
        if (claimed > _ftmb_rt.out->max_threads) {
            fprintf(stderr, "ftmb: %u threads exist but the output logger of session %s has rings for %u\n",
                    claimed, _ftmb_rt.session, _ftmb_rt.out->max_threads);
            return -1;
        }
        publish_nthreads(_ftmb_rt.out, claimed);
    }
    const char *env_session = getenv("FTMB_SESSION");
    if (_ftmb_dpdk_after_eal && ((m && *m) || (env_session && *env_session)))
        _ftmb_dpdk_after_eal(); /* mbuf pools reuse the mbufs freed last (dpdk_adapter.c) */
    _ftmb_rt.initialized = 1;
    _ftmb_mode_now = mode;
    if (!_ftmb_self)
        _ftmb_self_slow();
    else
        _ftmb_adopt_thread_index(_ftmb_self->index); /* attach rings made before the session */
    if (session && *session && mode == FTMB_MODE_RECORD)
        arm_death_watch();
    if (standby)
        _ftmb_ring_attach(&_ftmb_self->rec, standby_ring, &standby_ring->ctl, 1);
    atexit(ftmb_exit);
    if (_ftmb_rt.in || standby)
        stop_signals_default();
    if (!standby && !follow && _ftmb_ckpt_start() != 0)
        return -1;
    /* The process's death-watch slot: the coordinator's if one runs (it set live_coord), else the
     * keeper's. Relaxed: this process's own stores. */
    if (_ftmb_rt.out && atomic_load_explicit(&_ftmb_rt.out->live_pid, memory_order_relaxed) == getpid() &&
        !atomic_load_explicit(&_ftmb_rt.out->live_coord, memory_order_relaxed))
        start_keeper(&_ftmb_rt.out->live[FTMB_MAX_THREADS]);
    return 0;
}

void ftmb_exit(void)
{
    if (!_ftmb_rt.initialized || atomic_exchange(&_ftmb_rt.exited, 1))
        return;
    if (_ftmb_follow_mode)
        _ftmb_follow_at_exit();
    struct _ftmb_region_hdr *hs[2] = {_ftmb_rt.in ? &_ftmb_rt.in->hdr : NULL,
                                      _ftmb_rt.out ? &_ftmb_rt.out->hdr : NULL};
    for (int i = 0; i < 2; i++)
        /* Only the session's master ends it (a follower that exits before its takeover does not).
         * Relaxed: a process compares its own pid, which only it publishes. */
        if (hs[i] && atomic_load_explicit(&hs[i]->master_pid, memory_order_relaxed) == (int32_t)getpid()) {
            /* Release: everything this process published before is visible to a logger that acquires
             * master_state == DONE (the threads have stopped producing; the program joined them). */
            atomic_store_explicit(&hs[i]->master_state, _FTMB_MASTER_DONE, memory_order_release);
            _ftmb_region_ring(hs[i]);
        }
    /* After DONE: the coordinator is the thread-group leader of a process restored from a snapshot,
     * and once it exits the process looks dead (a zombie leader) to whoever checks its pid. */
    _ftmb_ckpt_stop();
}

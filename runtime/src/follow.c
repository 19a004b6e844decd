/*
 * The follower (FTMB_MODE=follow): a process of the master's binary that replays the master's log
 * as the output logger stores it, staying a bounded number of records behind, and goes live when
 * the master dies (runtime/README.md, "Follower").
 *
 * The log source: the output logger (--follow) publishes every stored record again on a ring per
 * thread (region S.fol, follow.h); each replaying thread copies its records from its ring into a
 * private, append-only window (one reserved mapping per thread, at most 2^32 records; pages far
 * behind the thread's position are given back), which is what the replay path reads (t->rlog).
 * While the master runs a thread's log has no end (t->rlen is UINT64_MAX): a thread that reaches
 * the last record it has waits for more (_ftmb_follow_need). The input logger (--follow) publishes
 * every entry it serves on a ring per queue (region S.infol); the follower's queues read those
 * rings, so its replayed receives take exactly the entries the master's did, from the same
 * replay path (io.c). Outputs regenerated while following are dropped, their output sequence
 * numbers counted.
 *
 * The takeover: when the master dies the output logger stores everything it published, sets each
 * thread's final count and `final`. The first thread that sees it (at the end of what it has)
 * makes the counts the threads' log lengths, re-attaches every thread's session rings where the
 * dead master's ended, names this process the master, and from then on the replay's handover
 * (runtime.c) is that of any failover backup: each thread counts itself out at the end of its log,
 * and the process goes live once every one has. Each queue moves to the session's input ring at
 * its owner's next receive, served again from the follower's position (a rewind).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "rt.h"

#define WINDOW_BYTES (1ull << 36)      /* a thread's reserved record window: 2^32 records */
#define KEEP_BEHIND (1ull << 16)       /* records kept mapped behind a thread's position */
#define PUBLISH_EVERY 256u             /* the applied count is published this often at least */
#define KEEP_OUTPUTS 256u              /* a thread's newest dropped outputs, kept for the takeover */
#define FOLLOW_SPINS 128u              /* _ftmb_backoff's 64 pauses, then 64 yields, then a sleep */
#define FOLLOW_SLEEP_NS 1000000l       /* the longest sleep for records (a bound, never the wait) */

enum { FOLLOWING = 0, TAKEN_OVER = 2 };

struct kept_output {
    uint64_t out_seq, in_time_ns;
    uint32_t len;
    uint16_t queue;
    uint8_t data[FTMB_PKT_MAX];
};

struct fol_thread {
    struct _ftmb_ring ring;  /* consumer side of the thread's record ring (S.fol) */
    struct kept_output *kept; /* the newest KEEP_OUTPUTS dropped outputs, by out_seq % KEEP_OUTPUTS */
    int resent;              /* after the takeover: the outputs the master never sent were sent */
    uint64_t pulled;         /* records copied into the window */
    uint64_t published;      /* the applied count last published */
    uint64_t freed;          /* records before this were given back to the kernel */
};

int _ftmb_follow_mode __attribute__((visibility("hidden")));

static struct {
    struct _ftmb_fol_region *fol;
    struct _ftmb_infol_region *infol;
    size_t fol_size, infol_size;
    _Atomic int state;
    const char *empty_log; /* FTMB_REPLAY_LOG: where the run writes an empty log (see _ftmb_follow_need) */
    int switched[FTMB_MAX_QUEUES]; /* the queue reads the session's ring again (owner thread only) */
    struct fol_thread th[FTMB_MAX_THREADS];
} fo;

static void *watch(void *arg);
static void send_unsent(struct _ftmb_thread *t, struct fol_thread *f);

int _ftmb_follow_init(const char *session, int attach_ms)
{
    if (!session || !*session) {
        fprintf(stderr, "ftmb: FTMB_MODE=follow needs FTMB_SESSION\n");
        return -1;
    }
    if (!_ftmb_valid_session_name(session)) {
        fprintf(stderr, "ftmb: FTMB_SESSION=%s: a session name is 1 to 64 of [A-Za-z0-9._-]\n", session);
        return -1;
    }
    snprintf(_ftmb_rt.session, sizeof _ftmb_rt.session, "%s", session);
    /* The follow regions are made ready before the session's: once these are there, so are they. */
    fo.fol = _ftmb_region_attach(session, "fol", _FTMB_FOL_MAGIC, attach_ms, &fo.fol_size);
    fo.infol = fo.fol ? _ftmb_region_attach(session, "infol", _FTMB_INFOL_MAGIC, attach_ms, &fo.infol_size) : NULL;
    if (!fo.fol || !fo.infol) {
        fprintf(stderr, "ftmb: follow: no follow region of the %s logger of session %s (/dev/shm/ftmb-%s.%s) within "
                        "%d ms; start both loggers with --follow\n",
                fo.fol ? "input" : "output", session, session, fo.fol ? "infol" : "fol", attach_ms);
        return -1;
    }
    _ftmb_rt.out = _ftmb_region_attach(session, "out", _FTMB_OUT_MAGIC, attach_ms, &_ftmb_rt.out_size);
    _ftmb_rt.every_ordered = 1; /* an output logger with --follow sets it too (ftmb_internal.h) */
    _ftmb_rt.in = _ftmb_rt.out ? _ftmb_region_attach(session, "in", _FTMB_IN_MAGIC, attach_ms, &_ftmb_rt.in_size)
                               : NULL;
    if (!_ftmb_rt.in) {
        fprintf(stderr, "ftmb: follow: no session %s within %d ms\n", session, attach_ms);
        return -1;
    }
    if (fo.infol->nqueues != _ftmb_rt.in->nqueues || fo.fol->max_threads > FTMB_MAX_THREADS) {
        fprintf(stderr, "ftmb: follow: the follow regions of session %s do not match its loggers\n", session);
        return -1;
    }
    _ftmb_rt.tsc_hz = _ftmb_rt.in->tsc_hz; /* the master's rate (it copies the same into the log) */
    for (uint32_t q = 0; q < fo.infol->nqueues; q++) {
        _ftmb_ring_attach(&_ftmb_rt.inq[q].ring, fo.infol, &fo.infol->queue[q], 0);
        _ftmb_rt.inq[q].replay_synced = 1; /* the ring starts at the queue's first entry */
    }
    for (uint32_t t = 0; t < FTMB_MAX_THREADS; t++) {
        void *w = mmap(NULL, WINDOW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (w == MAP_FAILED) {
            fprintf(stderr, "ftmb: follow: cannot reserve the record window of thread %u: %s\n", t, strerror(errno));
            return -1;
        }
        _ftmb_rt.replay_log[t] = w;
        _ftmb_rt.replay_len[t] = UINT64_MAX; /* no end while the master runs */
        _ftmb_rt.replay_base[t] = 0;
        if (t < fo.fol->max_threads)
            _ftmb_ring_attach(&fo.th[t].ring, fo.fol, &fo.fol->thread[t].rec, 0);
    }
    const char *log = getenv("FTMB_REPLAY_LOG");
    fo.empty_log = log && *log ? log : NULL;
    _ftmb_rt.handover = 0; /* set at the takeover: a wait while following only waits */
    atomic_store_explicit(&_ftmb_rt.replay_left, 0, memory_order_relaxed);
    /* Relaxed: a pid the output logger watches. */
    atomic_store_explicit(&fo.fol->follower_pid, (int32_t)getpid(), memory_order_relaxed);
    _ftmb_follow_mode = 1;
    pthread_t w;
    if (pthread_create(&w, NULL, watch, NULL) != 0) {
        fprintf(stderr, "ftmb: follow: cannot start the watcher thread\n");
        return -1;
    }
    pthread_detach(w);
    return 0;
}

/* Copy what the thread's ring holds into its window; returns 1 if the thread has a record to replay. */
static int pull(struct _ftmb_thread *t, struct fol_thread *f)
{
    if (t->index >= fo.fol->max_threads)
        return 0;
    uint64_t ready = _ftmb_ring_refresh(&f->ring);
    if (ready) {
        if (f->pulled + ready > WINDOW_BYTES / sizeof(struct _ftmb_record))
            _ftmb_fatal("follow: thread %u has more records than its window holds (%llu)", t->index,
                        (unsigned long long)(WINDOW_BYTES / sizeof(struct _ftmb_record)));
        struct _ftmb_record *w = _ftmb_rt.replay_log[t->index];
        for (uint64_t i = 0; i < ready; i++)
            w[f->pulled + i] = *(const struct _ftmb_record *)_ftmb_ring_peek(&f->ring, i);
        _ftmb_ring_consume(&f->ring, ready);
        f->pulled += ready;
    }
    return 1;
}

/* The thread has applied t->rpos records: the output logger may forget them, and so may we. */
static void publish_applied(struct _ftmb_thread *t, struct fol_thread *f)
{
    f->published = t->rpos;
    if (t->index < fo.fol->max_threads) {
        /* Relaxed: a mark the output logger reads; no data is read through it. */
        atomic_store_explicit(&fo.fol->thread[t->index].applied, t->rpos, memory_order_relaxed);
        _ftmb_region_ring(&fo.fol->hdr); /* (on the follower's own host, its relay sends it) */
    }
    if (t->rpos > f->freed + 2 * KEEP_BEHIND) {
        uint64_t upto = (t->rpos - KEEP_BEHIND) * sizeof(struct _ftmb_record) & ~(uint64_t)4095;
        uint64_t from = f->freed * sizeof(struct _ftmb_record) & ~(uint64_t)4095;
        if (upto > from)
            (void)madvise((char *)_ftmb_rt.replay_log[t->index] + from, upto - from, MADV_DONTNEED);
        f->freed = upto / sizeof(struct _ftmb_record);
    }
}

/* The master died and the output logger has set the final counts: see the top. */
static void take_over(int32_t master)
{
    uint64_t now = _ftmb_now_ns(CLOCK_REALTIME);
    _ftmb_rt.fo_died_ns = _ftmb_rt.fo_log_ns = _ftmb_now_ns(CLOCK_MONOTONIC); /* (the final counts: the log) */
    uint32_t left = 0;
    uint64_t tail = 0;
    /* Relaxed: a count of spawns this process made; a thread spawned during this loop reads its
     * log length after state becomes TAKEN_OVER or fixes it in _ftmb_follow_need. */
    uint32_t n = atomic_load_explicit(&_ftmb_rt.next_index, memory_order_relaxed);
    for (uint32_t i = 0; i < fo.fol->max_threads; i++) {
        /* Relaxed: ordered by the acquire load of final that brought us here. */
        uint64_t count = atomic_load_explicit(&fo.fol->thread[i].final_count, memory_order_relaxed);
        _ftmb_rt.replay_len[i] = count;
        left += count > 0;
        uint64_t at = i < n ? __atomic_load_n(&_ftmb_threads[i].rpos, __ATOMIC_RELAXED) : 0; /* (a report) */
        tail += count > at ? count - at : 0;
    }
    for (uint32_t i = fo.fol->max_threads; i < FTMB_MAX_THREADS; i++)
        _ftmb_rt.replay_len[i] = 0;
    _ftmb_rt.replay_records = tail;
    atomic_store_explicit(&_ftmb_rt.replay_left, left, memory_order_relaxed);
    for (uint32_t i = 0; i < n && i < _ftmb_rt.out->max_threads; i++) {
        struct _ftmb_thread *t = &_ftmb_threads[i];
        if (t->has_rings) { /* continue its streams where the dead master's rings end */
            _ftmb_ring_attach(&t->rec, _ftmb_rt.out, &_ftmb_rt.out->thread[i].rec, 1);
            _ftmb_ring_attach(&t->out, _ftmb_rt.out, &_ftmb_rt.out->thread[i].out, 1);
        }
    }
    __atomic_store_n(&_ftmb_rt.handover, 1, __ATOMIC_RELAXED);
    _ftmb_publish_master(FTMB_MODE_REPLAY); /* the input logger serves (and rewinds for) this process */
    _ftmb_rt.fo_restored_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    _ftmb_rt.fo_restored_cpu_ns = _ftmb_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    /* Release: everything above is visible to a thread that acquires the state. */
    atomic_store_explicit(&fo.state, TAKEN_OVER, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst); /* (the state, then `waiting`: follow_sleep) */
    for (uint32_t i = 0; i < fo.fol->max_threads; i++)
        /* Relaxed: after the fence; a thread whose `waiting` this misses sees TAKEN_OVER and does
         * not sleep (follow_sleep). */
        if (atomic_load_explicit(&fo.fol->thread[i].waiting, memory_order_relaxed))
            syscall(SYS_futex, (uint32_t *)&fo.fol->thread[i].rec.head, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    fprintf(stderr, "ftmb: follower: the master (pid %d) died; taking over at %llu ns with %llu records to replay\n",
            (int)master, (unsigned long long)now, (unsigned long long)tail);
}

/* A thread that has replayed every record it has sleeps until more come (_ftmb_fol_wake) or the
 * takeover (take_over wakes it), 1 ms at most: a caught-up follower that spun and yielded for its
 * next record, every ~200 µs at 5,000 packets/s, took twice the master's CPU on a small machine
 * (bench/RESULTS.md, Relays that sleep). A futex on the low half of the ring's head, shared with the
 * producer's process; Dekker's pattern on `waiting` and the head. */
static void follow_sleep(struct _ftmb_thread *t, struct fol_thread *f)
{
    struct _ftmb_fol_thread *ft = &fo.fol->thread[t->index];
    /* Relaxed: ordered by the fence after it (pairs with _ftmb_fol_wake's). */
    atomic_store_explicit(&ft->waiting, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: after the fence (Dekker's pattern); the records are read through pull's acquire. */
    uint64_t head = atomic_load_explicit(&ft->rec.head, memory_order_relaxed);
    if (head == f->ring.local && atomic_load_explicit(&fo.state, memory_order_acquire) != TAKEN_OVER) {
        struct timespec ts = {0, FOLLOW_SLEEP_NS};
        syscall(SYS_futex, (uint32_t *)&ft->rec.head, FUTEX_WAIT, (uint32_t)head, &ts, NULL, 0);
    }
    atomic_store_explicit(&ft->waiting, 0, memory_order_relaxed);
}

/* Record idx of thread t's stream: 1 once it is in the window, 0 if the log ends before it (after
 * the takeover) or, without `wait`, if it has not arrived yet. */
int _ftmb_follow_have(struct _ftmb_thread *t, uint64_t idx, int wait)
{
    struct fol_thread *f = &fo.th[t->index];
    for (unsigned spins = 0;; spins++) {
        if (idx < f->pulled)
            return 1;
        if (idx >= t->rlen)
            return 0; /* the log has ended here (after the takeover) */
        if (pull(t, f) && idx < f->pulled)
            return 1;
        int st = atomic_load_explicit(&fo.state, memory_order_acquire);
        if (st == TAKEN_OVER) {
            if (!f->resent && t->has_rings)
                send_unsent(t, f);
            if (t->rlen == UINT64_MAX)
                t->rlen = _ftmb_rt.replay_len[t->index];
            if (t->rpos > t->rlen)
                _ftmb_fatal("follow: thread %u replayed %llu records but the master's log has %llu", t->index,
                            (unsigned long long)t->rpos, (unsigned long long)t->rlen);
            continue;
        }
        if (!wait)
            return 0;
        if (spins < FOLLOW_SPINS) {
            _ftmb_backoff(spins);
        } else if (t->index < fo.fol->max_threads) {
            follow_sleep(t, f);
        } else {
            struct timespec nap = {0, 20000};
            nanosleep(&nap, NULL);
        }
    }
}

/* The follower's program has ended (exit, which runs ftmb_exit): it replayed the master's own end
 * (its stop flag, its workers' return). Whether the master finished or died is not known yet: the
 * output logger says so in `final`, and the watcher then exits the process with 0 (finished) or
 * takes over (died: the process is the master from then on, and its exit ends the session as a
 * master's does). Without this wait a follower that kept up would exit before the master, and the
 * output logger would report it dead (`the follower (pid P) died; the master goes on without a
 * backup`). */
void _ftmb_follow_at_exit(void)
{
    struct timespec nap = {0, 1000000};
    while (atomic_load_explicit(&fo.state, memory_order_acquire) != TAKEN_OVER)
        nanosleep(&nap, NULL);
}

void _ftmb_follow_need(struct _ftmb_thread *t)
{
    struct fol_thread *f = &fo.th[t->index];
    if (t->rpos < f->pulled) {
        if (t->rpos - f->published >= PUBLISH_EVERY)
            publish_applied(t, f);
        return;
    }
    publish_applied(t, f);
    (void)_ftmb_follow_have(t, t->rpos, 1);
}

/*
 * The watcher: a thread of the runtime (no program thread index; it runs no program code) that
 * looks at the output logger's final mark every 100 µs: the master's death starts the takeover at
 * once, wherever the replaying threads are; a master that finished ends the follower (exit 0), even
 * if a thread waits for a turn nobody here gives (the master's stop: its signal handler's write is
 * in the log, no signal comes here). It also keeps the follower's heartbeat and watches the output
 * logger, without which there is nothing to follow.
 */
static void *watch(void *arg)
{
    (void)arg;
    struct timespec nap = {0, 100000};
    for (unsigned n = 0;; n++) {
        /* Acquire pairs with the output logger's release store of final: the counts are visible. */
        uint32_t fin = atomic_load_explicit(&fo.fol->final, memory_order_acquire);
        /* Relaxed: the pid is published with master_state (the output logger saw it). */
        int32_t master = atomic_load_explicit(&_ftmb_rt.out->hdr.master_pid, memory_order_relaxed);
        if (fin == _FTMB_FOL_FINISHED) {
            fprintf(stderr, "ftmb: follower: the master (pid %d) finished; nothing to take over\n", (int)master);
            fflush(NULL);
            _exit(0);
        }
        /* A master that died before it attached leaves no record and the output logger no final
         * counts: the orchestrator, which saw it die, writes an empty log (FTMB_REPLAY_LOG), as for
         * the standby; then every count is 0. Acquire pairs with the master's release store. */
        if (fin == _FTMB_FOL_FOLLOWING &&
            atomic_load_explicit(&_ftmb_rt.in->hdr.master_state, memory_order_acquire) == _FTMB_MASTER_NONE &&
            fo.empty_log && access(fo.empty_log, R_OK) == 0)
            fin = _FTMB_FOL_DIED;
        if (fin == _FTMB_FOL_DIED) {
            take_over(master);
            return NULL;
        }
        if ((n & 127) == 0) {
            /* Relaxed: a clock value the output logger may read. */
            atomic_store_explicit(&fo.fol->follower_heartbeat_ns, _ftmb_now_ns(CLOCK_MONOTONIC),
                                  memory_order_relaxed);
            _ftmb_check_peers();
            if (atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed))
                _ftmb_fatal("follow: the output logger of session %s is gone; nothing to follow", _ftmb_rt.session);
        }
        nanosleep(&nap, NULL);
    }
}

/*
 * Outputs regenerated while following are dropped, but the master may not have sent the newest
 * ones: those a thread makes after its last record in the log (the master died before it sent
 * them). The dead master's output ring of the thread says how many it sent (its head, where the
 * takeover re-attached the ring); the thread itself, at its first step after the takeover and
 * before anything else it sends, sends the ones after that from its copies, in order. Their
 * dependencies are all in the final log: no vector.
 */
static void send_unsent(struct _ftmb_thread *t, struct fol_thread *f)
{
    f->resent = 1;
    uint64_t sent = t->out.local; /* (no output of this process on the ring yet) */
    for (uint64_t seq = sent + 1; seq <= t->out_seq; seq++) {
        const struct kept_output *k = f->kept ? &f->kept[seq % KEEP_OUTPUTS] : NULL;
        if (!k || k->out_seq != seq)
            _ftmb_fatal("follow: thread %u's output %llu was never sent by the master and is no longer kept (the "
                        "newest %u are)", t->index, (unsigned long long)seq, KEEP_OUTPUTS);
        struct _ftmb_out_slot *s;
        for (unsigned spins = 0; !(s = _ftmb_ring_reserve(&t->out)); spins++) {
            if (atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed))
                return;
            _ftmb_check_peers();
            _ftmb_backoff(spins);
        }
        s->out_seq = seq;
        s->in_time_ns = k->in_time_ns;
        s->len = k->len;
        s->thread = (uint16_t)t->index;
        s->nvec = 0;
        s->queue = k->queue;
        memcpy(s->data, k->data, k->len);
        _ftmb_ring_publish(&t->out, 1); /* pairs with the output logger's acquire */
    }
    _ftmb_region_ring(&_ftmb_rt.out->hdr);
}

int _ftmb_follow_drop_output(struct _ftmb_thread *t, uint16_t queue, const void *data, uint32_t len,
                             uint64_t in_time_ns)
{
    struct fol_thread *f = &fo.th[t->index];
    if (atomic_load_explicit(&fo.state, memory_order_acquire) == TAKEN_OVER) {
        if (!f->resent)
            send_unsent(t, f);
        return 0;
    }
    if (!f->kept && !(f->kept = calloc(KEEP_OUTPUTS, sizeof *f->kept)))
        _ftmb_fatal("follow: out of memory for thread %u's outputs", t->index);
    struct kept_output *k = &f->kept[++t->out_seq % KEEP_OUTPUTS]; /* counted: a live backup continues after it */
    k->out_seq = t->out_seq;
    k->in_time_ns = in_time_ns;
    k->len = len < FTMB_PKT_MAX ? len : FTMB_PKT_MAX;
    k->queue = queue;
    memcpy(k->data, data, k->len);
    return 1;
}

void _ftmb_follow_rx(uint16_t queue, struct _ftmb_inq *q)
{
    if (fo.switched[queue] || atomic_load_explicit(&fo.state, memory_order_acquire) != TAKEN_OVER)
        return;
    fo.switched[queue] = 1;
    /* Consume the session's ring from where the dead master left it, served again from our position. */
    _ftmb_ring_attach(&q->ring, _ftmb_rt.in, &_ftmb_rt.in->queue[queue].ring, 0);
    q->pending = 0;
    int eof = q->eof; /* (a queue whose EOF entry we took stays ended: nothing is served after it) */
    if (_ftmb_input_rewind(queue, q->next_seq) != 0)
        _ftmb_fatal("follow: the input logger died before serving queue %u again", queue);
    q->eof = eof;
    q->replay_synced = 1;
}

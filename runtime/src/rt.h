/*
 * Process-local state of the master runtime, shared by runtime.c, io.c and arena.c.
 */
#ifndef FTMB_RT_H
#define FTMB_RT_H

#include <pthread.h>

#include "ftmb_internal.h"

/* A shared object's sequence word, one per cache line (objects never share a line).
 *   lock-kind objects: the sequence itself, changed only inside the program's lock;
 *   ordered/atomic objects: (sequence << 1) | locked, a sequence lock the runtime takes. */
struct _ftmb_obj {
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t word;
};
_Static_assert(sizeof(struct _ftmb_obj) == _FTMB_CACHE_LINE, "one object per line");

/* A thread index's OS thread: claimed by a spawn wrapper (not started), adopted by the thread
 * (running), its start routine returned (finished). Checkpoints wait for started threads. Exiting:
 * a pthread whose start routine returned, its OS thread still on its way out (TLS destructors,
 * glibc's thread exit: it may hold libc locks, and the kernel clears its tid, which pthread_join
 * waits for, only at the very end); finished once the checkpoint coordinator saw it gone. */
enum _ftmb_os_state { _FTMB_OS_NOT_STARTED = 0, _FTMB_OS_RUNNING = 1, _FTMB_OS_FINISHED = 2, _FTMB_OS_EXITING = 3 };

#define _FTMB_DWELL_OBJS 8 /* quiet-capable objects a dwell watches per thread */
#define _FTMB_HELD_MAX 32 /* reentrant objects one thread may hold at once */
#define _FTMB_DWELL_AFTER 64 /* quiet operations in a row (since the thread's last loud record) before polls dwell */
_Static_assert(FTMB_MAX_QUEUES <= 32, "a thread's queues are a 32-bit mask (dwell_queues)");

/* A master thread's private state: only its own thread writes it. */
struct _ftmb_thread {
    /* The producer side of its record ring, with the object table's address: what the inline fast
     * path of ftmb/ftmb.h reads, as struct ftmb_fast (the same layout, asserted below). */
    alignas(_FTMB_CACHE_LINE) union {
        struct {
            struct _ftmb_ring rec; /* producer side of its record ring */
            uint64_t *fast_objs;   /* _ftmb_rt.objs' words, set with ftmb_fast_thread */
            /* Ordered accesses (runtime.c, claims): own[obj] is the sequence of the thread's latest
             * access of obj + 2 (0: none), in record and in replay alike; the thread owns obj while
             * the object's sequence is own[obj] - 1. FTMB_MAX_OBJECTS entries, allocated when the
             * thread gets its index. */
            uint64_t *own;
            /* Quiet operations (ftmb_internal.h, records): empty receives and unchanged external
             * reads since the thread's last loud record, counted in record and in replay alike. */
            uint64_t quiet;
            uint64_t fast_every; /* _ftmb_rt.every_ordered, set with ftmb_fast_thread */
            /* The thread's record count + 1 (rec.local in record, rpos in replay) at its latest
             * ordered access that logged nothing (a run's): a transmit while it is the count + 1
             * logs a TX record first (runtime.c, _ftmb_tx_records). */
            uint64_t run_at;
        };
        struct ftmb_fast fast;
    };
    int in_op;                       /* inside a runtime operation: a checkpoint signal does not park it */
    int ckpt_receiver;               /* checkpoints park it at its next receive (it receives input); both
                                      * on the line emit() writes anyway */
    int park_asked;                  /* a checkpoint signal came inside an operation: park when it ends */
    struct _ftmb_ring out;                           /* producer side of its output ring */
    uint64_t out_seq;                                /* last output sequence number handed out */
    int tx_published;                                /* an output since _ftmb_tx_end last rang */
    uint64_t vtime_ns;  /* virtual time: latest input entry received; 0 before any input */
    uint32_t index;
    int has_rings;
    const struct _ftmb_record *rlog; /* replay: this thread's recorded stream from record rbase */
    uint64_t rlen, rpos, rbase;      /* its end, the next record to replay, the first one kept */
    int replay_finished;             /* failover: counted out of _ftmb_rt.replay_left */
    uint64_t ckpt_seen;              /* the last checkpoint epoch it parked for */
    _Atomic int os_state;            /* enum _ftmb_os_state: whether its OS thread runs the program */
    uintptr_t pthread;               /* pthread_self() of that thread: its TCB, restored by a failover */
    int os_tid;                      /* its kernel thread id once it is EXITING */
    struct ftmb_pkt *free_pkts;      /* opaque packet cache */
    uint64_t vec[FTMB_MAX_THREADS];  /* record counts read by the current transmit */
    uint16_t nvec;
    int quiet_time;                  /* one of them moved its clock (a receive past an EOF) */
    const volatile void *ext_addr;   /* the thread's previous external read: where, how wide, what */
    uint64_t ext_size, ext_value;
    /* Replay: the next loud record (index loud_idx >= rpos, or rlen if none is left) and the quiet
     * operations the log puts before it (loud_need; UINT64_MAX: every remaining one is quiet).
     * loud_valid: 0 to look up, 1 found, 2 a follower's provisional answer (no carrier among the
     * records before loud_idx, which has not arrived: quiet until then; looked up again). */
    int loud_valid;
    uint64_t loud_idx, loud_need;
    /* The dwell (runtime.c, _ftmb_dwell): what the thread polls, so that a wait for input ends as
     * soon as any of it has something. dwell_queues: bit q, the thread owns input queue q;
     * dwell_obj/dwell_seq: quiet-capable objects it called (a ring it dequeues from; id + 1, 0:
     * none), each with the sequence it left the object at (replaced round robin, dwell_next). */
    uint32_t dwell_queues;
    int slept; /* it called a sleep through the runtime: it gives the CPU away when idle, no dwell */
    unsigned dwell_next;
    uint32_t dwell_obj[_FTMB_DWELL_OBJS];
    uint64_t dwell_seq[_FTMB_DWELL_OBJS];
    /* Reentrant objects (runtime.c, ftmb_ordered_reenter): the ones the thread holds, innermost
     * last, each with how many of its regions the thread is inside. */
    unsigned nheld;
    uint32_t held_obj[_FTMB_HELD_MAX];
    uint32_t held_depth[_FTMB_HELD_MAX];
};

/* A master's view of one input queue; only the thread that polls it writes it. */
struct _ftmb_inq {
    alignas(_FTMB_CACHE_LINE) struct _ftmb_ring ring; /* consumer side */
    uint32_t owner;      /* thread index + 1 of the thread polling it, 0 before the first poll */
    int eof;             /* the EOF entry was received */
    uint64_t eof_time_ns; /* its time: receives after it advance time up to _FTMB_EOF_SPAN_NS past it */
    uint64_t pending;    /* entries handed out by _ftmb_rx_begin, consumed by _ftmb_rx_finish */
    uint64_t empty_polls;
    int replay_synced;   /* replay: the logger was asked to serve from the first logged entry */
    uint64_t next_seq;   /* sequence of the next entry to receive (after the last finished receive) */
};

struct _ftmb_runtime {
    int initialized;
    char session[72];
    struct _ftmb_in_region *in;
    size_t in_size;
    struct _ftmb_out_region *out;
    size_t out_size;
    _Atomic uint32_t next_index;
    uint64_t tsc_hz;
    uint64_t peer_timeout_ns;
    /* Record mode: how long a poll that finds nothing waits for input before it returns its quiet
     * result (FTMB_DWELL_US; 0: not at all). See _ftmb_dwell. */
    uint64_t dwell_ns;
    uint64_t replay_wait_warn_ns;
    struct _ftmb_obj *objs;
    struct _ftmb_record *replay_log[FTMB_MAX_THREADS];
    uint64_t replay_len[FTMB_MAX_THREADS];  /* each thread's record count */
    uint64_t replay_base[FTMB_MAX_THREADS]; /* the first record the log keeps (after garbage collection) */
    /* Failover (FTMB_REPLAY_HANDOVER=1): replay, then go live when every thread's log has ended.
     * replay_left counts threads whose log still has records; each decrements it (release) after
     * its last record; the handover (mode := record) happens once it reads 0 (acquire). */
    int handover;
    /* The output region's every_ordered (ftmb_internal.h): every ordered access logs a claim. */
    int every_ordered;
    /* FTMB_REPLAY_STOP_AT_END=1 (the verification replay): once every log has been replayed and
     * the threads have gone past their logs (their outputs sent), the process exits cleanly. */
    int stop_at_end;
    _Atomic int stopping;
    /* Its end: every log replayed, or no thread has consumed a record for 500 ms while one waits
     * past its log or for a turn (an access the master made in a signal handler, e.g. its stop
     * flag, which no thread here replays). replay_progress counts records consumed, and the waits
     * for a live logger (input served again, room in an output ring: io.c). */
    _Atomic uint64_t replay_progress;
    /* Warm standby (FTMB_MODE=standby): the backup runs the program's initialization in record
     * mode, its records going to a private ring, and waits at the first spawn wrapper for the
     * master's death; then it takes the session over (see _ftmb_standby_takeover). */
    int standby;
    struct _ftmb_in_region *watch_in; /* the input region, only read, to see the master die */
    size_t watch_in_size;
    struct _ftmb_out_region *watch_out; /* the output region, only read: the master's death watch */
    size_t watch_out_size;
    /* A backup that attached without a snapshot (standby, follower): its threads hold the death
     * watch's backup slots (ftmb_internal.h, backup_live), armed when it takes over. */
    int live_backup;
    _Atomic uint32_t replay_left;
    _Atomic int handed_over;
    uint64_t replay_records;
    /* The failover's split (CLOCK_MONOTONIC ns; reported in one line at the handover, runtime.c):
     * the backup saw the master's death, had the complete log mapped, had its threads running. */
    uint64_t fo_died_ns, fo_log_ns, fo_restored_ns;
    uint64_t fo_restored_cpu_ns; /* CLOCK_PROCESS_CPUTIME_ID then: the replay's CPU time, all threads */
    /* Set once by _ftmb_check_peers; every access is relaxed: the flags guard no other data, and
     * a thread that reads a stale 0 only notices the dead logger one poll later. */
    _Atomic int in_dead, out_dead;
    struct _ftmb_peer_watch in_watch, out_watch; /* the loggers' heartbeats as _ftmb_check_peers sees them */
    _Atomic int exited; /* ftmb_exit ran (its exchange is seq_cst; it runs at most once) */
    _Atomic uint64_t last_peer_check_ns;
    struct _ftmb_inq inq[FTMB_MAX_QUEUES];
};

extern struct _ftmb_runtime _ftmb_rt __attribute__((visibility("hidden")));
extern struct _ftmb_thread _ftmb_threads[FTMB_MAX_THREADS] __attribute__((visibility("hidden")));

/* Fatal runtime misuse or replay divergence: one line on stderr, then abort. */
__attribute__((noreturn, format(printf, 1, 2))) void _ftmb_fatal(const char *fmt, ...);

/* Slow paths, rate-limited: look at both loggers and report one that died. */
void _ftmb_check_peers(void);
void _ftmb_cpu_relax(void);
void _ftmb_backoff(unsigned spins);

/* A lock acquisition through a wrapper: acquire (or try) the lock and record the order inside it;
 * in replay wait for the logged turn first. Returns acquire's result (0 = taken). */
int _ftmb_locked_acquire(int (*acquire)(volatile void *), int (*blocking)(volatile void *), volatile void *lock,
                         ftmb_obj_t obj, ftmb_site_t site, int is_try, int shared);

/* Replay: 1 while thread t follows its log; with failover, once its log has ended it waits for
 * the handover (every thread's log ended) and gets 0: record from then on. */
int _ftmb_replaying(struct _ftmb_thread *t);

/* A value a real clock chose (a wait's timeout, a libpcap break): always logged, replay takes it
 * from the thread's stream (runtime.c). _ftmb_replay_at_logged_value: 1 if the replaying thread's
 * next operation in the log is such a value (every quiet operation before it made). */
uint64_t _ftmb_logged_value(uint64_t v);
/* The verification replay: a receive or an external read past the thread's log is quiet while
 * another thread still replays (runtime.c). */
int _ftmb_quiet_past_log(struct _ftmb_thread *t);
int _ftmb_replay_at_logged_value(void);

/* Record mode, after a poll found nothing (an empty receive, a quiet-capable call that returned
 * its quiet result), outside any runtime operation: spin up to _ftmb_rt.dwell_ns until one of the
 * thread's input queues has an entry, an object it polls moved, or a checkpoint asks it to park
 * (runtime.c). Returns at once in every other mode. */
void _ftmb_dwell(struct _ftmb_thread *t);

/* Warm standby: wait for the master's death and the output logger's log, then replay it. */
void _ftmb_standby_takeover(void);

/* Every spawn wrapper starts with this: a standby takes over here; then, outside passthrough, a
 * start routine that no instrumented file registered as a thread root (ftmb_register_file) is
 * refused: one line on stderr naming it and exit(FTMB_EXIT_UNKNOWN_THREAD), unless
 * FTMB_ALLOW_UNKNOWN_THREADS=1 (then a one-line warning). `wrapper` names the spawn call. */
#define FTMB_EXIT_UNKNOWN_THREAD 70 /* EX_SOFTWARE */
#define FTMB_EXIT_SESSION_GONE 75 /* EX_TEMPFAIL: the run of its session ended (its loggers exited) */
void _ftmb_spawn_begin(void (*start)(void), const char *wrapper);

/* The record fast path's thread (runtime.c): the calling thread's own state while it may take the
 * PALs' record fast path (record mode, and it receives input, so checkpoints park it at its
 * receives), else NULL. One thread-local load is the whole mode/thread/receiver check of a PAL. It
 * changes only at the thread's receives (_ftmb_rec_fast_refresh, after the checkpoint's park), never
 * inside an operation: the mode leaves record only while every receiver is parked at a receive (a
 * snapshot taking over) or before any thread receives (a standby), and a thread that has become
 * a receiver, or whose process has gone live after a replay, takes the general path, which is
 * correct in every mode, until its next receive. */
/* It is ftmb/ftmb.h's ftmb_fast_thread (the thread's `fast` view, at offset 0 of its state), which
 * the program's inline fast path reads too. */
#define _FTMB_FAST_SAME(f, r) (offsetof(struct _ftmb_thread, fast.f) == offsetof(struct _ftmb_thread, r))
_Static_assert(offsetof(struct _ftmb_thread, fast) == 0 && _FTMB_FAST_SAME(head, rec.ctl) &&
                   _FTMB_FAST_SAME(slots, rec.buf) && _FTMB_FAST_SAME(mask, rec.mask) &&
                   _FTMB_FAST_SAME(slot_size, rec.slot_size) && _FTMB_FAST_SAME(local, rec.local) &&
                   _FTMB_FAST_SAME(cache, rec.cache) && _FTMB_FAST_SAME(objs, fast_objs) &&
                   _FTMB_FAST_SAME(own, own) && _FTMB_FAST_SAME(quiet, quiet) && _FTMB_FAST_SAME(every, fast_every) &&
                   _FTMB_FAST_SAME(run_at, run_at) &&
                   offsetof(struct _ftmb_ring_ctl, head) == 0 && sizeof(struct _ftmb_obj) == 8 * sizeof(uint64_t),
               "struct ftmb_fast (ftmb/ftmb.h) is the record ring's producer view");
static inline struct _ftmb_thread *_ftmb_rec_fast(void) { return (struct _ftmb_thread *)(void *)ftmb_fast_thread; }
static inline void _ftmb_rec_fast_refresh(struct _ftmb_thread *t)
{
    struct _ftmb_thread *want = _ftmb_mode_now == FTMB_MODE_RECORD && t->ckpt_receiver ? t : NULL;
    if (__builtin_expect(_ftmb_rec_fast() != want, 0)) {
        if (want) {
            want->fast_objs = (uint64_t *)(void *)_ftmb_rt.objs;
            want->fast_every = (uint64_t)_ftmb_rt.every_ordered;
        }
        ftmb_fast_thread = want ? &want->fast : NULL;
    }
}

/* Checkpoints (checkpoint.c). The coordinator bumps req; each receiving thread parks at its next
 * receive, every other program thread in a signal handler, until resume >= req. */
struct _ftmb_ckpt_state {
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t req;
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t resume;
};
extern struct _ftmb_ckpt_state _ftmb_ckpt;
void _ftmb_ckpt_park(struct _ftmb_thread *t);
void _ftmb_ckpt_register(struct _ftmb_thread *t);
int _ftmb_ckpt_start(void);
void _ftmb_ckpt_stop(void);
/* A program thread's start routine returned: checkpoints no longer capture it. */
void _ftmb_thread_finished(struct _ftmb_thread *t);
void _ftmb_thread_exiting(struct _ftmb_thread *t);

/* A runtime operation that touches the session's rings or an object's sequence word: a checkpoint
 * never captures a thread in the middle of one (a failover would resume it half done). Only threads
 * that do not receive are captured by the signal (receivers park at a receive): the PALs' record
 * fast path, which only receivers take, skips these (runtime.c), and elsewhere receivers pay one
 * predictable branch. One that starts receiving inside an
 * operation keeps in_op raised, which no longer matters to it. A signal that finds the thread inside
 * an operation asks it to park when its outermost operation ends: a busy-polling thread spends
 * nearly all its time inside operations (an ordered ring call, a logged stop-flag read), and a
 * signal alone would almost never find it outside one. */
void _ftmb_ckpt_park_asked(struct _ftmb_thread *t);
static inline void _ftmb_op_enter(struct _ftmb_thread *t)
{
    if (__builtin_expect(t->ckpt_receiver, 1))
        return;
    t->in_op++;
    atomic_signal_fence(memory_order_seq_cst); /* the signal handler on this thread sees it */
}
static inline void _ftmb_op_leave(struct _ftmb_thread *t)
{
    if (__builtin_expect(t->ckpt_receiver, 1))
        return;
    atomic_signal_fence(memory_order_seq_cst);
    /* A signal before the decrement sets park_asked, which the check below sees; one after it
     * finds in_op at 0 and parks the thread itself. */
    if (--t->in_op == 0 && __builtin_expect(t->park_asked, 0))
        _ftmb_ckpt_park_asked(t);
}

/* Failover from a snapshot (checkpoint.c): load the log, re-attach every thread to the session. */
/* The follower (FTMB_MODE=follow, follow.c): replay of the log as it arrives, then the takeover.
 * _ftmb_follow_mode is set once by ftmb_init, before any other thread exists. */
extern int _ftmb_follow_mode __attribute__((visibility("hidden")));
int _ftmb_follow_init(const char *session, int attach_ms);
void _ftmb_follow_at_exit(void);                         /* the program ended: wait for the master's */
void _ftmb_follow_need(struct _ftmb_thread *t);          /* a record to replay, or the log's end */
/* Record idx in the window (1), or the log ends before it / it has not arrived and !wait (0):
 * the quiet-count lookahead reads records ahead of the thread's position (runtime.c). */
int _ftmb_follow_have(struct _ftmb_thread *t, uint64_t idx, int wait);
/* 1: an output regenerated while following (kept until the takeover says whether the master sent it) */
int _ftmb_follow_drop_output(struct _ftmb_thread *t, uint16_t queue, const void *data, uint32_t len,
                             uint64_t in_time_ns);
void _ftmb_follow_rx(uint16_t queue, struct _ftmb_inq *q); /* a queue's move to the session's ring */

int _ftmb_map_replay_log(const char *path);
void _ftmb_publish_master(int mode);

/* A range of memory a snapshot holds. */
struct _ftmb_span {
    uint64_t addr, len;
};

/* Arena (arena.c). */
/* The arena's used parts (object words, then each thread heap up to its bump); returns how many. */
unsigned _ftmb_arena_used(struct _ftmb_span *out, unsigned max);
int _ftmb_arena_init(void);
void *_ftmb_arena_runtime_part(void);

#endif /* FTMB_RT_H */

/*
 * Checkpoints and failover from a snapshot (record mode, FTMB_CHECKPOINT_MS=N).
 *
 * Every N ms the runtime's coordinator thread quiesces the program: each thread that receives
 * input parks at the top of its next receive (a packet boundary: the previous burst is processed
 * and sent), every other program thread parks in a signal handler (FTMB_CAPTURE_SIGNAL), but never
 * inside a runtime operation (`in_op`: it parks when the operation ends); one still on its way
 * after the first spins runs at a real-time priority for a moment (boost_thread). A parked thread saves
 * its registers (getcontext), wakes the coordinator (which waits blocked: wait_for_parks) and
 * blocks on a futex. Then the coordinator forks with the raw clone
 * system call (no atfork handlers: the snapshot must keep every lock exactly as the parked threads
 * hold it; at a real-time priority where permitted, boost) and resumes the threads; the pause is the
 * time from the request to the resume.
 *
 * The child is the snapshot: the whole address space, copy-on-write: globals and statics, the heap,
 * the state arena with the per-object sequence words, the runtime's per-thread positions (record
 * count, output sequence, the next input entry of each queue, virtual time), each thread's stack
 * and saved registers. DPDK's memory is MAP_SHARED by default and would change under it, so the
 * DPDK adapter remaps it private before the workers launch. The master names the newest snapshot
 * in both session regions (`snapshot_pid`, release), then kills the previous one and lets the input
 * logger forget the entries before the snapshot's positions (`retain_from`; not with
 * FTMB_CHECKPOINT_GC=0, which the verification replay needs: it re-executes from the start).
 *
 * The snapshot waits (PR_SET_PDEATHSIG, and getppid; sooner, the death watch: every registered
 * thread's robust slot marked by the kernel, session.c) for the master to die. Then, if the regions
 * name it, it takes over: it maps the output logger's log (FTMB_REPLAY_LOG), starts each thread's
 * replay at its record count in the snapshot, re-attaches every thread to the session's rings where
 * the dead master left them, asks the input logger to serve each queue again from the snapshot's
 * position, publishes itself as the master, and restores the parked threads: one clone per thread
 * with the thread's own TLS block (CLONE_SETTLS: its pthread, `_ftmb_self`, DPDK's lcore id) that
 * setcontext()s onto the saved registers and stack. Each continues where it parked, replays its
 * log (runtime.c: the order of every shared access, nondeterministic values, receive
 * compositions), and the process goes live at the handover. Its coordinator goes on taking
 * checkpoints. Until the threads run again the snapshot uses no libc lock (no malloc, no stdio):
 * a parked thread may hold one.
 *
 * Limits: threads the runtime does not know (DPDK's interrupt and telemetry threads) are not
 * restored; a program thread whose start routine returned is not either (an EAL worker back in
 * its launch loop cannot be launched again in the backup); a thread parked in a sleep wakes early
 * (EINTR) once. At exit one line on stderr gives the count and the pause (request to resume) and
 * the fork's share, p50 and max (p99 of the pause; the minimum of the fork's CPU time, the figure
 * least disturbed by other load), and the program state in the data segment and the arena.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "rt.h"

extern char __data_start[] __attribute__((weak));
extern char _end[] __attribute__((weak));

#define PARK_TIMEOUT_NS 100000000ull /* a thread that does not park within this: skip the round */
#define PARK_BOOST_NS 1000000ull     /* threads on their way to a park run first for this long at most */
#define MAX_SAMPLES 65536
#define RESTORE_STACK 16384
#define CAPTURE_SIGNAL (SIGRTMIN + 7)
#define DEATH_SIGNAL (SIGRTMIN + 8)

struct _ftmb_ckpt_state _ftmb_ckpt;

/* One program thread's registers at its park. */
struct capture {
    ucontext_t uc;
    _Atomic uint64_t parked; /* the epoch it parked for (release, after uc is saved) */
    volatile int restored;   /* set by the snapshot before the thread runs again */
    void *robust_head;       /* glibc's robust list head of the thread (death watch: rehold_slot) */
};

static struct {
    uint64_t interval_ns;
    int gc;
    char log[512];
    long tid_off; /* where glibc keeps a thread's kernel tid in its pthread, or -1 */
    pthread_t thread;
    int running;
    pid_t child; /* the newest snapshot */
    uint64_t taken, skipped;
    uint64_t pause_ns[MAX_SAMPLES];
    uint64_t fork_ns[MAX_SAMPLES];
    uint64_t park_ns[MAX_SAMPLES];     /* request -> every thread parked */
    uint64_t fork_cpu_ns[MAX_SAMPLES]; /* the coordinator's CPU time in the clone system call (the
                                        * kernel's copy of the address space: not the machine's load) */
    uint64_t park_rx_ns[MAX_SAMPLES];  /* request -> every receiver parked (the rest of the park: the
                                        * others, by the signal) */
    uint64_t fork_preempted;           /* the coordinator's involuntary context switches in the clones */
    int boosted[FTMB_MAX_THREADS];     /* 1 + the policy a thread had before boost_thread raised it */
    uint64_t boosts;                   /* threads raised on their way to a park, over the run */
    uint64_t seq_at[FTMB_MAX_QUEUES]; /* each queue's next entry at the newest snapshot */
    uint64_t rec_at[FTMB_MAX_THREADS]; /* each thread's record count at the newest snapshot */
    struct capture cap[FTMB_MAX_THREADS];
    void *coord_robust_head;     /* the coordinator's robust list head */
    _Atomic uint32_t resume_gen; /* futex word of the parked threads: bumped at each resume */
    _Atomic uint32_t parks;      /* futex word of the coordinator: bumped at each park (wait_for_parks) */
    _Atomic uint64_t last_running_ns; /* when the last parked thread ran again (CLOCK_MONOTONIC) */
    uint64_t resumed_ns[MAX_SAMPLES]; /* resume -> every parked thread running again (taken at the next round) */
    uint64_t resume_at;          /* when the newest round resumed */
    _Atomic uint32_t rehold_left; /* a snapshot that took over: threads yet to take their death-watch slot */
} ck;

static char restore_stack[FTMB_MAX_THREADS][RESTORE_STACK] __attribute__((aligned(64)));

/* Until the threads run again only write(2): see the top. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 && write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        (void)0;
}

/* The calling thread's robust list head (glibc registers it with the kernel at the thread's start). */
static void *own_robust_head(void)
{
    void *head = NULL;
    size_t len;
    if (syscall(SYS_get_robust_list, 0, &head, &len) != 0)
        return NULL;
    return head;
}

/* A thread of a snapshot that took over (restored, or the coordinator) takes its death-watch slot
 * afresh, and the last one arms the watch for this process (session.c, _ftmb_live_rehold). */
static void rehold_slot(uint32_t slot, void *robust_head)
{
    _ftmb_live_rehold(_ftmb_rt.out, slot, robust_head);
    /* Acq_rel: the last one to count down sees every other slot held; its release store of live_pid
     * (pairs with the watchers' acquire) publishes them all. */
    if (atomic_fetch_sub_explicit(&ck.rehold_left, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&_ftmb_rt.out->live_coord, 1, memory_order_relaxed); /* (its slot is held) */
        atomic_store_explicit(&_ftmb_rt.out->live_backup, 0, memory_order_relaxed); /* (live[], reheld) */
        atomic_store_explicit(&_ftmb_rt.out->live_pid, (int32_t)getpid(), memory_order_release);
    }
}

static void park(struct _ftmb_thread *t, uint64_t e)
{
    struct capture *c = &ck.cap[t->index];
    t->ckpt_seen = e;
    c->restored = 0;
    if (!c->robust_head) /* once per thread */
        c->robust_head = own_robust_head();
    getcontext(&c->uc); /* the snapshot resumes the thread here, with restored set */
    if (c->restored)
        rehold_slot(t->index, c->robust_head);
    else {
        /* Release: the saved registers and this thread's writes happen before the fork (pairs
         * with the coordinator's acquire). */
        atomic_store_explicit(&c->parked, e, memory_order_release);
        /* Release: the coordinator that reads the new count sees parked (wait_for_parks). */
        atomic_fetch_add_explicit(&ck.parks, 1, memory_order_release);
        syscall(SYS_futex, &ck.parks, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    /* Blocked, not spinning, until the resume (resume_all): on a machine with fewer CPUs than
     * threads a spinning parked thread takes the CPU from those still on their way to a park and
     * from the coordinator's fork. Acquire pairs with the coordinator's release of resume. */
    for (;;) {
        uint32_t gen = atomic_load_explicit(&ck.resume_gen, memory_order_acquire);
        if (atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_acquire) >= e)
            break;
        syscall(SYS_futex, &ck.resume_gen, FUTEX_WAIT_PRIVATE, gen, NULL, NULL, 0);
    }
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC); /* the last thread to run again ends the pause */
    uint64_t last = atomic_load_explicit(&ck.last_running_ns, memory_order_relaxed);
    while (last < now && !atomic_compare_exchange_weak_explicit(&ck.last_running_ns, &last, now, memory_order_relaxed,
                                                                 memory_order_relaxed))
        ;
}

/* Every parked thread runs on from epoch e (release: pairs with the parks' acquire). */
static void resume_all(uint64_t e)
{
    atomic_store_explicit(&_ftmb_ckpt.resume, e, memory_order_release);
    /* Release: a parked thread that reads the new generation sees resume (its wait returns or is
     * not entered: FUTEX_WAIT compares the generation it read before resume). */
    atomic_fetch_add_explicit(&ck.resume_gen, 1, memory_order_release);
    syscall(SYS_futex, &ck.resume_gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* A receiving thread at the top of a receive. */
void _ftmb_ckpt_park(struct _ftmb_thread *t)
{
    /* Acquire pairs with the coordinator's release of req. */
    uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_acquire);
    /* Relaxed: only the coordinator writes resume; a round that ended already needs no park. */
    if (atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_relaxed) < e)
        park(t, e);
    else
        t->ckpt_seen = e;
}

/* Any other program thread, wherever it is, unless inside a runtime operation. */
static void on_capture(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    int saved = errno;
    struct _ftmb_thread *t = _ftmb_self;
    /* Acquire pairs with the coordinator's release of req. */
    uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_acquire);
    if (t && !t->ckpt_receiver && t->ckpt_seen != e &&
        atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_relaxed) < e) {
        if (t->in_op)
            t->park_asked = 1; /* _ftmb_op_leave parks it when the operation ends */
        else
            park(t, e);
    }
    errno = saved;
}

/* A non-receiving thread whose outermost runtime operation just ended after a checkpoint signal. */
void _ftmb_ckpt_park_asked(struct _ftmb_thread *t)
{
    t->park_asked = 0;
    atomic_signal_fence(memory_order_seq_cst); /* a signal from here on parks it in the handler */
    /* Acquire pairs with the coordinator's release of req. */
    uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_acquire);
    if (t->ckpt_seen != e && atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_relaxed) < e)
        park(t, e);
}

void _ftmb_ckpt_register(struct _ftmb_thread *t)
{
    /* Acquire pairs with the coordinator's release of resume: a round in progress parks us at the
     * next receive. Set before the flag: the signal handler then leaves this thread alone. */
    t->ckpt_seen = atomic_load_explicit(&_ftmb_ckpt.resume, memory_order_acquire);
    t->ckpt_receiver = 1;
    atomic_signal_fence(memory_order_seq_cst);
}

void _ftmb_thread_finished(struct _ftmb_thread *t)
{
    if (t) /* Release: pairs with the coordinator's acquire. */
        atomic_store_explicit(&t->os_state, _FTMB_OS_FINISHED, memory_order_release);
}

/* A pthread whose start routine returned: its OS thread still runs glibc's exit (TLS destructors,
 * freeing its malloc cache under the arena lock), and the kernel clears the tid in its pthread,
 * which pthread_join waits for, only when it is gone. A snapshot forked meanwhile would keep that
 * tid set forever (the kernel clears it in the master only) and a joiner restored from it would
 * wait for ever. So no checkpoint is taken while such a thread exists (capture_all). */
void _ftmb_thread_exiting(struct _ftmb_thread *t)
{
    if (!t)
        return;
    t->os_tid = (int)syscall(SYS_gettid);
    /* Release: os_tid is set; pairs with the coordinator's acquire. */
    atomic_store_explicit(&t->os_state, _FTMB_OS_EXITING, memory_order_release);
}

/* An EXITING thread's OS thread is gone (then it is FINISHED for good: its tid may be reused). */
static int exited(struct _ftmb_thread *t)
{
    if (syscall(SYS_tgkill, getpid(), t->os_tid, 0) == 0 || errno != ESRCH)
        return 0;
    int exiting = _FTMB_OS_EXITING;
    atomic_compare_exchange_strong_explicit(&t->os_state, &exiting, _FTMB_OS_FINISHED, memory_order_relaxed,
                                            memory_order_relaxed);
    return 1;
}

/* Between two looks at the parks: 64 spins, then blocked until a thread parks (the count read
 * before the look changed: parked threads wake it) or 50 µs pass (to signal again, or to give up
 * the round), not a yield: the threads on their way to a park need the CPU, and a yielding
 * coordinator stays runnable and takes it back from them on a machine with fewer CPUs than threads. */
static void wait_for_parks(unsigned poll, uint32_t seen)
{
    if (poll < 64) {
        _ftmb_cpu_relax();
        return;
    }
    struct timespec ts = {0, 50000};
    syscall(SYS_futex, &ck.parks, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

/* Real-time priority where permitted (else nothing changes): the coordinator's from the request to
 * the resume (boost), and the program threads' on their way to a park (boost_thread). A checkpoint
 * parks busy-polling threads that may outnumber the CPUs: a thread that has to reach its park
 * waits for a CPU behind the others, the loggers and the machine's other jobs (packet_ordering's
 * 4 lcores on 2 CPUs: the receiver's park was most of the pause), and the coordinator, that wakes
 * every 50 µs to look, behind them all. The coordinator is above the threads (priority 2 to their
 * 1) so that it always gets to look, and a thread keeps the priority for PARK_BOOST_NS at most: one
 * on its way to a park that spins on a lock whose holder is not boosted would otherwise keep the
 * holder off the CPU (priority inversion) until the round's timeout. SCHED_RESET_ON_FORK: a
 * snapshot, and whatever a boosted thread forks or spawns, start at the default policy. */
static int boost_refused;

static void boost(int on)
{
    if (boost_refused)
        return;
    struct sched_param p = {.sched_priority = on ? 2 : 0};
    if (sched_setscheduler(0, on ? SCHED_FIFO | SCHED_RESET_ON_FORK : SCHED_OTHER, &p) != 0 && on)
        boost_refused = 1;
}

/* Raise program thread i to priority 1 (on) or give it back the policy it had (off). A thread the
 * program runs at a policy of its own (real-time lcores) is left alone. */
static void boost_thread(uint32_t i, int on)
{
    struct _ftmb_thread *t = &_ftmb_threads[i];
    if (on ? boost_refused || ck.boosted[i] || ck.tid_off < 0 || !t->pthread : !ck.boosted[i])
        return;
    pid_t tid = *(volatile pid_t *)((char *)t->pthread + ck.tid_off);
    if (tid <= 0)
        return;
    if (!on) {
        struct sched_param p = {.sched_priority = 0};
        sched_setscheduler(tid, ck.boosted[i] - 1, &p);
        ck.boosted[i] = 0;
        return;
    }
    int policy = sched_getscheduler(tid);
    int base = policy & ~SCHED_RESET_ON_FORK;
    if (policy < 0 || (base != SCHED_OTHER && base != SCHED_BATCH))
        return;
    struct sched_param p = {.sched_priority = 1};
    if (sched_setscheduler(tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &p) == 0) {
        ck.boosted[i] = 1 + policy;
        ck.boosts++;
    } else if (errno == EPERM) {
        boost_refused = 1;
    }
}

static void unboost_threads(void)
{
    for (uint32_t i = 0; i < FTMB_MAX_THREADS; i++)
        if (ck.boosted[i])
            boost_thread(i, 0);
}

/* Park every program thread for epoch e; 0 if one did not within PARK_TIMEOUT_NS. Receivers park
 * first: a thread parked in the handler may hold a program lock a receiver waits for. The others
 * are signalled as soon as the receivers are in, and again every 64 polls (one inside a runtime
 * operation parks when it ends; the signal is repeated for threads that started meanwhile). */
static int capture_all(uint64_t e, uint64_t t0, int *receivers, uint64_t *rx_done)
{
    uint32_t signalled_at[FTMB_MAX_THREADS] = {0};
    int boosting = 0; /* after the first spins, for PARK_BOOST_NS (boost_thread) */
    for (uint32_t poll = 1;; poll++) {
        if (poll >= 64) {
            int was = boosting;
            boosting = _ftmb_now_ns(CLOCK_MONOTONIC) - t0 < PARK_BOOST_NS;
            if (was && !boosting)
                unboost_threads();
        }
        /* Relaxed: indexes are claimed by spawn wrappers; a thread claimed after this read has not
         * run program code yet that this snapshot would miss (its spawner is parked). */
        uint32_t n = atomic_load_explicit(&_ftmb_rt.next_index, memory_order_relaxed);
        /* Acquire pairs with the parks' count (release): a park after this read changes it. */
        uint32_t seen = atomic_load_explicit(&ck.parks, memory_order_acquire);
        unsigned waiting_rx = 0, waiting_other = 0, rx = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct _ftmb_thread *t = &_ftmb_threads[i];
            /* Acquire pairs with the release in _ftmb_adopt_thread_index / _ftmb_thread_finished. */
            int state = atomic_load_explicit(&t->os_state, memory_order_acquire);
            if (state == _FTMB_OS_FINISHED)
                continue;
            if (state == _FTMB_OS_EXITING) {
                if (exited(t))
                    continue;
                ck.skipped++; /* still on its way out: skip the round (see _ftmb_thread_exiting) */
                return 0;
            }
            if (state == _FTMB_OS_NOT_STARTED) { /* launched, not running yet: a snapshot would miss it */
                waiting_other++;
                continue;
            }
            int is_rx = __atomic_load_n(&t->ckpt_receiver, __ATOMIC_RELAXED);
            rx += is_rx;
            /* Acquire pairs with the parked thread's release. */
            if (atomic_load_explicit(&ck.cap[i].parked, memory_order_acquire) == e)
                continue;
            if (is_rx)
                waiting_rx++;
            else
                waiting_other++;
            if (boosting && (is_rx || signalled_at[i]))
                boost_thread(i, 1); /* (a receiver, or a thread signalled to park) */
        }
        *receivers = (int)rx;
        if (!rx)
            return 0; /* nothing receives yet (initialization): no checkpoint */
        if (!waiting_rx && !*rx_done)
            *rx_done = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (!waiting_rx && !waiting_other)
            return 1;
        if (!waiting_rx)
            for (uint32_t i = 0; i < n; i++) {
                struct _ftmb_thread *t = &_ftmb_threads[i];
                if (atomic_load_explicit(&t->os_state, memory_order_acquire) == _FTMB_OS_RUNNING &&
                    !__atomic_load_n(&t->ckpt_receiver, __ATOMIC_RELAXED) &&
                    atomic_load_explicit(&ck.cap[i].parked, memory_order_acquire) != e &&
                    (!signalled_at[i] || poll - signalled_at[i] >= 64)) {
                    signalled_at[i] = poll;
                    pthread_kill((pthread_t)t->pthread, CAPTURE_SIGNAL);
                }
            }
        if ((poll & 63) == 0 && _ftmb_now_ns(CLOCK_MONOTONIC) - t0 > PARK_TIMEOUT_NS)
            return 0;
        wait_for_parks(poll, seen);
    }
}

/* ---- the snapshot process ------------------------------------------------------------------- */

static int restore_entry(void *arg)
{
    setcontext(&((struct capture *)arg)->uc);
    return 1;
}

/* The coordinator of the snapshot: this process's only thread until the others are restored. */
static void fix_own_tid(void)
{
    if (ck.tid_off < 0)
        return;
    pid_t *tidp = (pid_t *)((char *)pthread_self() + ck.tid_off);
    /* The kernel clears it when this thread exits, so pthread_join on it works here too. */
    *tidp = (pid_t)syscall(SYS_set_tid_address, tidp);
}

__attribute__((noreturn)) static void snapshot_fail(const char *why)
{
    say("ftmb: snapshot: cannot take over: %s\n", why);
    _exit(1);
}

/* The master died and the regions name this snapshot: become the master (see the top). */
static void take_over(uint64_t e, pid_t master)
{
    uint64_t died = _ftmb_now_ns(CLOCK_REALTIME);
    _ftmb_rt.fo_died_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    struct timespec nap = {0, 20000};
    while (access(ck.log, R_OK) != 0) { /* the output logger writes it once it stored every record */
        if (!_ftmb_peer_alive(&_ftmb_rt.out->hdr, _ftmb_rt.peer_timeout_ns))
            snapshot_fail("the output logger died before it wrote the log");
        nanosleep(&nap, NULL);
    }
    if (_ftmb_map_replay_log(ck.log) != 0)
        snapshot_fail("the log cannot be read");
    _ftmb_rt.fo_log_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    uint32_t n = atomic_load_explicit(&_ftmb_rt.next_index, memory_order_relaxed);
    uint32_t left = 0;
    uint64_t records = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct _ftmb_thread *t = &_ftmb_threads[i];
        t->rlog = _ftmb_rt.replay_log[i];
        t->rlen = _ftmb_rt.replay_len[i];
        t->rbase = _ftmb_rt.replay_base[i];
        t->rpos = t->rec.local; /* its record count at the snapshot */
        t->loud_valid = 0;      /* its next loud record is looked up in this log */
        if (t->rlen < t->rpos || t->rpos < t->rbase) {
            say("ftmb: snapshot: thread %u had %llu records but the log has records %llu to %llu\n", i,
                (unsigned long long)t->rpos, (unsigned long long)t->rbase, (unsigned long long)t->rlen);
            snapshot_fail("the log does not continue the snapshot");
        }
        t->replay_finished = t->rpos == t->rlen;
        left += !t->replay_finished;
        records += t->rlen - t->rpos;
        if (t->has_rings) { /* continue its streams where the dead master's rings end */
            _ftmb_ring_attach(&t->rec, _ftmb_rt.out, &_ftmb_rt.out->thread[i].rec, 1);
            _ftmb_ring_attach(&t->out, _ftmb_rt.out, &_ftmb_rt.out->thread[i].out, 1);
        }
    }
    _ftmb_rt.replay_records = records;
    atomic_store_explicit(&_ftmb_rt.replay_left, left, memory_order_relaxed);
    _ftmb_publish_master(FTMB_MODE_REPLAY); /* the input logger serves (and rewinds for) the master it names */
    for (uint16_t q = 0; q < _ftmb_rt.in->nqueues; q++) {
        struct _ftmb_inq *iq = &_ftmb_rt.inq[q];
        /* Consume from where the dead master left the ring, ... */
        _ftmb_ring_attach(&iq->ring, _ftmb_rt.in, &_ftmb_rt.in->queue[q].ring, 0);
        iq->pending = 0;
        if (iq->owner) /* ... and have it served again from the snapshot's position (every queue's */
            _ftmb_input_rewind_request(q, iq->next_seq); /* request first: one pass of the logger) */
    }
    for (uint16_t q = 0; q < _ftmb_rt.in->nqueues; q++) {
        struct _ftmb_inq *iq = &_ftmb_rt.inq[q];
        if (iq->owner) {
            int eof = iq->eof; /* the rewind forgets it; a snapshot past the end keeps it (time goes on) */
            if (_ftmb_input_rewind_wait(q) != 0)
                snapshot_fail("the input logger died");
            iq->eof = eof;
            iq->replay_synced = 1;
        }
    }
    _ftmb_rt.handover = 1;
    atomic_store_explicit(&_ftmb_rt.handed_over, 0, memory_order_relaxed);
    __atomic_store_n(&_ftmb_mode_now, FTMB_MODE_REPLAY, __ATOMIC_RELEASE);
    ck.child = 0;
    say("ftmb: snapshot: the master (pid %d) died; taking over at %llu ns from the snapshot of epoch %llu with "
        "%llu records to replay\n",
        (int)master, (unsigned long long)died, (unsigned long long)e, (unsigned long long)records);
    /* The death watch for this process (runtime/README.md): each restored thread and this coordinator
     * take their slots afresh; the last one arms it. Relaxed: the clones below publish it. */
    uint32_t restoring = 1;
    for (uint32_t i = 0; i < n; i++)
        restoring += atomic_load_explicit(&ck.cap[i].parked, memory_order_relaxed) == e;
    atomic_store_explicit(&ck.rehold_left, restoring, memory_order_relaxed);
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
    if (ck.tid_off >= 0) /* the thread's pthread gets its new tid, cleared at exit: joins work */
        flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    for (uint32_t i = 0; i < n; i++) {
        struct _ftmb_thread *t = &_ftmb_threads[i];
        if (atomic_load_explicit(&ck.cap[i].parked, memory_order_relaxed) != e)
            continue;
        ck.cap[i].restored = 1;
        pid_t *ctid = ck.tid_off >= 0 ? (pid_t *)(t->pthread + (uintptr_t)ck.tid_off) : NULL;
        if (clone(restore_entry, restore_stack[i] + RESTORE_STACK, flags, &ck.cap[i], NULL, (void *)t->pthread,
                  ctid) < 0)
            snapshot_fail("clone failed");
    }
    rehold_slot(FTMB_MAX_THREADS, ck.coord_robust_head);
    _ftmb_rt.fo_restored_ns = _ftmb_now_ns(CLOCK_MONOTONIC);
    _ftmb_rt.fo_restored_cpu_ns = _ftmb_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    /* Release: the replay state above (and the stamp) is visible to every restored thread (pairs
     * with the park's acquire of resume). */
    resume_all(e);
}

/* Both loggers still run (their processes exist): a snapshot of a session whose loggers are gone
 * (the run ended, or killed them) has nothing to serve and must not outlive it. Syscalls only: a
 * parked thread may hold a libc lock. */
static int session_alive(void)
{
    /* Relaxed: each owner pid was written once, before its region was marked ready. */
    return _ftmb_pid_alive(atomic_load_explicit(&_ftmb_rt.in->hdr.owner_pid, memory_order_relaxed)) &&
           _ftmb_pid_alive(atomic_load_explicit(&_ftmb_rt.out->hdr.owner_pid, memory_order_relaxed));
}

/* The child of the fork for epoch e: wait for the master's death or for being replaced. */
static void snapshot_main(uint64_t e, pid_t master)
{
    fix_own_tid();
    setpgid(0, 0); /* a signal to the master's process group (its crash, its stop) is not for us */
    sigset_t death;
    sigemptyset(&death);
    sigaddset(&death, DEATH_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &death, NULL);
    prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL);
    struct _ftmb_region_hdr *h = &_ftmb_rt.in->hdr;
    struct timespec wait = {0, 20000000}, nap = {0, 100000};
    int dying = 0; /* the death signal came with the forking thread; the others follow within moments */
    /* The death watch, when the master armed it, polls every ms: every registered thread of the
     * master past its robust-list processing (before its address space is torn down). */
    while (getppid() == master) {
        /* (Looked at each time: a master that took over from a snapshot arms it once its threads
         * hold their slots again.) */
        int watch = atomic_load_explicit(&_ftmb_rt.out->live_pid, memory_order_acquire) == master;
        wait.tv_nsec = watch ? 1000000 : 20000000;
        if (watch && _ftmb_master_threads_dead(_ftmb_rt.out, master))
            break;
        /* Acquire pairs with ftmb_exit's release: a master that finished, or that a stop signal is
         * ending (runtime.c, stop_by_default), needs no backup. */
        uint32_t state = atomic_load_explicit(&h->master_state, memory_order_acquire);
        if (state == _FTMB_MASTER_DONE || state == _FTMB_MASTER_STOPPED)
            _exit(0);
        if (!session_alive()) /* the run ended: nobody will need this snapshot */
            _exit(0);
        if (dying)
            nanosleep(&nap, NULL);
        else
            dying = sigtimedwait(&death, NULL, &wait) == DEATH_SIGNAL;
    }
    /* The death signal is for this wait only: a pending one would kill the restored threads (an
     * unblocked real-time signal terminates). */
    prctl(PR_SET_PDEATHSIG, 0);
    struct timespec none = {0, 0};
    while (sigtimedwait(&death, NULL, &none) > 0)
        ;
    /* Acquire pairs with the master's release store of snapshot_pid: the newest snapshot takes over. */
    int32_t named = atomic_load_explicit(&h->snapshot_pid, memory_order_acquire);
    if (named != getpid()) {
        say("ftmb: snapshot: the master (pid %d) is gone; the newest snapshot is pid %d, not this one (%d)\n",
            (int)master, (int)named, (int)getpid());
        _exit(0);
    }
    /* The master's process is exiting (every registered thread is past its robust list, or its last
     * thread reparented us; /proc may still show it running for a moment): it died unless it marked
     * itself done. Acquire pairs with ftmb_exit. */
    uint32_t state = atomic_load_explicit(&h->master_state, memory_order_acquire);
    if (!session_alive()) {
        say("ftmb: snapshot: the master (pid %d) is gone and so are the session's loggers; nothing to take over\n",
            (int)master);
        _exit(0);
    }
    if (state != _FTMB_MASTER_ATTACHED || atomic_load_explicit(&h->master_pid, memory_order_relaxed) != master) {
        say("ftmb: snapshot: the master (pid %d) %s; nothing to take over\n", (int)master,
            state == _FTMB_MASTER_STOPPED ? "was stopped by a signal" : "finished");
        _exit(0);
    }
    take_over(e, master);
}

/* ---- the coordinator ---------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void name_snapshot(pid_t pid)
{
    struct _ftmb_region_hdr *hs[2] = {&_ftmb_rt.in->hdr, &_ftmb_rt.out->hdr};
    for (int i = 0; i < 2; i++)
        /* Release: pairs with the acquire of the snapshot, the standby and the orchestrator. */
        atomic_store_explicit(&hs[i]->snapshot_pid, (int32_t)pid, memory_order_release);
}

/* The newest round's resume -> every parked thread running again, once they have. */
static void note_resumed(void)
{
    if (ck.resume_at && ck.taken && ck.taken <= MAX_SAMPLES) {
        uint64_t last = atomic_load_explicit(&ck.last_running_ns, memory_order_relaxed);
        ck.resumed_ns[ck.taken - 1] = last > ck.resume_at ? last - ck.resume_at : 0;
    }
    ck.resume_at = 0;
}

/* One round: park every thread (the coordinator at its real-time priority, boost: it only looks
 * between blocked waits, and the threads on their way to a park run first), fork the snapshot at
 * that priority (every program thread is blocked then and the coordinator does nothing but the
 * kernel's copy of the address space, which the machine's other runnable threads would otherwise
 * preempt: fork_preempted), resume. */
static void checkpoint(void)
{
    int status;
    if (ck.child > 0 && waitpid(ck.child, &status, WNOHANG) == ck.child) { /* it should wait until replaced */
        fprintf(stderr, "ftmb: the snapshot (pid %d) died (%s %d): no backup from a checkpoint until the next one\n",
                (int)ck.child, WIFSIGNALED(status) ? "signal" : "exit",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        name_snapshot(0);
        ck.child = 0;
    }
    note_resumed();
    uint64_t t0 = _ftmb_now_ns(CLOCK_MONOTONIC);
    /* Relaxed read: only this thread writes req. Release: pairs with the parks' acquire. */
    uint64_t e = atomic_load_explicit(&_ftmb_ckpt.req, memory_order_relaxed) + 1;
    atomic_store_explicit(&_ftmb_ckpt.req, e, memory_order_release);
    int receivers = 0;
    uint64_t rx_done = 0;
    boost(1);
    int all = capture_all(e, t0, &receivers, &rx_done);
    unboost_threads(); /* (parked now, or the round given up) */
    uint64_t t1 = _ftmb_now_ns(CLOCK_MONOTONIC);
    pid_t pid = 0, master = getpid();
    uint64_t c0 = 0, c1 = 0;
    struct rusage ru0, ru1;
    if (all) {
        for (uint16_t q = 0; q < _ftmb_rt.in->nqueues; q++)
            ck.seq_at[q] = _ftmb_rt.inq[q].next_seq;
        for (uint32_t i = 0; i < FTMB_MAX_THREADS; i++)
            ck.rec_at[i] = _ftmb_threads[i].rec.local;
        getrusage(RUSAGE_THREAD, &ru0);
        c0 = _ftmb_now_ns(CLOCK_THREAD_CPUTIME_ID);
        pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0); /* fork without atfork handlers */
        c1 = _ftmb_now_ns(CLOCK_THREAD_CPUTIME_ID);
        if (pid != 0) /* (the snapshot starts at the default policy: SCHED_RESET_ON_FORK) */
            boost(0);
        if (pid > 0 && getrusage(RUSAGE_THREAD, &ru1) == 0)
            ck.fork_preempted += (uint64_t)(ru1.ru_nivcsw - ru0.ru_nivcsw);
        if (pid == 0) {
            snapshot_main(e, master);
            return; /* this process is the master now: go on taking checkpoints */
        }
        if (pid > 0) /* (the child does it too) out of the master's group before anyone can name it */
            setpgid(pid, pid);
    } else {
        boost(0);
    }
    /* They run on from here. (Every thread is parked or the round was given up: none writes
     * last_running_ns now.) */
    atomic_store_explicit(&ck.last_running_ns, 0, memory_order_relaxed);
    uint64_t t2 = _ftmb_now_ns(CLOCK_MONOTONIC), pause = t2 - t0;
    resume_all(e); /* (its futex wake counts in the resume, below) */
    if (pid <= 0) {
        ck.skipped += receivers > 0;
        return;
    }
    if (ck.taken < MAX_SAMPLES) {
        ck.pause_ns[ck.taken] = pause;
        ck.fork_ns[ck.taken] = pause - (t1 - t0);
        ck.park_ns[ck.taken] = t1 - t0;
        ck.fork_cpu_ns[ck.taken] = c1 - c0;
        ck.park_rx_ns[ck.taken] = rx_done - t0;
    }
    ck.taken++;
    ck.resume_at = t2;
    name_snapshot(pid);
    pid_t old = ck.child;
    ck.child = pid;
    if (old > 0) {
        kill(old, SIGKILL);
        waitpid(old, NULL, 0);
    }
    if (!ck.gc)
        return;
    for (uint16_t q = 0; q < _ftmb_rt.in->nqueues; q++)
        if (_ftmb_rt.inq[q].owner)
            _ftmb_input_retain_from(q, ck.seq_at[q]);
    for (uint32_t i = 0; i < _ftmb_rt.out->max_threads && i < FTMB_MAX_THREADS; i++)
        if (ck.rec_at[i]) /* Relaxed: a mark for the output logger's collection, guards nothing. */
            atomic_store_explicit(&_ftmb_rt.out->thread[i].retain_from, ck.rec_at[i], memory_order_relaxed);
}

static void *coordinator(void *arg)
{
    (void)arg;
    /* Signals for the process (the program's SIGINT stop) go to the program's threads, never here:
     * in a process restored from a snapshot this thread is the only one the program did not make. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    _ftmb_live_hold(_ftmb_rt.out, FTMB_MAX_THREADS, 0); /* its death-watch slot (set counted in _ftmb_ckpt_start) */
    ck.coord_robust_head = own_robust_head();
    struct timespec nap = {(time_t)(ck.interval_ns / 1000000000ull), (long)(ck.interval_ns % 1000000000ull)};
    for (;;) {
        nanosleep(&nap, NULL);
        if (atomic_load_explicit(&_ftmb_rt.exited, memory_order_relaxed))
            break;
        _ftmb_exit_if_session_gone(); /* a program idle in a wait checks no peers */
        if (__atomic_load_n(&_ftmb_mode_now, __ATOMIC_ACQUIRE) == FTMB_MODE_RECORD)
            checkpoint(); /* (a backup restored from a snapshot replays first) */
    }
    return NULL;
}

/* Where glibc keeps the kernel tid in a thread's pthread (the only int there equal to it). */
static long find_tid_offset(void)
{
    pid_t me = (pid_t)syscall(SYS_gettid);
    const char *p = (const char *)pthread_self();
    long found = -1;
    for (long off = 0; off < 2048; off += (long)sizeof(pid_t))
        if (*(const pid_t *)(p + off) == me) {
            if (found >= 0)
                return -1;
            found = off;
        }
    return found;
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
    const char *gc = getenv("FTMB_CHECKPOINT_GC");
    if (gc && *gc && strcmp(gc, "0") != 0 && strcmp(gc, "1") != 0) {
        fprintf(stderr, "ftmb: FTMB_CHECKPOINT_GC=%s: expected 0 (keep every input entry) or 1\n", gc);
        return -1;
    }
    const char *log = getenv("FTMB_REPLAY_LOG");
    if (!log || !*log || strlen(log) >= sizeof ck.log) {
        fprintf(stderr, "ftmb: FTMB_CHECKPOINT_MS needs FTMB_REPLAY_LOG: where the output logger writes its log "
                        "when the master dies (ftmb-output-logger --log)\n");
        return -1;
    }
    snprintf(ck.log, sizeof ck.log, "%s", log);
    ck.gc = !(gc && strcmp(gc, "0") == 0);
    ck.interval_ns = (uint64_t)v * 1000000ull;
    ck.tid_off = find_tid_offset();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_capture;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    /* The coordinator's death-watch slot counts from now (it reads as alive until the thread locks
     * it). Release: pairs with the watchers' acquire. Relaxed: live_pid is this process's store. */
    if (_ftmb_rt.out && atomic_load_explicit(&_ftmb_rt.out->live_pid, memory_order_relaxed) == getpid())
        atomic_store_explicit(&_ftmb_rt.out->live_coord, 1, memory_order_release);
    if (sigaction(CAPTURE_SIGNAL, &sa, NULL) != 0 || pthread_create(&ck.thread, NULL, coordinator, NULL) != 0) {
        fprintf(stderr, "ftmb: cannot start the checkpoint thread\n");
        return -1;
    }
    ck.running = 1;
    return 0;
}

/* At exit: stop the coordinator and the snapshot (a finished master needs none), report. */
void _ftmb_ckpt_stop(void)
{
    if (!ck.running)
        return;
    ck.running = 0;
    pthread_join(ck.thread, NULL);
    note_resumed();
    if (ck.child > 0) {
        name_snapshot(0);
        kill(ck.child, SIGKILL);
        waitpid(ck.child, NULL, 0);
        ck.child = 0;
    }
    uint64_t n = ck.taken < MAX_SAMPLES ? ck.taken : MAX_SAMPLES;
    uint64_t *samples[] = {ck.pause_ns, ck.fork_ns, ck.park_ns, ck.fork_cpu_ns, ck.park_rx_ns, ck.resumed_ns};
    double p50[6] = {0}, p99[6] = {0}, max[6] = {0}, min[6] = {0}; /* µs */
    for (int k = 0; k < 6 && n; k++) {
        qsort(samples[k], n, sizeof samples[k][0], cmp_u64);
        min[k] = (double)samples[k][0] / 1000.0;
        p50[k] = (double)samples[k][n / 2] / 1000.0;
        p99[k] = (double)samples[k][(n * 99) / 100] / 1000.0;
        max[k] = (double)samples[k][n - 1] / 1000.0;
    }
    unsigned mappings = 0; /* what the fork copies one by one */
    FILE *maps = fopen("/proc/self/maps", "r");
    for (int ch; maps && (ch = getc(maps)) != EOF;)
        mappings += ch == '\n';
    if (maps)
        fclose(maps);
    uint64_t bytes = 0;
    struct _ftmb_span r[1 + FTMB_MAX_THREADS];
    unsigned nr = _ftmb_arena_used(r, FTMB_MAX_THREADS + 1);
    for (unsigned i = 0; i < nr; i++)
        bytes += r[i].len;
    if (__data_start && _end)
        bytes += (uint64_t)(_end - __data_start);
    fprintf(stderr,
            "ftmb: checkpoints %llu skipped %llu pause_us p50 %.1f max %.1f fork_us p50 %.1f max %.1f "
            "state_bytes %llu park_us p50 %.1f max %.1f fork_cpu_us p50 %.1f max %.1f mappings %u "
            "pause_us p99 %.1f fork_cpu_us min %.1f park_rx_us p50 %.1f max %.1f fork_preempted %llu "
            "resumed_us p50 %.1f max %.1f boosted %llu\n",
            (unsigned long long)ck.taken, (unsigned long long)ck.skipped, p50[0], max[0], p50[1], max[1],
            (unsigned long long)bytes, p50[2], max[2], p50[3], max[3], mappings, p99[0], min[3], p50[4], max[4],
            (unsigned long long)ck.fork_preempted, p50[5], max[5], (unsigned long long)ck.boosts);
}

/*
 * Condition variable waits. pthread_cond_wait returns holding its mutex again: that re-acquisition
 * is an acquisition of the mutex's object like any ftmb_pthread_mutex_lock, and is logged as one.
 *
 * Record: the real wait, then the acquisition's turn is recorded inside the mutex (as a lock).
 * Replay: the wait itself is not repeated (a signal that came in the record may come at another
 * moment, or never, in a replay): the thread lets go of the mutex and takes it again in its logged
 * turn, a spurious wake-up as far as POSIX is concerned. The program sees the same protected state
 * as in the record (every thread that held the mutex before that turn has done so), so its
 * predicate loop takes the same path: a wait that returned in the record returns in the same
 * order in replay. pthread_cond_signal/broadcast need no wrapper (they wake real waiters only).
 * A timed wait also logs its result (0 or ETIMEDOUT) in the waiting thread's stream; its deadline
 * is the program's, on the session's clock (virtual time for a thread that receives input), and is
 * waited for on the real clock at the same distance.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

static int already_held(volatile void *mutex)
{
    (void)mutex;
    return 0;
}

typedef int (*lock_fn)(volatile void *);

static int relock(volatile void *mutex) { return pthread_mutex_lock((pthread_mutex_t *)mutex); }

/* Replay: a spurious wake-up, the mutex taken again in the logged turn. */
static int replay_wake(volatile void *mutex, ftmb_obj_t obj, ftmb_site_t site)
{
    pthread_mutex_unlock((pthread_mutex_t *)mutex);
    return ftmb_pthread_mutex_lock(mutex, obj, site);
}

/*
 * Record, after the real wait returned holding the mutex: its turn on the mutex's object, recorded
 * inside the mutex. The wait itself is outside any runtime operation, so a checkpoint can capture a
 * thread that waits; a thread that a checkpoint captured in the wait runs on in the snapshot, in
 * replay, and takes the replay's way instead (it must not wait for its turn holding the mutex).
 */
static int woken(volatile void *mutex, ftmb_obj_t obj, ftmb_site_t site)
{
    struct _ftmb_thread *t = _ftmb_me();
    _ftmb_op_enter(t);
    int rc = _ftmb_mode_now == FTMB_MODE_REPLAY ? -1
                                                : _ftmb_locked_acquire(already_held, relock, mutex, obj, site, 0, 0);
    _ftmb_op_leave(t);
    return rc < 0 ? replay_wake(mutex, obj, site) : rc;
}

/* A deadline on the calling thread's session clock, moved to the real clock at the same distance. */
static struct timespec real_deadline(const struct timespec *abstime)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (!t->vtime_ns)
        return *abstime; /* a thread that received nothing reads the real clock (logged) */
    int64_t left = ((int64_t)abstime->tv_sec * 1000000000 + abstime->tv_nsec) - (int64_t)t->vtime_ns;
    int64_t at = (int64_t)_ftmb_now_ns(CLOCK_REALTIME) + (left > 0 ? left : 0);
    return (struct timespec){.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
}

/*
 * A timed wait's real wait, in slices of at most WAIT_SLICE_NS, until a wake-up (0), an error, the
 * deadline on CLOCK_REALTIME (ETIMEDOUT; none: no deadline), or -1: left behind (below). Between
 * slices the mutex is held again and the thread looks where it is: a checkpoint may have captured
 * it inside a slice, and in the snapshot nobody may signal it again (the signals it waits for may
 * have come while it was restored, or before the checkpoint's replay starts), so it leaves within
 * a slice: in replay it takes the replay's way, live (the snapshot handed over already) it returns
 * as from a spurious wake-up. A slice's end is not otherwise a wake-up the program sees.
 */
#define WAIT_SLICE_NS 10000000ll

/* A wait a checkpoint captured is over for the thread once it runs in the snapshot (another
 * process), whether that still replays or has handed over already: the wake-ups it waited for may
 * have come while it was being restored. It returns as from a spurious wake-up. */
static int left_behind(pid_t pid) { return _ftmb_mode_now != FTMB_MODE_RECORD || getpid() != pid; }

static int wait_slices(void *cond, volatile void *mutex, const struct timespec *deadline)
{
    pid_t pid = getpid();
    for (;;) {
        int64_t now = (int64_t)_ftmb_now_ns(CLOCK_REALTIME), until = now + WAIT_SLICE_NS;
        int64_t end = deadline ? (int64_t)deadline->tv_sec * 1000000000 + deadline->tv_nsec : INT64_MAX;
        if (end <= now)
            return ETIMEDOUT;
        if (end < until)
            until = end;
        struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        int rc = pthread_cond_clockwait(cond, (pthread_mutex_t *)mutex, CLOCK_REALTIME, &ts);
        if (rc != ETIMEDOUT)
            return rc;
        if (left_behind(pid))
            return -1;
    }
}

int ftmb_pthread_cond_wait(void *cond, volatile void *mutex, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return pthread_cond_wait(cond, (pthread_mutex_t *)mutex);
    if (_ftmb_mode_now == FTMB_MODE_REPLAY)
        return replay_wake(mutex, obj, site);
    /* One slice: its end is a spurious wake-up (recorded like any return), so the program re-checks
     * its predicate at least every WAIT_SLICE_NS. That also bounds a wake-up glibc loses when
     * waiters time out while others signal (glibc bug 25847, before 2.41), which the slices would
     * otherwise make likely. */
    int64_t until = (int64_t)_ftmb_now_ns(CLOCK_REALTIME) + WAIT_SLICE_NS;
    struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
    int rc = pthread_cond_clockwait(cond, (pthread_mutex_t *)mutex, CLOCK_REALTIME, &ts);
    if (rc == ETIMEDOUT)
        rc = 0;
    int lrc = woken(mutex, obj, site);
    return rc ? rc : lrc;
}

int ftmb_pthread_cond_timedwait(void *cond, volatile void *mutex, const struct timespec *abstime, ftmb_obj_t obj,
                                ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return pthread_cond_timedwait(cond, (pthread_mutex_t *)mutex, abstime);
    int rc = 0;
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
        replay_wake(mutex, obj, site);
    } else {
        struct timespec deadline = real_deadline(abstime);
        rc = wait_slices(cond, mutex, &deadline);
        if (rc < 0)
            rc = 0;
        woken(mutex, obj, site);
    }
    /* A real clock chose it: always logged (a loud record, placed among the thread's quiet
     * operations), and replay takes it from this thread's stream. */
    return (int)_ftmb_logged_value((uint64_t)(unsigned)rc);
}

/*
 * Semaphores: the order in which waits take tokens is recorded as acquisitions of the semaphore's
 * object (lock kind; one record per successful wait, a failed try or a timeout logged as a failed
 * try-lock with its error); sem_post is not logged. Record: the real wait, in slices outside any
 * runtime operation as above, then its turn. Replay: each wait, in its turn, takes a real token
 * (sem_wait): the posts it needs come from threads that replay freely up to them (a post follows
 * only the poster's own earlier logged operations, which the record ordered before this wait), and
 * tokens are alike, so which post a wait consumes does not matter; a logged failure fails again
 * without trying. A thread that a checkpoint captured inside a wait gives back a token it took in
 * the snapshot and takes the replay's way.
 */
static _Thread_local int sem_outcome;
static _Thread_local const struct timespec *sem_deadline;

static int sem_outcome_fn(volatile void *sem)
{
    (void)sem;
    return sem_outcome;
}

static int sem_take(volatile void *sem)
{
    while (sem_wait((sem_t *)sem) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

static int sem_try(volatile void *sem) { return sem_trywait((sem_t *)sem) == 0 ? 0 : errno; }

static int sem_take_by(volatile void *sem)
{
    while (sem_clockwait((sem_t *)sem, CLOCK_REALTIME, sem_deadline) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

/* Record: 0 (a token taken), ETIMEDOUT at the deadline (none: no deadline), another error, or -1
 * once the thread is no longer recording (a snapshot's; nothing taken). */
static int sem_wait_slices(sem_t *sem, const struct timespec *deadline)
{
    pid_t pid = getpid();
    for (;;) {
        int64_t now = (int64_t)_ftmb_now_ns(CLOCK_REALTIME), until = now + WAIT_SLICE_NS;
        int64_t end = deadline ? (int64_t)deadline->tv_sec * 1000000000 + deadline->tv_nsec : INT64_MAX;
        if (end < until)
            until = end;
        struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        if (sem_clockwait(sem, CLOCK_REALTIME, &ts) == 0)
            return 0;
        int e = errno;
        if (e == ETIMEDOUT && until == end)
            return ETIMEDOUT;
        if (e != ETIMEDOUT && e != EINTR)
            return e;
        if (left_behind(pid))
            return -1;
    }
}

/* After the real attempt (record) with `outcome`, or instead of it (-1, replay): the logged order.
 * kind: 0 sem_wait, 1 sem_timedwait, 2 sem_trywait. A success in the log takes a token in replay
 * whenever it comes (sem_take); past the handover the attempt is the call's own. */
static int sem_logged(sem_t *sem, int outcome, int kind, ftmb_obj_t obj, ftmb_site_t site)
{
    static const lock_fn attempt[3] = {sem_take, sem_take_by, sem_try};
    struct _ftmb_thread *t = _ftmb_me();
    int rc = -1;
    _ftmb_op_enter(t);
    if (outcome >= 0 && _ftmb_mode_now == FTMB_MODE_RECORD) {
        sem_outcome = outcome;
        rc = _ftmb_locked_acquire(sem_outcome_fn, sem_take, sem, obj, site, 1, 0);
    } else if (outcome == 0) {
        sem_post(sem); /* taken in a snapshot, which replays: the replay takes its own in turn */
    }
    _ftmb_op_leave(t);
    if (rc < 0)
        rc = _ftmb_locked_acquire(attempt[kind], sem_take, sem, obj, site, kind != 0, 0);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

int ftmb_sem_wait(void *sem, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return sem_wait(sem);
    int outcome = _ftmb_mode_now == FTMB_MODE_REPLAY ? -1 : sem_wait_slices(sem, NULL);
    return sem_logged(sem, outcome, 0, obj, site);
}

int ftmb_sem_timedwait(void *sem, const struct timespec *abstime, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return sem_timedwait(sem, abstime);
    struct timespec deadline = real_deadline(abstime);
    sem_deadline = &deadline;
    int outcome = _ftmb_mode_now == FTMB_MODE_REPLAY ? -1 : sem_wait_slices(sem, &deadline);
    return sem_logged(sem, outcome, 1, obj, site);
}

int ftmb_sem_trywait(void *sem, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return sem_trywait(sem);
    int outcome = _ftmb_mode_now == FTMB_MODE_REPLAY ? -1 : sem_try(sem);
    return sem_logged(sem, outcome, 2, obj, site);
}

int ftmb_sem_post(void *sem, ftmb_obj_t obj, ftmb_site_t site)
{
    (void)obj;
    (void)site;
    return sem_post(sem);
}

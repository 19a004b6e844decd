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
#include <stdint.h>
#include <time.h>

#include "rt.h"

static int already_held(volatile void *mutex)
{
    (void)mutex;
    return 0;
}

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

/*
 * The real wait, in slices of at most WAIT_SLICE_NS, until a wake-up (0), an error, or the
 * deadline on CLOCK_REALTIME (ETIMEDOUT; none: no deadline). Between slices the mutex is held
 * again and the thread looks at the mode: a checkpoint may have captured it inside a slice, and in
 * the snapshot, which replays, nobody may signal it again (the signals it waits for may all have
 * come before the checkpoint's replay starts), so it leaves within a slice and takes the replay's
 * way. A slice's end is not a wake-up the program sees.
 */
#define WAIT_SLICE_NS 10000000ll

static int wait_slices(void *cond, volatile void *mutex, const struct timespec *deadline)
{
    for (;;) {
        int64_t now = (int64_t)_ftmb_now_ns(CLOCK_REALTIME), until = now + WAIT_SLICE_NS;
        int64_t end = deadline ? (int64_t)deadline->tv_sec * 1000000000 + deadline->tv_nsec : INT64_MAX;
        if (end <= now)
            return ETIMEDOUT;
        if (end < until)
            until = end;
        struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        int rc = pthread_cond_clockwait(cond, (pthread_mutex_t *)mutex, CLOCK_REALTIME, &ts);
        if (rc != ETIMEDOUT || _ftmb_mode_now != FTMB_MODE_RECORD)
            return rc;
    }
}

int ftmb_pthread_cond_wait(void *cond, volatile void *mutex, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return pthread_cond_wait(cond, (pthread_mutex_t *)mutex);
    if (_ftmb_mode_now == FTMB_MODE_REPLAY)
        return replay_wake(mutex, obj, site);
    int rc = wait_slices(cond, mutex, NULL);
    if (rc == ETIMEDOUT) /* a slice's end in a snapshot: the replay's way follows */
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
        /* The deadline is on the thread's session clock; wait the same distance on the real one. */
        struct _ftmb_thread *t = _ftmb_me();
        struct timespec deadline = *abstime;
        if (t->vtime_ns) {
            int64_t left = ((int64_t)abstime->tv_sec * 1000000000 + abstime->tv_nsec) - (int64_t)t->vtime_ns;
            int64_t at = (int64_t)_ftmb_now_ns(CLOCK_REALTIME) + (left > 0 ? left : 0);
            deadline = (struct timespec){.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
        }
        rc = wait_slices(cond, mutex, &deadline);
        woken(mutex, obj, site);
    }
    /* Logged like a value only a signal handler writes: replay takes it from this thread's stream. */
    return *(const volatile int *)ftmb_external_read(&rc, sizeof rc);
}

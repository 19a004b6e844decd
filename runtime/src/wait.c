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
#include <time.h>

#include "rt.h"

static _Thread_local pthread_cond_t *wait_cond;
static _Thread_local const struct timespec *wait_deadline;
static _Thread_local int wait_rc;

static int cond_wait_real(volatile void *mutex)
{
    return pthread_cond_wait(wait_cond, (pthread_mutex_t *)mutex);
}

/* Always 0: the mutex is held again whatever the outcome; the outcome goes to wait_rc. */
static int cond_timedwait_real(volatile void *mutex)
{
    wait_rc = pthread_cond_clockwait(wait_cond, (pthread_mutex_t *)mutex, CLOCK_REALTIME, wait_deadline);
    return 0;
}

static int relock(volatile void *mutex) { return pthread_mutex_lock((pthread_mutex_t *)mutex); }

int ftmb_pthread_cond_wait(void *cond, volatile void *mutex, ftmb_obj_t obj, ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return pthread_cond_wait(cond, (pthread_mutex_t *)mutex);
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
        pthread_mutex_unlock((pthread_mutex_t *)mutex);
        return ftmb_pthread_mutex_lock(mutex, obj, site);
    }
    wait_cond = cond;
    return _ftmb_locked_acquire(cond_wait_real, relock, mutex, obj, site, 0, 0);
}

int ftmb_pthread_cond_timedwait(void *cond, volatile void *mutex, const struct timespec *abstime, ftmb_obj_t obj,
                                ftmb_site_t site)
{
    if (_ftmb_mode_now == FTMB_MODE_PASSTHROUGH)
        return pthread_cond_timedwait(cond, (pthread_mutex_t *)mutex, abstime);
    int rc = 0;
    if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
        pthread_mutex_unlock((pthread_mutex_t *)mutex);
        ftmb_pthread_mutex_lock(mutex, obj, site);
    } else {
        /* The deadline is on the thread's session clock; wait the same distance on the real one. */
        struct _ftmb_thread *t = _ftmb_me();
        struct timespec real_deadline = *abstime;
        if (t->vtime_ns) {
            int64_t left = ((int64_t)abstime->tv_sec * 1000000000 + abstime->tv_nsec) - (int64_t)t->vtime_ns;
            int64_t at = (int64_t)_ftmb_now_ns(CLOCK_REALTIME) + (left > 0 ? left : 0);
            real_deadline = (struct timespec){.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
        }
        wait_cond = cond;
        wait_deadline = &real_deadline;
        wait_rc = 0;
        _ftmb_locked_acquire(cond_timedwait_real, relock, mutex, obj, site, 0, 0);
        rc = wait_rc;
    }
    /* Logged like a value only a signal handler writes: replay takes it from this thread's stream. */
    return *(const volatile int *)ftmb_external_read(&rc, sizeof rc);
}

/*
 * The death watch (session.c, _ftmb_master_threads_dead): a forked "master" whose threads hold their
 * robust slots in a shared output region, a real SIGKILL, and the watcher's answer. The master is
 * never taken as dead while one of its registered threads lives, while a claimed slot is not yet
 * locked, once it marked itself done, or when the watch is not armed for it. A backup that took over
 * without a snapshot (standby, follower) is watched by the backup slots its threads hold.
 */
#include "check.h"

#include <linux/futex.h>
#include <sys/mman.h>

enum { LIVE_ONLY_MAIN, EXIT_ONE_THREAD, CLAIMED_UNLOCKED, DONE_THEN_EXIT, NO_COORD, BACKUP };

static struct _ftmb_out_region *region(void)
{
    struct _ftmb_out_region *r =
        mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    _ftmb_out_region_init(r, sizeof *r, 0, 0, 0);
    return r;
}

static struct _ftmb_out_region *R;
static int ready_fd;
static int backup; /* the master holds the backup slots (backup_live) */

static void *hold_and_sleep(void *arg)
{
    _ftmb_live_hold(R, (uint32_t)(uintptr_t)arg, backup);
    if ((uintptr_t)arg == 1) /* slot 1: ends normally, after telling the parent */
        return NULL;
    for (;;)
        pause();
}

/* The child: main holds slot 0 and arms the watch, then threads hold their slots. */
static void master(int how)
{
    backup = how == BACKUP;
    pthread_mutex_t *live = backup ? R->backup_live : R->live;
    pthread_mutex_lock(&live[0]);
    atomic_store(&R->live_backup, (uint32_t)backup);
    atomic_store(&R->hdr.master_pid, (int32_t)getpid());
    atomic_store(&R->hdr.master_state, _FTMB_MASTER_ATTACHED);
    atomic_store(&R->live_pid, (int32_t)getpid());
    atomic_store(&R->nthreads, how == CLAIMED_UNLOCKED ? 3u : 2u); /* slot 2: claimed, never locked */
    if (how != NO_COORD)
        atomic_store(&R->live_coord, 1u);
    pthread_t t;
    pthread_create(&t, NULL, hold_and_sleep, (void *)(uintptr_t)FTMB_MAX_THREADS);
    pthread_create(&t, NULL, hold_and_sleep, (void *)(uintptr_t)1);
    if (how == EXIT_ONE_THREAD || how == DONE_THEN_EXIT || how == BACKUP)
        pthread_join(t, NULL);
    while (!__atomic_load_n(&live[FTMB_MAX_THREADS].__data.__lock, __ATOMIC_ACQUIRE)) /* held */
        sched_yield();
    if (how == DONE_THEN_EXIT) {
        atomic_store(&R->hdr.master_state, _FTMB_MASTER_DONE);
        _exit(0);
    }
    char c = 1;
    if (write(ready_fd, &c, 1) != 1)
        _exit(2);
    for (;;)
        pause();
}

static pid_t start(int how)
{
    int p[2];
    if (!(R = region()) || pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        ready_fd = p[1];
        master(how);
    }
    close(p[1]);
    char c;
    if (how != DONE_THEN_EXIT && read(p[0], &c, 1) != 1)
        return -1;
    close(p[0]);
    return pid;
}

/* Polls the watch until it answers or the child is reaped; returns the answer. */
static int dead_before_reaped(pid_t pid, int *reaped)
{
    *reaped = 0;
    for (;;) {
        if (_ftmb_master_threads_dead(R, pid))
            return 1;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            *reaped = 1;
            return _ftmb_master_threads_dead(R, pid);
        }
        sched_yield();
    }
}

static int killed_master_is_dead(void)
{
    pid_t pid = start(EXIT_ONE_THREAD);
    CHECK(pid > 0);
    /* Slot 1's thread ended: the kernel marked it, but main and the coordinator live. */
    CHECK(__atomic_load_n(&R->live[1].__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED);
    CHECK(!_ftmb_master_threads_dead(R, pid));
    CHECK(!_ftmb_master_threads_dead(R, pid + 1)); /* not the armed master */
    CHECK(kill(pid, SIGKILL) == 0);
    int reaped;
    CHECK(dead_before_reaped(pid, &reaped) == 1);
    if (!reaped)
        CHECK(waitpid(pid, NULL, 0) == pid);
    return 0;
}

static int claimed_unlocked_slot_keeps_it_alive(void)
{
    pid_t pid = start(CLAIMED_UNLOCKED);
    CHECK(pid > 0);
    CHECK(kill(pid, SIGKILL) == 0);
    int reaped;
    CHECK(dead_before_reaped(pid, &reaped) == 0 && reaped);
    CHECK(__atomic_load_n(&R->live[0].__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED);
    return 0;
}

static int done_master_did_not_die(void)
{
    pid_t pid = start(DONE_THEN_EXIT);
    CHECK(pid > 0);
    int reaped;
    CHECK(dead_before_reaped(pid, &reaped) == 0 && reaped);
    return 0;
}

static int no_coordinator_no_answer(void)
{
    pid_t pid = start(NO_COORD);
    CHECK(pid > 0);
    CHECK(kill(pid, SIGKILL) == 0);
    int reaped;
    CHECK(dead_before_reaped(pid, &reaped) == 0 && reaped);
    return 0;
}

/* The backup's threads hold backup_live[] (the dead master's live[] slots read 0 here: alive, so a
 * watch that looked at live[] would never answer). */
static int backup_is_watched_by_its_own_slots(void)
{
    pid_t pid = start(BACKUP);
    CHECK(pid > 0);
    CHECK(__atomic_load_n(&R->backup_live[1].__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED);
    CHECK(!_ftmb_master_threads_dead(R, pid));
    CHECK(kill(pid, SIGKILL) == 0);
    int reaped;
    CHECK(dead_before_reaped(pid, &reaped) == 1);
    if (!reaped)
        CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK(__atomic_load_n(&R->live[0].__data.__lock, __ATOMIC_ACQUIRE) == 0);
    return 0;
}

int main(void)
{
    run_case("killed_master_is_dead", killed_master_is_dead);
    run_case("claimed_unlocked_slot_keeps_it_alive", claimed_unlocked_slot_keeps_it_alive);
    run_case("done_master_did_not_die", done_master_did_not_die);
    run_case("no_coordinator_no_answer", no_coordinator_no_answer);
    run_case("backup_is_watched_by_its_own_slots", backup_is_watched_by_its_own_slots);
    return finish();
}

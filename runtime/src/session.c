/* Session regions: creation by the loggers, attachment by the master, liveness of their owners. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"

#define _FTMB_CAT2(a, b) a##b
#define _FTMB_CAT(a, b) _FTMB_CAT2(a, b)
/* The version symbol every object including ftmb.h references; defined here because every
 * runtime library (libftmb, libftmb_ol) contains this file. */
const int _FTMB_CAT(ftmb_abi_version_, FTMB_ABI_VERSION) = FTMB_ABI_VERSION;

uint64_t _ftmb_now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int _ftmb_valid_session_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static void shm_name(char *buf, size_t n, const char *session, const char *suffix)
{
    snprintf(buf, n, "/ftmb-%s.%s", session, suffix);
}

void *_ftmb_region_create(const char *session, const char *suffix, size_t size)
{
    char name[128];
    shm_name(name, sizeof name, session, suffix);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* A region left by a dead owner is reused; one whose owner still runs is not. */
        size_t old_size;
        void *old = _ftmb_region_attach(session, suffix, 0, 0, &old_size);
        if (old) {
            const struct _ftmb_region_hdr *h = old;
            /* Relaxed: a pid written once at creation, read only to ask the kernel about it. */
            int32_t pid = atomic_load_explicit(&h->owner_pid, memory_order_relaxed);
            int alive = pid > 0 && pid != getpid() && kill(pid, 0) == 0;
            munmap(old, old_size);
            if (alive) {
                fprintf(stderr, "ftmb: /dev/shm%s is in use by pid %d; pick another session name\n", name,
                        (int)pid);
                return NULL;
            }
        }
        shm_unlink(name);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    }
    if (fd < 0) {
        fprintf(stderr, "ftmb: cannot create /dev/shm%s: %s\n", name, strerror(errno));
        return NULL;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        fprintf(stderr, "ftmb: cannot size /dev/shm%s to %zu bytes: %s\n", name, size, strerror(errno));
        close(fd);
        shm_unlink(name);
        return NULL;
    }
    /* Not MAP_POPULATE: the output region has rings for FTMB_MAX_THREADS, and only the rings of
     * threads that exist should take memory (the owner populates those: _ftmb_region_populate). */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "ftmb: cannot map /dev/shm%s: %s\n", name, strerror(errno));
        shm_unlink(name);
        return NULL;
    }
    return p;
}

/* Fault in [off, off + len) of a region now, so the per-packet path does not take the page faults
 * (best effort: a kernel without MADV_POPULATE_WRITE faults them on first use instead). */
void _ftmb_region_populate(void *region, uint64_t off, uint64_t len)
{
    uint64_t page = 4096, start = off & ~(page - 1), end = (off + len + page - 1) & ~(page - 1);
    (void)madvise((uint8_t *)region + start, end - start, MADV_POPULATE_WRITE);
}

/* Map an existing region; magic != 0 also waits (up to timeout_ms) until its owner marked it ready. */
void *_ftmb_region_attach(const char *session, const char *suffix, uint64_t magic, int timeout_ms,
                          size_t *size_out)
{
    char name[128];
    shm_name(name, sizeof name, session, suffix);
    uint64_t deadline = _ftmb_now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int fd = shm_open(name, O_RDWR, 0);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(struct _ftmb_region_hdr)) {
            void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            if (p == MAP_FAILED)
                return NULL;
            struct _ftmb_region_hdr *h = p;
            /* Acquire pairs with the owner's release store of ready: the layout is complete. */
            if (magic == 0 || (atomic_load_explicit(&h->ready, memory_order_acquire) && h->magic == magic)) {
                if (magic && (h->abi_version != FTMB_ABI_VERSION || h->layout_version != _ftmb_layout_version(magic))) {
                    fprintf(stderr, "ftmb: /dev/shm%s was made by a logger of ABI %u layout %u, this runtime is "
                                    "ABI %u layout %u\n",
                            name, h->abi_version, h->layout_version, FTMB_ABI_VERSION, _ftmb_layout_version(magic));
                    munmap(p, (size_t)st.st_size);
                    return NULL;
                }
                *size_out = (size_t)st.st_size;
                return p;
            }
            munmap(p, (size_t)st.st_size);
        } else if (fd >= 0) {
            close(fd);
        }
        if (_ftmb_now_ns(CLOCK_MONOTONIC) >= deadline)
            return NULL;
        usleep(1000);
    }
}

void _ftmb_region_unlink(const char *session, const char *suffix)
{
    char name[128];
    shm_name(name, sizeof name, session, suffix);
    shm_unlink(name);
}

/* A process that exists and is not a zombie (a killed child its parent has not reaped yet). */
/* A process is gone once it does not exist or is a zombie with no thread left: when it is killed,
 * its leader can turn zombie while other threads still run for a moment (and may still publish). */
int _ftmb_pid_alive(int32_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno != ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    const char *state = strstr(buf, "\nState:\t"), *threads = strstr(buf, "\nThreads:\t");
    int zombie = state && (state[8] == 'Z' || state[8] == 'X');
    return !zombie || (threads && atoi(threads + 10) > 1);
}

/* The master `pid` died without ftmb_exit: it is gone and, read after that, the session still names it
 * attached. Reading the state again after the liveness check closes the race with a master that
 * marks itself done (release, in ftmb_exit) and exits between a caller's first read and the check. */
int _ftmb_master_died(const struct _ftmb_region_hdr *hdr, int32_t pid)
{
    if (pid <= 0 || _ftmb_pid_alive(pid))
        return 0;
    /* Acquire pairs with the master's release store of master_state in ftmb_exit. */
    uint32_t state = atomic_load_explicit(&hdr->master_state, memory_order_acquire);
    /* Relaxed: master_pid is published with master_state, which we acquired above. */
    return state == _FTMB_MASTER_ATTACHED && atomic_load_explicit(&hdr->master_pid, memory_order_relaxed) == pid;
}

/* The session is gone when neither logger's process exists any more: its run ended, or was killed
 * (the loggers die with it, runtime/README.md). A master or backup then has no input and nowhere to
 * release to, and nobody will stop it. Syscalls only (a caller may be a snapshot whose parked
 * threads hold libc locks). */
int _ftmb_session_gone(const struct _ftmb_region_hdr *in, const struct _ftmb_region_hdr *out)
{
    /* Relaxed: each owner pid is written once, before its region was marked ready. */
    return !_ftmb_pid_alive(atomic_load_explicit(&in->owner_pid, memory_order_relaxed)) &&
           !_ftmb_pid_alive(atomic_load_explicit(&out->owner_pid, memory_order_relaxed));
}

/* A peer is alive while its process exists and its heartbeat is younger than timeout_ns. */
int _ftmb_peer_alive(const struct _ftmb_region_hdr *hdr, uint64_t timeout_ns)
{
    /* Relaxed: the owner's pid is written once, before ready (which the caller acquired). */
    if (!_ftmb_pid_alive(atomic_load_explicit(&hdr->owner_pid, memory_order_relaxed)))
        return 0;
    /* Relaxed: the heartbeat is a clock value, not a guard for other data. */
    uint64_t beat = atomic_load_explicit(&hdr->heartbeat_ns, memory_order_relaxed);
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    return now < beat || now - beat < timeout_ns;
}

/* Alive while the owner's process exists and its heartbeat moved within timeout_ns of the
 * watcher's looking. A gap between two looks counts up to timeout_ns / 4 (the watchers look every
 * 10 ms or so while they run): a longer one is time the watcher itself was not running (a loaded
 * or paused machine), which must not be blamed on an owner that was likely paused with it and has
 * not had its turn yet. A hung owner is still declared gone after timeout_ns of watching. */
int _ftmb_peer_watch_alive(struct _ftmb_peer_watch *w, const struct _ftmb_region_hdr *hdr, uint64_t timeout_ns)
{
    /* Relaxed: the owner's pid is written once, before ready (which the caller acquired). */
    if (!_ftmb_pid_alive(atomic_load_explicit(&hdr->owner_pid, memory_order_relaxed)))
        return 0;
    if (timeout_ns == UINT64_MAX)
        return 1;
    /* Relaxed (all): clock values guarding no other data; two watchers at once only miscount a gap. */
    uint64_t beat = atomic_load_explicit(&hdr->heartbeat_ns, memory_order_relaxed);
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    uint64_t last = atomic_exchange_explicit(&w->look_ns, now, memory_order_relaxed);
    if (beat != atomic_load_explicit(&w->beat, memory_order_relaxed) || !last || now < last) {
        atomic_store_explicit(&w->beat, beat, memory_order_relaxed);
        atomic_store_explicit(&w->silent_ns, 0, memory_order_relaxed);
        return 1;
    }
    uint64_t gap = now - last, credit = timeout_ns / 4;
    uint64_t silent = atomic_load_explicit(&w->silent_ns, memory_order_relaxed) + (gap < credit ? gap : credit);
    atomic_store_explicit(&w->silent_ns, silent, memory_order_relaxed);
    return silent < timeout_ns;
}

void _ftmb_region_hdr_init(struct _ftmb_region_hdr *h, uint64_t magic, size_t size)
{
    h->magic = magic;
    h->abi_version = FTMB_ABI_VERSION;
    h->layout_version = _ftmb_layout_version(magic);
    h->size = size;
    atomic_init(&h->owner_pid, (int32_t)getpid());
    atomic_init(&h->heartbeat_ns, _ftmb_now_ns(CLOCK_MONOTONIC));
    atomic_init(&h->master_pid, 0);
    atomic_init(&h->master_state, _FTMB_MASTER_NONE);
    atomic_init(&h->master_mode, 0);
    atomic_init(&h->ready, 0);
}

size_t _ftmb_in_region_size(uint32_t nqueues, uint32_t capacity)
{
    return sizeof(struct _ftmb_in_region) + (size_t)nqueues * capacity * _FTMB_IN_SLOT_SIZE;
}

void _ftmb_in_region_init(struct _ftmb_in_region *r, size_t size, uint32_t nqueues, uint32_t capacity,
                          uint64_t tsc_hz, uint64_t tick_ns)
{
    _ftmb_region_hdr_init(&r->hdr, _FTMB_IN_MAGIC, size);
    r->nqueues = nqueues;
    r->capacity = capacity;
    r->tsc_hz = tsc_hz;
    r->tick_ns = tick_ns;
    uint64_t off = sizeof *r;
    for (uint32_t q = 0; q < nqueues; q++) {
        struct _ftmb_in_queue *iq = &r->queue[q];
        _ftmb_ring_ctl_init(&iq->ring, off, capacity, (uint32_t)_FTMB_IN_SLOT_SIZE);
        off += (uint64_t)capacity * _FTMB_IN_SLOT_SIZE;
        atomic_init(&iq->rewind_req, 0);
        atomic_init(&iq->rewind_pos, 0);
        atomic_init(&iq->rewind_ack, 0);
        atomic_init(&iq->retain_from, 0);
    }
}

size_t _ftmb_out_region_size(uint32_t max_threads, uint32_t rec_capacity, uint32_t out_capacity)
{
    return sizeof(struct _ftmb_out_region) +
           (size_t)max_threads * ((size_t)rec_capacity * sizeof(struct _ftmb_record) +
                                  (size_t)out_capacity * _FTMB_OUT_SLOT_SIZE);
}

void _ftmb_out_region_init(struct _ftmb_out_region *r, size_t size, uint32_t max_threads,
                           uint32_t rec_capacity, uint32_t out_capacity)
{
    _ftmb_region_hdr_init(&r->hdr, _FTMB_OUT_MAGIC, size);
    r->max_threads = max_threads;
    r->rec_capacity = rec_capacity;
    r->out_capacity = out_capacity;
    r->every_ordered = 0;
    r->tsc_hz = 0;
    atomic_init(&r->nthreads, 0);
    uint64_t off = sizeof *r;
    for (uint32_t t = 0; t < max_threads; t++) {
        _ftmb_ring_ctl_init(&r->thread[t].rec, off, rec_capacity, sizeof(struct _ftmb_record));
        off += (uint64_t)rec_capacity * sizeof(struct _ftmb_record);
        _ftmb_ring_ctl_init(&r->thread[t].out, off, out_capacity, (uint32_t)_FTMB_OUT_SLOT_SIZE);
        atomic_init(&r->thread[t].retain_from, 0);
        off += (uint64_t)out_capacity * _FTMB_OUT_SLOT_SIZE;
    }
    atomic_init(&r->live_pid, 0);
    atomic_init(&r->live_coord, 0);
    atomic_init(&r->live_backup, 0);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    for (uint32_t t = 0; t <= FTMB_MAX_THREADS; t++) {
        pthread_mutex_init(&r->live[t], &a);
        pthread_mutex_init(&r->backup_live[t], &a);
    }
    pthread_mutexattr_destroy(&a);
}

/* The calling thread holds death-watch slot `slot` until it exits (never unlocked: a thread that
 * ends, any way, is marked dead by the kernel). Called before the thread's first store to the
 * session's regions; by the master that armed the watch (live_pid), or by a backup that attached
 * without a snapshot (`backup`: the standby, a follower), which holds backup_live[] from its
 * threads' start, while the master still runs, and arms the watch on them when it takes over. */
void _ftmb_live_hold(struct _ftmb_out_region *out, uint32_t slot, int backup)
{
    if (!out || slot > FTMB_MAX_THREADS)
        return;
    if (backup) {
        pthread_mutex_trylock(&out->backup_live[slot]); /* EBUSY: this thread holds it already */
        return;
    }
    /* Relaxed: live_pid is this process's own store (or another master's, which it never matches). */
    if (atomic_load_explicit(&out->live_pid, memory_order_relaxed) != getpid())
        return;
    pthread_mutex_trylock(&out->live[slot]); /* EBUSY: this thread holds it already */
}

/* The calling thread of a master that took over from a snapshot takes death-watch slot `slot` afresh.
 * Its glibc list of held robust mutexes (at `robust_head`, the same memory as in the dead master) still
 * names the slot the dead master's thread held, and a thread clone()d by the snapshot has no list
 * registered with the kernel: empty the list and register it (as glibc's fork does in its child),
 * then lock the slot, whose owner died (EOWNERDEAD: it is ours, never made consistent, never
 * unlocked). The caller arms the watch once every thread holds its slot. Syscalls and the slot only: a
 * parked thread of the snapshot may hold a libc lock. */
void _ftmb_live_rehold(struct _ftmb_out_region *out, uint32_t slot, void *robust_head)
{
    if (!out || slot > FTMB_MAX_THREADS)
        return;
    struct robust_list_head *h = robust_head;
    if (h) {
        h->list.next = &h->list;
        h->list_op_pending = NULL;
        syscall(SYS_set_robust_list, h, sizeof *h);
    }
    pthread_mutex_trylock(&out->live[slot]);
}

/* Every thread of master `pid` that may store to the session's regions has entered do_exit: each
 * registered thread's slot is FUTEX_OWNER_DIED (the kernel's robust list processing, before mmput,
 * so well before the pid is gone). A slot claimed but not yet locked reads 0 and counts as alive, so
 * does one of a thread that existed before the watch was armed: the answer is then "not known" and
 * the caller relies on the pid (_ftmb_master_died). Syscall-free: a snapshot may call it. */
int _ftmb_master_threads_dead(struct _ftmb_out_region *out, int32_t pid)
{
    /* Acquire pairs with the release store of live_pid after the arming thread's lock. */
    if (pid <= 0 || atomic_load_explicit(&out->live_pid, memory_order_acquire) != pid ||
        !atomic_load_explicit(&out->live_coord, memory_order_acquire))
        return 0;
    /* Acquire pairs with publish_nthreads: an index is counted before its thread runs. */
    uint32_t n = atomic_load_explicit(&out->nthreads, memory_order_acquire);
    if (n > FTMB_MAX_THREADS)
        return 0;
    /* Relaxed: written before live_pid, which we acquired. */
    pthread_mutex_t *live = out->live;
    if (atomic_load_explicit(&out->live_backup, memory_order_relaxed))
        live = out->backup_live;
    for (uint32_t t = 0; t < n; t++)
        if (!(__atomic_load_n(&live[t].__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED))
            return 0;
    if (!(__atomic_load_n(&live[FTMB_MAX_THREADS].__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED))
        return 0;
    /* Acquire pairs with ftmb_exit's release: a master that marked itself done did not die. */
    uint32_t state = atomic_load_explicit(&out->hdr.master_state, memory_order_acquire);
    return state == _FTMB_MASTER_ATTACHED && atomic_load_explicit(&out->hdr.master_pid, memory_order_relaxed) == pid;
}

/* Cycles per second of the TSC, measured against CLOCK_MONOTONIC over 20 ms. */
uint64_t _ftmb_calibrate_tsc_hz(void)
{
#if defined(__x86_64__) || defined(__i386__)
    uint64_t t0 = _ftmb_now_ns(CLOCK_MONOTONIC), c0 = __builtin_ia32_rdtsc();
    struct timespec d = {0, 20000000};
    nanosleep(&d, NULL);
    uint64_t t1 = _ftmb_now_ns(CLOCK_MONOTONIC), c1 = __builtin_ia32_rdtsc();
    return (uint64_t)((double)(c1 - c0) * 1e9 / (double)(t1 - t0));
#else
    return 1000000000ull; /* no TSC: virtual cycles are nanoseconds */
#endif
}

/* The owner's last step of creation: the layout is complete. */
void _ftmb_region_set_ready(void *region)
{
    struct _ftmb_region_hdr *h = region;
    /* Release: pairs with the attacher's acquire load of ready in _ftmb_region_attach. */
    atomic_store_explicit(&h->ready, 1, memory_order_release);
}

/* The owner's sign of life, once per loop. */
void _ftmb_region_heartbeat(void *region)
{
    struct _ftmb_region_hdr *h = region;
    /* Relaxed: a clock value, read by _ftmb_peer_alive, guarding nothing else. */
    atomic_store_explicit(&h->heartbeat_ns, _ftmb_now_ns(CLOCK_MONOTONIC), memory_order_relaxed);
}

/*
 * The follower's two streams (see runtime/README.md, "Follower"): the output logger republishes
 * every record it stores (region S.fol), the input logger every entry it serves (region S.infol),
 * each on SPSC rings of the same kind as the session's, consumed by a follower: a process of the
 * same binary that replays them as they come (FTMB_MODE=follow, src/follow.c). Each logger creates
 * its own region with --follow; the follower attaches to both.
 */
#ifndef FTMB_FOLLOW_H
#define FTMB_FOLLOW_H

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ftmb_internal.h"

#define _FTMB_FOL_MAGIC 0x4c4f462d424d5446ull   /* "FTMB-FOL" */
#define _FTMB_INFOL_MAGIC 0x4c464e492d424d46ull /* "FM-INFL" */

enum _ftmb_fol_final {
    _FTMB_FOL_FOLLOWING = 0, /* the master runs: more records may come */
    _FTMB_FOL_DIED = 1,      /* the master died: every thread's final_count is set; the logger
                              * publishes records up to it (published with release) */
    _FTMB_FOL_FINISHED = 2,  /* the master finished (ftmb_exit or a stop signal): nothing to take over */
};

struct _ftmb_fol_thread {
    struct _ftmb_ring_ctl rec;            /* the output logger produces, the follower consumes */
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t applied; /* follower: records replayed; the output
                                           * logger may forget the records before it */
    _Atomic uint64_t final_count;         /* output logger: the thread's stream length at the death */
    _Atomic uint32_t waiting;             /* follower: the thread sleeps on rec.head's low half */
};

struct _ftmb_fol_region {
    struct _ftmb_region_hdr hdr;
    uint32_t max_threads;
    uint32_t capacity;                    /* records per thread ring */
    _Atomic uint32_t final;               /* enum _ftmb_fol_final */
    _Atomic int32_t follower_pid;         /* the attached follower, 0 before one attaches */
    _Atomic uint64_t follower_heartbeat_ns; /* its CLOCK_MONOTONIC while it follows (relaxed) */
    alignas(_FTMB_CACHE_LINE) struct _ftmb_fol_thread thread[FTMB_MAX_THREADS];
};

/* After records are published on thread t's follow ring (the output logger, or the import on the
 * follower's host): wake the follower's thread if it sleeps for them (follow.c, follow_sleep). The
 * fence pairs with the follower's between its store of `waiting` and its look at the head. */
static inline void _ftmb_fol_wake(struct _ftmb_fol_region *f, uint32_t t)
{
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: ordered by the fences on both sides. */
    if (atomic_load_explicit(&f->thread[t].waiting, memory_order_relaxed))
        syscall(SYS_futex, (uint32_t *)&f->thread[t].rec.head, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

struct _ftmb_infol_region {
    struct _ftmb_region_hdr hdr;
    uint32_t nqueues;
    uint32_t capacity; /* entries per queue ring */
    alignas(_FTMB_CACHE_LINE) struct _ftmb_ring_ctl queue[FTMB_MAX_QUEUES]; /* tail: the follower's
                        * position in the queue's entries (sequence numbers, from 0) */
};

static inline size_t _ftmb_fol_region_size(uint32_t max_threads, uint32_t capacity)
{
    return sizeof(struct _ftmb_fol_region) + (size_t)max_threads * capacity * sizeof(struct _ftmb_record);
}

static inline void _ftmb_fol_region_init(struct _ftmb_fol_region *r, size_t size, uint32_t max_threads,
                                         uint32_t capacity)
{
    _ftmb_region_hdr_init(&r->hdr, _FTMB_FOL_MAGIC, size);
    r->max_threads = max_threads;
    r->capacity = capacity;
    atomic_init(&r->final, _FTMB_FOL_FOLLOWING);
    atomic_init(&r->follower_pid, 0);
    atomic_init(&r->follower_heartbeat_ns, 0);
    uint64_t off = sizeof *r;
    for (uint32_t t = 0; t < max_threads; t++) {
        _ftmb_ring_ctl_init(&r->thread[t].rec, off, capacity, sizeof(struct _ftmb_record));
        atomic_init(&r->thread[t].applied, 0);
        atomic_init(&r->thread[t].final_count, 0);
        off += (uint64_t)capacity * sizeof(struct _ftmb_record);
    }
}

static inline size_t _ftmb_infol_region_size(uint32_t nqueues, uint32_t capacity)
{
    return sizeof(struct _ftmb_infol_region) + (size_t)nqueues * capacity * _FTMB_IN_SLOT_SIZE;
}

static inline void _ftmb_infol_region_init(struct _ftmb_infol_region *r, size_t size, uint32_t nqueues,
                                           uint32_t capacity)
{
    _ftmb_region_hdr_init(&r->hdr, _FTMB_INFOL_MAGIC, size);
    r->nqueues = nqueues;
    r->capacity = capacity;
    uint64_t off = sizeof *r;
    for (uint32_t q = 0; q < nqueues; q++) {
        _ftmb_ring_ctl_init(&r->queue[q], off, capacity, (uint32_t)_FTMB_IN_SLOT_SIZE);
        off += (uint64_t)capacity * _FTMB_IN_SLOT_SIZE;
    }
}

#endif /* FTMB_FOLLOW_H */

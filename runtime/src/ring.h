/*
 * The runtime's single-producer single-consumer ring, shared between two processes (or threads).
 *
 * Layout: the control block (_ftmb_ring_ctl) lives in shared memory with the producer index and
 * the consumer index on separate cache lines and the read-only geometry on a third; the slot
 * buffer is separate (ck_ring style) and located by an offset from the region base, because each
 * process maps the region at its own address. Each process keeps a private handle (_ftmb_ring)
 * with its own copy of the index it owns and a cached copy of the other side's index, so the
 * fast path touches the shared line of the other side only when the cached value says "full" or
 * "empty".
 *
 * Indices are free-running uint64_t counters: slot i lives at (i & mask), capacity is a power of
 * two, head - tail is the number of slots in use, and 2^64 slots never wrap in practice.
 *
 * Memory ordering (pairs named as in DPDK's rte_ring_c11_pvt.h):
 *   P1 (producer: release store of head) pairs with C1 (consumer: acquire load of head): the
 *      consumer reads a slot only after the producer's writes to it are visible.
 *   C2 (consumer: release store of tail) pairs with P0 (producer: acquire load of tail): the
 *      producer overwrites a slot only after the consumer has finished reading it.
 */
#ifndef FTMB_RING_H
#define FTMB_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define _FTMB_CACHE_LINE 64

struct _ftmb_ring_ctl {
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t head; /* written by the producer only */
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t tail; /* written by the consumer only */
    alignas(_FTMB_CACHE_LINE) uint64_t buf_offset;   /* from the region base; fixed at creation */
    uint32_t capacity;                               /* slots, a power of two */
    uint32_t slot_size;                              /* bytes, a multiple of 16 */
};
_Static_assert(offsetof(struct _ftmb_ring_ctl, head) == 0, "head on the first line");
_Static_assert(offsetof(struct _ftmb_ring_ctl, tail) == _FTMB_CACHE_LINE, "tail on its own line");
_Static_assert(offsetof(struct _ftmb_ring_ctl, buf_offset) == 2 * _FTMB_CACHE_LINE, "geometry apart");
_Static_assert(sizeof(struct _ftmb_ring_ctl) == 3 * _FTMB_CACHE_LINE, "three lines");

/* A process's private view of one ring, as producer or as consumer. */
struct _ftmb_ring {
    struct _ftmb_ring_ctl *ctl;
    uint8_t *buf;
    uint64_t mask;
    uint32_t slot_size;
    uint64_t local; /* producer: the next head to publish; consumer: the next tail to publish */
    uint64_t cache; /* producer: last tail seen; consumer: last head seen */
};

static inline void _ftmb_ring_ctl_init(struct _ftmb_ring_ctl *ctl, uint64_t buf_offset,
                                       uint32_t capacity, uint32_t slot_size)
{
    atomic_init(&ctl->head, 0);
    atomic_init(&ctl->tail, 0);
    ctl->buf_offset = buf_offset;
    ctl->capacity = capacity;
    ctl->slot_size = slot_size;
}

static inline void _ftmb_ring_attach(struct _ftmb_ring *r, void *region_base,
                                     struct _ftmb_ring_ctl *ctl, int as_producer)
{
    r->ctl = ctl;
    r->buf = (uint8_t *)region_base + ctl->buf_offset;
    r->mask = (uint64_t)ctl->capacity - 1;
    r->slot_size = ctl->slot_size;
    /* Relaxed: attaching happens before either side runs (published by the region's ready flag). */
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    r->local = as_producer ? head : tail;
    r->cache = as_producer ? tail : head;
}

static inline void *_ftmb_ring_slot(const struct _ftmb_ring *r, uint64_t index)
{
    return r->buf + (index & r->mask) * r->slot_size;
}

/* Producer: the slot to fill next, or NULL when the ring is full. */
static inline void *_ftmb_ring_reserve(struct _ftmb_ring *r)
{
    if (__builtin_expect(r->local - r->cache > r->mask, 0)) {
        r->cache = atomic_load_explicit(&r->ctl->tail, memory_order_acquire); /* P0, pairs with C2 */
        if (r->local - r->cache > r->mask)
            return NULL;
    }
    return _ftmb_ring_slot(r, r->local);
}

/* Producer: publish the n slots reserved and filled since the last publish. */
static inline void _ftmb_ring_publish(struct _ftmb_ring *r, uint64_t n)
{
    r->local += n;
    atomic_store_explicit(&r->ctl->head, r->local, memory_order_release); /* P1, pairs with C1 */
}

/* Consumer: how many slots are ready (refreshes the cached head only when it says none). */
static inline uint64_t _ftmb_ring_ready(struct _ftmb_ring *r)
{
    if (r->cache == r->local)
        r->cache = atomic_load_explicit(&r->ctl->head, memory_order_acquire); /* C1, pairs with P1 */
    return r->cache - r->local;
}

/* Consumer: how many slots are ready, always reading the producer's head. */
static inline uint64_t _ftmb_ring_refresh(struct _ftmb_ring *r)
{
    r->cache = atomic_load_explicit(&r->ctl->head, memory_order_acquire); /* C1, pairs with P1 */
    return r->cache - r->local;
}

/* Consumer: the i-th ready slot (i < _ftmb_ring_ready()). */
static inline void *_ftmb_ring_peek(const struct _ftmb_ring *r, uint64_t i)
{
    return _ftmb_ring_slot(r, r->local + i);
}

/* Consumer: hand n read slots back to the producer. */
static inline void _ftmb_ring_consume(struct _ftmb_ring *r, uint64_t n)
{
    r->local += n;
    atomic_store_explicit(&r->ctl->tail, r->local, memory_order_release); /* C2, pairs with P0 */
}

#endif /* FTMB_RING_H */

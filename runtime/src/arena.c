/*
 * The state arena: one private anonymous mapping at a fixed address (FTMB_ARENA_ADDR, default
 * 0x6f0000000000; FTMB_ARENA_SIZE bytes reserved, default 16 GiB, committed on touch), so that a
 * fork copy-on-write snapshot captures it and a backup can map it back at the same address.
 *
 *   [ runtime part: the object sequence table, FTMB_MAX_OBJECTS lines ]
 *   [ thread 0's heap ][ thread 1's heap ] ... [ thread FTMB_MAX_THREADS-1's heap ]
 *
 * Each thread allocates from its own heap (bump pointer plus per-size-class free lists), so the
 * addresses a thread gets depend only on its own sequence of calls, which replay reproduces;
 * there is no lock. A block freed by another thread joins the freeing thread's lists. Blocks above
 * the largest class are whole pages, kept on a first-fit list when freed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "rt.h"

#define ARENA_DEFAULT_ADDR 0x6f0000000000ull
#define ARENA_DEFAULT_SIZE (16ull << 30)
#define NCLASSES 17                    /* 16 B .. 1 MiB */
#define LARGE_CLASS NCLASSES
#define HDR 16                         /* block header; keeps 16-byte alignment */
#define RUNTIME_PART ((uint64_t)FTMB_MAX_OBJECTS * _FTMB_CACHE_LINE)

struct block_hdr {
    uint32_t cls;
    uint32_t owner;
    uint64_t size; /* usable bytes */
};
_Static_assert(sizeof(struct block_hdr) == HDR, "block header size");

struct free_block {
    struct free_block *next;
};

struct heap {
    alignas(_FTMB_CACHE_LINE) uint8_t *bump, *end;
    struct free_block *free[NCLASSES];
    struct free_block *large; /* freed large blocks, first fit */
};

static uint8_t *arena_base;
static uint64_t arena_size;
static struct heap heaps[FTMB_MAX_THREADS];
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static int arena_status;

static void arena_map(void)
{
    const char *a = getenv("FTMB_ARENA_ADDR"), *s = getenv("FTMB_ARENA_SIZE");
    char *end = NULL;
    uint64_t addr = a && *a ? strtoull(a, &end, 0) : ARENA_DEFAULT_ADDR;
    if (a && *a && (*end || addr % 4096)) {
        fprintf(stderr, "ftmb: FTMB_ARENA_ADDR=%s: expected a page-aligned address such as 0x6f0000000000\n", a);
        arena_status = -1;
        return;
    }
    uint64_t size = s && *s ? strtoull(s, &end, 0) : ARENA_DEFAULT_SIZE;
    uint64_t min = RUNTIME_PART + FTMB_MAX_THREADS * (1ull << 22);
    if (s && *s && (*end || size < min)) {
        fprintf(stderr, "ftmb: FTMB_ARENA_SIZE=%s: expected a byte count of at least %llu\n", s,
                (unsigned long long)min);
        arena_status = -1;
        return;
    }
    void *p = mmap((void *)addr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED || p != (void *)addr) {
        fprintf(stderr, "ftmb: cannot map the state arena at %#llx (%llu bytes): %s; set FTMB_ARENA_ADDR\n",
                (unsigned long long)addr, (unsigned long long)size,
                p == MAP_FAILED ? strerror(errno) : "the kernel placed it elsewhere");
        if (p != MAP_FAILED)
            munmap(p, size);
        arena_status = -1;
        return;
    }
    /* Transparent huge pages where the kernel offers them: a checkpoint's fork then copies one
     * page-table entry per 2 MiB of state instead of 512 (the pause grows with the entries). */
    madvise(p, size, MADV_HUGEPAGE);
    arena_base = p;
    arena_size = size;
    uint64_t per = ((size - RUNTIME_PART) / FTMB_MAX_THREADS) & ~4095ull;
    for (int t = 0; t < FTMB_MAX_THREADS; t++) {
        heaps[t].bump = arena_base + RUNTIME_PART + (uint64_t)t * per;
        heaps[t].end = heaps[t].bump + per;
    }
}

int _ftmb_arena_init(void)
{
    pthread_once(&arena_once, arena_map);
    return arena_status;
}

void *_ftmb_arena_runtime_part(void) { return arena_base; }

unsigned _ftmb_arena_used(struct _ftmb_span *out, unsigned max)
{
    if (!arena_base || max == 0)
        return 0;
    unsigned n = 0;
    out[n++] = (struct _ftmb_span){(uint64_t)(uintptr_t)arena_base, RUNTIME_PART};
    uint64_t per = ((arena_size - RUNTIME_PART) / FTMB_MAX_THREADS) & ~4095ull;
    for (int t = 0; t < FTMB_MAX_THREADS && n < max; t++) {
        uint8_t *start = arena_base + RUNTIME_PART + (uint64_t)t * per;
        if (heaps[t].bump > start)
            out[n++] = (struct _ftmb_span){(uint64_t)(uintptr_t)start, (uint64_t)(heaps[t].bump - start)};
    }
    return n;
}

int ftmb_state_contains(const void *p)
{
    return arena_base && (const uint8_t *)p >= arena_base && (const uint8_t *)p < arena_base + arena_size;
}

static unsigned class_of(size_t n)
{
    unsigned c = 0;
    while (((size_t)16 << c) < n)
        c++;
    return c;
}

static void *heap_alloc(struct heap *h, uint32_t owner, size_t size, size_t align)
{
    if (size == 0)
        size = 1;
    if (size > (1ull << 40))
        return NULL;
    unsigned c = class_of(size);
    if (align > 16) { /* over-aligned: a large-enough block, then move to the alignment */
        void *raw = heap_alloc(h, owner, size + align + HDR, 16);
        if (!raw)
            return NULL;
        uintptr_t user = ((uintptr_t)raw + HDR + align - 1) & ~(uintptr_t)(align - 1);
        struct block_hdr *inner = (struct block_hdr *)(user - HDR);
        /* a second header pointing back: cls high bit marks "offset from the real block" */
        inner->cls = 0x80000000u;
        inner->owner = owner;
        inner->size = (uint64_t)(user - (uintptr_t)raw);
        return (void *)user;
    }
    struct block_hdr *b;
    if (c < NCLASSES) {
        struct free_block *f = h->free[c];
        if (f) {
            h->free[c] = f->next;
            b = (struct block_hdr *)((uint8_t *)f - HDR);
            b->owner = owner;
            return f;
        }
        size_t total = HDR + ((size_t)16 << c);
        if ((size_t)(h->end - h->bump) < total) {
            errno = ENOMEM;
            return NULL;
        }
        b = (struct block_hdr *)h->bump;
        h->bump += total;
        b->cls = c;
        b->size = (size_t)16 << c;
    } else {
        size_t total = (HDR + size + 4095) & ~(size_t)4095;
        for (struct free_block **pp = &h->large; *pp; pp = &(*pp)->next) {
            struct block_hdr *lb = (struct block_hdr *)((uint8_t *)*pp - HDR);
            if (lb->size >= size) {
                void *user = *pp;
                *pp = (*pp)->next;
                lb->owner = owner;
                return user;
            }
        }
        if ((size_t)(h->end - h->bump) < total) {
            errno = ENOMEM;
            return NULL;
        }
        b = (struct block_hdr *)h->bump;
        h->bump += total;
        b->cls = LARGE_CLASS;
        b->size = total - HDR;
    }
    b->owner = owner;
    return (uint8_t *)b + HDR;
}

static struct block_hdr *hdr_of(void *p, void **real)
{
    struct block_hdr *b = (struct block_hdr *)((uint8_t *)p - HDR);
    if (b->cls & 0x80000000u) { /* over-aligned block: step back to the real one */
        p = (uint8_t *)p - b->size;
        b = (struct block_hdr *)((uint8_t *)p - HDR);
    }
    *real = p;
    return b;
}

static struct heap *my_heap(uint32_t *owner)
{
    if (_ftmb_arena_init() != 0)
        return NULL;
    struct _ftmb_thread *t = _ftmb_me();
    *owner = t->index;
    return &heaps[t->index];
}

void *ftmb_state_aligned_alloc(ftmb_size_t alignment, ftmb_size_t size)
{
    uint32_t owner;
    struct heap *h = my_heap(&owner);
    if (!h || (alignment & (alignment - 1)))
        return NULL;
    return heap_alloc(h, owner, size, alignment);
}

void *ftmb_state_alloc(ftmb_size_t size) { return ftmb_state_aligned_alloc(16, size); }

void *ftmb_state_calloc(ftmb_size_t nmemb, ftmb_size_t size)
{
    if (size && nmemb > (size_t)-1 / size)
        return NULL;
    void *p = ftmb_state_alloc(nmemb * size);
    if (p) /* a reused block may hold old bytes; fresh pages are zero but we do not track which */
        memset(p, 0, nmemb * size);
    return p;
}

void ftmb_state_free(void *p)
{
    if (!p)
        return;
    if (!ftmb_state_contains(p)) {
        fprintf(stderr, "ftmb: ftmb_state_free(%p): not an arena pointer; passing it to free()\n", p);
        free(p);
        return;
    }
    uint32_t owner;
    struct heap *h = my_heap(&owner);
    void *real;
    struct block_hdr *b = hdr_of(p, &real);
    struct free_block *f = real;
    if (b->cls == LARGE_CLASS) {
        f->next = h->large;
        h->large = f;
    } else {
        f->next = h->free[b->cls];
        h->free[b->cls] = f;
    }
}

void *ftmb_state_realloc(void *p, ftmb_size_t size)
{
    if (!p)
        return ftmb_state_alloc(size);
    if (size == 0) {
        ftmb_state_free(p);
        return NULL;
    }
    void *real;
    struct block_hdr *b = hdr_of(p, &real);
    uint64_t have = b->size - (uint64_t)((uint8_t *)p - (uint8_t *)real);
    if (size <= have)
        return p;
    void *n = ftmb_state_alloc(size);
    if (n) {
        memcpy(n, p, have);
        ftmb_state_free(p);
    }
    return n;
}

void *ftmb_rte_malloc(const char *type, ftmb_size_t size, unsigned align)
{
    (void)type;
    return ftmb_state_aligned_alloc(align ? align : 64, size); /* rte_malloc aligns to a cache line */
}

void *ftmb_rte_zmalloc(const char *type, ftmb_size_t size, unsigned align)
{
    void *p = ftmb_rte_malloc(type, size, align);
    if (p)
        memset(p, 0, size);
    return p;
}

void ftmb_rte_free(void *ptr) { ftmb_state_free(ptr); }

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
 *
 * Every allocation entry keeps the meaning of each argument of the call it replaces: the rte_*
 * entries take the name (unused, as DPDK only uses it for statistics), the alignment and, for the
 * _socket variants, the NUMA socket (see socket_ok and place_on_socket).
 *
 * The program's own free(), realloc(), reallocarray() and malloc_usable_size() are interposed here
 * (a program linked with libftmb defines them): an arena pointer goes to the arena, any other to
 * the C library. So a free inside a macro expansion, in a library the program hands an arena
 * pointer to, or in code the rewriter never saw needs no edit.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rt.h"

extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
/* DPDK's, where the program links DPDK (weak: the core library does not need it) */
extern void rte_free(void *) __attribute__((weak));
extern void *rte_realloc_socket(void *, size_t, unsigned, int) __attribute__((weak));
extern int rte_eal_has_hugepages(void) __attribute__((weak));
extern unsigned rte_socket_count(void) __attribute__((weak));
extern int rte_socket_id_by_idx(unsigned) __attribute__((weak));

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
     * page-table entry per 2 MiB of state instead of 512 (the pause grows with the entries). Not
     * for the object table: a program uses a few of its lines, and with huge pages the first use
     * in each 2 MiB half committed it whole, which the master's first write after a fork splits
     * into 512 entries that every later fork copies (up to 1,024 for the 4 MiB, where 4 KiB pages
     * commit the few that hold used lines). */
    madvise(p, RUNTIME_PART, MADV_NOHUGEPAGE);
    madvise((char *)p + RUNTIME_PART, size - RUNTIME_PART, MADV_HUGEPAGE);
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

static void arena_free(void *p)
{
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

/* Usable bytes from p to the end of its block. */
static uint64_t arena_usable(void *p)
{
    void *real;
    struct block_hdr *b = hdr_of(p, &real);
    return b->size - (uint64_t)((uint8_t *)p - (uint8_t *)real);
}

void ftmb_state_free(void *p)
{
    if (!p)
        return;
    if (!ftmb_state_contains(p)) {
        __libc_free(p);
        return;
    }
    arena_free(p);
}

void *ftmb_state_realloc(void *p, ftmb_size_t size)
{
    if (!p)
        return ftmb_state_alloc(size);
    if (!ftmb_state_contains(p))
        return __libc_realloc(p, size);
    if (size == 0) {
        arena_free(p);
        return NULL;
    }
    uint64_t have = arena_usable(p);
    if (size <= have)
        return p;
    void *n = ftmb_state_alloc(size);
    if (n) {
        memcpy(n, p, have);
        arena_free(p);
    }
    return n;
}

void *ftmb_state_valloc(ftmb_size_t size) { return ftmb_state_aligned_alloc(4096, size); }

void *ftmb_state_pvalloc(ftmb_size_t size)
{
    return ftmb_state_aligned_alloc(4096, size ? (size + 4095) & ~(ftmb_size_t)4095 : 4096);
}

char *ftmb_state_strdup(const char *s) { return ftmb_state_strndup(s, (ftmb_size_t)-1); }

char *ftmb_state_strndup(const char *s, ftmb_size_t n)
{
    size_t len = strnlen(s, n);
    char *p = ftmb_state_alloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

/* ---- interposed C library calls ----------------------------------------------------------- */

void free(void *p)
{
    if (ftmb_state_contains(p))
        arena_free(p);
    else
        __libc_free(p);
}

/* Only an arena pointer stays in the arena: realloc(NULL, n) is the C library's malloc (a thread the
 * runtime does not know must not be given a thread index by a reallocation). */
void *realloc(void *p, size_t size)
{
    return ftmb_state_contains(p) ? ftmb_state_realloc(p, size) : __libc_realloc(p, size);
}

void *reallocarray(void *p, size_t nmemb, size_t size)
{
    if (size && nmemb > (size_t)-1 / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, nmemb * size);
}

size_t malloc_usable_size(void *p)
{
    if (ftmb_state_contains(p))
        return arena_usable(p);
    static size_t (*libc_usable)(void *);
    if (!libc_usable)
        libc_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    return p && libc_usable ? libc_usable(p) : 0;
}

/* ---- the rte_malloc family ----------------------------------------------------------------- */

#define SOCKET_ID_ANY (-1)
#define MAX_NUMA_NODES 32 /* DPDK's RTE_MAX_NUMA_NODES (Debian's build) */
#define MPOL_PREFERRED 1

/* Whether rte_malloc_socket would serve `socket` (DPDK's socket ids are NUMA node numbers): any
 * socket without hugepages (DPDK then allocates from any memory), else a socket below the limit that
 * DPDK found memory on (rte_socket_id_by_idx), or, without DPDK linked, a node of this machine. */
static int socket_ok(int socket)
{
    if (socket == SOCKET_ID_ANY || (rte_eal_has_hugepages && !rte_eal_has_hugepages()))
        return 1;
    if (socket < 0 || socket >= MAX_NUMA_NODES)
        return 0;
    if (rte_socket_count && rte_socket_id_by_idx) {
        for (unsigned i = 0; i < rte_socket_count(); i++)
            if (rte_socket_id_by_idx(i) == socket)
                return 1;
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d", socket);
    return access(path, F_OK) == 0;
}

/* Bind the block's whole pages to the socket's node (MPOL_PREFERRED, best effort: a block smaller
 * than a page shares its pages, which stay where first touched). */
static void place_on_socket(void *p, ftmb_size_t size, int socket)
{
    if (socket == SOCKET_ID_ANY)
        return;
    uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + size) & ~(uintptr_t)4095;
    if (hi > lo) {
        unsigned long mask[MAX_NUMA_NODES / (8 * sizeof(unsigned long)) + 1] = {0};
        mask[socket / (8 * sizeof(unsigned long))] = 1ul << (socket % (8 * sizeof(unsigned long)));
        syscall(SYS_mbind, lo, hi - lo, MPOL_PREFERRED, mask, (unsigned long)MAX_NUMA_NODES + 1, 0u);
    }
}

/* As rte_malloc_socket: size 0, an alignment that is not a power of two (0 means a cache line) or a
 * socket DPDK would not serve (socket_ok) fail with NULL. */
static void *rte_alloc(ftmb_size_t size, unsigned align, int socket, int zero)
{
    if (size == 0 || (align & (align - 1)) || !socket_ok(socket)) {
        errno = EINVAL;
        return NULL;
    }
    void *p = ftmb_state_aligned_alloc(align > 64 ? align : 64, size);
    if (!p)
        return NULL;
    if (zero) /* a reused block may hold old bytes */
        memset(p, 0, size);
    place_on_socket(p, size, socket);
    return p;
}

void *ftmb_rte_malloc(const char *type, ftmb_size_t size, unsigned align)
{
    (void)type;
    return rte_alloc(size, align, SOCKET_ID_ANY, 0);
}

void *ftmb_rte_malloc_socket(const char *type, ftmb_size_t size, unsigned align, int socket)
{
    (void)type;
    return rte_alloc(size, align, socket, 0);
}

void *ftmb_rte_zmalloc(const char *type, ftmb_size_t size, unsigned align)
{
    (void)type;
    return rte_alloc(size, align, SOCKET_ID_ANY, 1);
}

void *ftmb_rte_zmalloc_socket(const char *type, ftmb_size_t size, unsigned align, int socket)
{
    (void)type;
    return rte_alloc(size, align, socket, 1);
}

void *ftmb_rte_calloc(const char *type, ftmb_size_t num, ftmb_size_t size, unsigned align)
{
    return ftmb_rte_calloc_socket(type, num, size, align, SOCKET_ID_ANY);
}

void *ftmb_rte_calloc_socket(const char *type, ftmb_size_t num, ftmb_size_t size, unsigned align, int socket)
{
    (void)type;
    if (size && num > (ftmb_size_t)-1 / size) {
        errno = EINVAL;
        return NULL;
    }
    return rte_alloc(num * size, align, socket, 1);
}

void *ftmb_rte_realloc(void *ptr, ftmb_size_t size, unsigned align)
{
    return ftmb_rte_realloc_socket(ptr, size, align, SOCKET_ID_ANY);
}

/* An arena pointer is kept when its block is large enough and aligned as asked, else moved; NULL
 * allocates from the arena; any other pointer is DPDK's and goes to rte_realloc_socket. */
void *ftmb_rte_realloc_socket(void *ptr, ftmb_size_t size, unsigned align, int socket)
{
    if (!ptr)
        return rte_alloc(size, align, socket, 0);
    if (!ftmb_state_contains(ptr)) {
        if (rte_realloc_socket)
            return rte_realloc_socket(ptr, size, align, socket);
        fprintf(stderr, "ftmb: rte_realloc(%p): not an arena pointer and DPDK is not linked\n", ptr);
        abort();
    }
    if (size == 0 || (align & (align - 1)) || !socket_ok(socket)) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t have = arena_usable(ptr);
    if (size <= have && (uintptr_t)ptr % (align ? align : 1) == 0 && socket == SOCKET_ID_ANY)
        return ptr;
    void *n = rte_alloc(size, align, socket, 0);
    if (n) {
        memcpy(n, ptr, have < size ? have : size);
        arena_free(ptr);
    }
    return n;
}

/* An arena pointer goes back to the arena, any other to DPDK's rte_free. */
void ftmb_rte_free(void *ptr)
{
    if (!ptr || ftmb_state_contains(ptr))
        ftmb_state_free(ptr);
    else if (rte_free)
        rte_free(ptr);
    else
        __libc_free(ptr);
}

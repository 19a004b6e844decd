/*
 * The output logger's core: store every thread's records (this memory is the stable storage),
 * count them per thread, and release each output packet once its vector is covered.
 *
 * Release rule: a packet stamped with vector v is released when v[i] <= received[i] for every
 * thread i. A thread's packets leave in its order: vectors of one thread only grow (counts only
 * grow and it reads them in program order), so when the oldest packet of a thread is not covered
 * none of its later ones is, and looking at the oldest alone is exact. Threads never wait on each
 * other: a packet waits only for the records its own vector names. Packets stay in the master's
 * output ring until released (no copy); records are copied out at once, so the record rings never
 * fill because of held packets.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"

struct ol_thread {
    struct _ftmb_ring rec; /* consumer side */
    struct _ftmb_ring out; /* consumer side */
    struct _ftmb_record *log; /* records base .. received-1 */
    uint64_t received;     /* valid records stored: the count the release rule compares with */
    uint64_t base;         /* the index of log[0]: records before it were garbage-collected */
    uint64_t cap;
    uint64_t released_seq; /* highest output sequence released: later duplicates are dropped */
    uint64_t *digest;      /* digest[s - 1]: hash of the bytes of released output s (0: unknown) */
    uint64_t digest_cap;
    int corrupt;           /* a record failed its check: nothing after it counts */
};

struct _ftmb_ol {
    struct _ftmb_out_region *region;
    struct _ftmb_ol_sink sink;
    FILE *diag;
    uint32_t nattached;
    uint64_t corrupt, duplicates;
    /* Duplicates whose bytes differ from the packet released with the same thread and output
     * sequence: a regenerated output that contradicts a released one (the oracle's check). */
    uint64_t mismatches;
    /* Mutation check only (FTMB_OL_NO_RELEASE_RULE=1): release every packet at once, store
     * records late (every 200 ms, longer than a checkpoint interval), and lose the records still in flight when the master
     * dies. The verification oracle must then report violations. */
    int no_release_rule;
    uint64_t polls;
    struct ol_thread th[FTMB_MAX_THREADS];
};

struct _ftmb_ol *_ftmb_ol_new(struct _ftmb_out_region *region, struct _ftmb_ol_sink sink, FILE *diag)
{
    struct _ftmb_ol *ol = calloc(1, sizeof *ol);
    if (!ol)
        return NULL;
    ol->region = region;
    ol->sink = sink;
    const char *mut = getenv("FTMB_OL_NO_RELEASE_RULE");
    ol->no_release_rule = mut && *mut == '1';
    ol->diag = diag;
    return ol;
}

void _ftmb_ol_free(struct _ftmb_ol *ol)
{
    if (!ol)
        return;
    for (uint32_t t = 0; t < FTMB_MAX_THREADS; t++) {
        free(ol->th[t].log);
        free(ol->th[t].digest);
    }
    free(ol);
}

static void attach_new_threads(struct _ftmb_ol *ol)
{
    /* Acquire pairs with N1 (the master's release when it hands out a thread index). */
    uint32_t n = atomic_load_explicit(&ol->region->nthreads, memory_order_acquire);
    if (n > ol->region->max_threads)
        n = ol->region->max_threads;
    for (; ol->nattached < n; ol->nattached++) {
        struct ol_thread *th = &ol->th[ol->nattached];
        struct _ftmb_out_thread *shared = &ol->region->thread[ol->nattached];
        /* The rings are laid out back to back: records, then outputs (_ftmb_out_region_init). */
        _ftmb_region_populate(ol->region, shared->rec.buf_offset,
                              (uint64_t)shared->rec.capacity * shared->rec.slot_size +
                                  (uint64_t)shared->out.capacity * shared->out.slot_size);
        _ftmb_ring_attach(&th->rec, ol->region, &shared->rec, 0);
        _ftmb_ring_attach(&th->out, ol->region, &shared->out, 0);
    }
}

/* Forget the records before the master's newest snapshot (its retain_from mark); 4096 at a time at
 * least, so the move of what is kept is paid once per many records. */
static void collect(struct ol_thread *th, const struct _ftmb_out_thread *shared)
{
    /* Relaxed: a mark only; no data is read through it. */
    uint64_t keep = atomic_load_explicit(&shared->retain_from, memory_order_relaxed);
    if (keep > th->received)
        keep = th->received;
    if (keep < th->base + 4096)
        return;
    memmove(th->log, th->log + (keep - th->base), (th->received - keep) * sizeof *th->log);
    th->base = keep;
}

static int store(struct ol_thread *th, const struct _ftmb_record *r)
{
    if (th->received - th->base == th->cap) {
        uint64_t cap = th->cap ? th->cap * 2 : 4096;
        struct _ftmb_record *log = realloc(th->log, cap * sizeof *log);
        if (!log)
            return -1;
        th->log = log;
        th->cap = cap;
    }
    th->log[th->received++ - th->base] = *r;
    return 0;
}

uint64_t _ftmb_ol_drain_records(struct _ftmb_ol *ol, uint32_t t, uint64_t max)
{
    attach_new_threads(ol);
    if (t >= ol->nattached)
        return 0;
    struct ol_thread *th = &ol->th[t];
    uint64_t done = 0;
    for (;;) {
        uint64_t ready = _ftmb_ring_refresh(&th->rec);
        if (ready == 0 || done == max)
            break;
        if (ready > max - done)
            ready = max - done;
        for (uint64_t i = 0; i < ready; i++) {
            const struct _ftmb_record *r = _ftmb_ring_peek(&th->rec, i);
            uint64_t index = th->rec.local + i; /* the record's index in its thread's stream */
            if (th->corrupt)
                continue;
            if (!_ftmb_rec_valid(r, index)) {
                th->corrupt = 1;
                ol->corrupt++;
                if (ol->diag)
                    fprintf(ol->diag,
                            "ftmb-output-logger: thread %u record %llu fails its checksum (head %#llx value "
                            "%#llx); it is not stored, and packets that depend on it are never released\n",
                            t, (unsigned long long)index, (unsigned long long)r->head,
                            (unsigned long long)r->value);
                continue;
            }
            if (store(th, r) != 0) {
                if (ol->diag)
                    fprintf(ol->diag, "ftmb-output-logger: out of memory storing the records of thread %u\n", t);
                abort();
            }
        }
        _ftmb_ring_consume(&th->rec, ready);
        done += ready;
    }
    collect(th, &ol->region->thread[t]);
    return done;
}

/* FNV-1a over the length and bytes, never 0 (0 means unknown). */
static uint64_t digest_of(const struct _ftmb_out_slot *s)
{
    uint64_t h = 0xcbf29ce484222325ull ^ s->len;
    for (uint32_t i = 0; i < s->len; i++)
        h = (h ^ s->data[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

static void remember(struct ol_thread *th, const struct _ftmb_out_slot *s)
{
    if (s->out_seq > th->digest_cap) {
        uint64_t cap = th->digest_cap ? th->digest_cap : 4096;
        while (cap < s->out_seq)
            cap *= 2;
        uint64_t *d = realloc(th->digest, cap * sizeof *d);
        if (!d)
            return; /* not remembered: its duplicates are not compared */
        memset(d + th->digest_cap, 0, (cap - th->digest_cap) * sizeof *d);
        th->digest = d;
        th->digest_cap = cap;
    }
    th->digest[s->out_seq - 1] = digest_of(s);
}

static int covered(const struct _ftmb_ol *ol, const struct _ftmb_out_slot *s)
{
    if (ol->no_release_rule)
        return 1;
    for (uint32_t i = 0; i < s->nvec; i++)
        if (s->vec[i] > (i < ol->nattached ? ol->th[i].received : 0))
            return 0;
    return 1;
}

uint64_t _ftmb_ol_release(struct _ftmb_ol *ol, uint32_t t)
{
    attach_new_threads(ol);
    if (t >= ol->nattached)
        return 0;
    struct ol_thread *th = &ol->th[t];
    uint64_t released = 0;
    uint64_t ready = _ftmb_ring_refresh(&th->out);
    uint64_t i = 0;
    for (; i < ready; i++) {
        const struct _ftmb_out_slot *s = _ftmb_ring_peek(&th->out, i);
        if (!covered(ol, s))
            break;
        if (s->out_seq <= th->released_seq) {
            ol->duplicates++;
            uint64_t want = s->out_seq - 1 < th->digest_cap ? th->digest[s->out_seq - 1] : 0;
            if (want && want != digest_of(s)) {
                if (ol->diag && ol->mismatches < 10)
                    fprintf(ol->diag,
                            "ftmb-output-logger: thread %u output %llu regenerated differs from the one released\n",
                            t, (unsigned long long)s->out_seq);
                ol->mismatches++;
            }
            continue;
        }
        th->released_seq = s->out_seq;
        remember(th, s);
        if (ol->sink.release)
            ol->sink.release(ol->sink.ctx, s);
        released++;
    }
    if (i)
        _ftmb_ring_consume(&th->out, i);
    return released;
}

uint64_t _ftmb_ol_poll(struct _ftmb_ol *ol)
{
    attach_new_threads(ol);
    uint64_t work = 0;
    int ship = 1;
    if (ol->no_release_rule) { /* the mutation: records shipped every 200 ms only */
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        ship = now - ol->polls >= 200000000ull;
        if (ship)
            ol->polls = now;
    }
    if (ship)
        for (uint32_t t = 0; t < ol->nattached; t++)
            work += _ftmb_ol_drain_records(ol, t, UINT64_MAX);
    for (uint32_t t = 0; t < ol->nattached; t++)
        work += _ftmb_ol_release(ol, t);
    return work;
}

void _ftmb_ol_master_died(struct _ftmb_ol *ol)
{
    attach_new_threads(ol);
    if (!ol->no_release_rule) { /* store everything the master published */
        for (uint32_t t = 0; t < ol->nattached; t++)
            _ftmb_ol_drain_records(ol, t, UINT64_MAX);
        return;
    }
    /* Mutation: records not stored yet were "in flight" and are lost. The producer is dead, so
     * the consumer may move its head back to what was stored: a backup continues from there. */
    for (uint32_t t = 0; t < ol->nattached; t++) {
        struct ol_thread *th = &ol->th[t];
        atomic_store_explicit(&th->rec.ctl->head, th->rec.local, memory_order_release);
        th->rec.cache = th->rec.local;
    }
}

uint64_t _ftmb_ol_received(const struct _ftmb_ol *ol, uint32_t t) { return ol->th[t].received; }
uint64_t _ftmb_ol_released_seq(const struct _ftmb_ol *ol, uint32_t t) { return ol->th[t].released_seq; }
uint64_t _ftmb_ol_corrupt(const struct _ftmb_ol *ol) { return ol->corrupt; }
uint64_t _ftmb_ol_duplicates(const struct _ftmb_ol *ol) { return ol->duplicates; }
uint64_t _ftmb_ol_mismatches(const struct _ftmb_ol *ol) { return ol->mismatches; }

uint64_t _ftmb_ol_pending(struct _ftmb_ol *ol)
{
    attach_new_threads(ol);
    uint64_t n = 0;
    for (uint32_t t = 0; t < ol->nattached; t++) {
        struct ol_thread *th = &ol->th[t];
        n += _ftmb_ring_refresh(&th->out);
    }
    return n;
}

const struct _ftmb_record *_ftmb_ol_log(const struct _ftmb_ol *ol, uint32_t t, uint64_t *n)
{
    *n = ol->th[t].received - ol->th[t].base;
    return ol->th[t].log;
}

uint64_t _ftmb_ol_base(const struct _ftmb_ol *ol, uint32_t t) { return ol->th[t].base; }

/* Written under a temporary name and renamed: a backup that sees the file sees all of it. */
int _ftmb_ol_write_log(const struct _ftmb_ol *ol, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    struct _ftmb_log_file_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = _FTMB_LOG_MAGIC;
    h.abi_version = FTMB_ABI_VERSION;
    h.nthreads = ol->nattached;
    h.tsc_hz = ol->region->tsc_hz;
    for (uint32_t t = 0; t < ol->nattached; t++) {
        h.count[t] = ol->th[t].received;
        h.base[t] = ol->th[t].base;
    }
    h.hdr_check = _ftmb_log_hdr_check(&h);
    int ok = fwrite(&h, sizeof h, 1, f) == 1;
    for (uint32_t t = 0; ok && t < ol->nattached; t++) {
        uint64_t n = h.count[t] - h.base[t];
        ok = fwrite(ol->th[t].log, sizeof(struct _ftmb_record), n, f) == n;
    }
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

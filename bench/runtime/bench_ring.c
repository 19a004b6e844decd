/*
 * Records per second through a record ring between two processes (built by
 * `make -C runtime bench`): a producer process appends 16-byte records with checksums, exactly as
 * the master's record path does; the consumer is either a bare loop over the ring or the output
 * logger's core (verify each checksum, store the record, count it).
 *
 * usage: bench_ring [RECORDS] [REPS]   prints "<name> <min> <median> <max>" in million records/s
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void produce(struct _ftmb_out_region *r, uint64_t n)
{
    struct _ftmb_ring p;
    _ftmb_ring_attach(&p, r, &r->thread[0].rec, 1);
    for (uint64_t i = 0; i < n;) {
        struct _ftmb_record *s = _ftmb_ring_reserve(&p);
        if (!s) {
            __builtin_ia32_pause();
            continue;
        }
        uint64_t head = _ftmb_rec_head(_FTMB_REC_ORDERED, 3, 1);
        s->head = head | _ftmb_rec_check(head, i, p.local);
        s->value = i;
        _ftmb_ring_publish(&p, 1);
        i++;
    }
}

static double one_run(uint64_t n, int through_logger)
{
    char name[64];
    snprintf(name, sizeof name, "bench-ring-%d", (int)getpid());
    size_t size = _ftmb_out_region_size(1, 65536, 2);
    struct _ftmb_out_region *r = _ftmb_region_create(name, "out", size);
    if (!r)
        exit(1);
    _ftmb_out_region_init(r, size, 1, 65536, 2);
    atomic_store(&r->nthreads, 1);
    _ftmb_region_set_ready(r);
    pid_t pid = fork();
    if (pid == 0) {
        size_t sz;
        struct _ftmb_out_region *mine = _ftmb_region_attach(name, "out", _FTMB_OUT_MAGIC, 1000, &sz);
        if (!mine)
            _exit(2);
        produce(mine, n);
        _exit(0);
    }
    uint64_t t0 = _ftmb_now_ns(CLOCK_MONOTONIC), got = 0, bad = 0;
    if (through_logger) {
        struct _ftmb_ol *ol = _ftmb_ol_new(r, (struct _ftmb_ol_sink){0}, stderr);
        while (got < n)
            got += _ftmb_ol_drain_records(ol, 0, UINT64_MAX);
        bad = _ftmb_ol_corrupt(ol);
        _ftmb_ol_free(ol);
    } else {
        struct _ftmb_ring c;
        _ftmb_ring_attach(&c, r, &r->thread[0].rec, 0);
        uint64_t sum = 0;
        while (got < n) {
            uint64_t k = _ftmb_ring_refresh(&c);
            for (uint64_t i = 0; i < k; i++)
                sum += ((const struct _ftmb_record *)_ftmb_ring_peek(&c, i))->value;
            _ftmb_ring_consume(&c, k);
            got += k;
        }
        bad = sum != n * (n - 1) / 2;
    }
    double secs = (double)(_ftmb_now_ns(CLOCK_MONOTONIC) - t0) * 1e-9;
    waitpid(pid, NULL, 0);
    _ftmb_region_unlink(name, "out");
    if (bad) {
        fprintf(stderr, "bench_ring: records arrived damaged\n");
        exit(1);
    }
    return (double)n / secs / 1e6;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || reps < 1 || reps > 64) {
        fprintf(stderr, "bench_ring: usage: bench_ring [RECORDS>0] [REPS 1..64]\n");
        return 1;
    }
    printf("# benchmark                    min(Mrec/s) median  max     (%llu records x %d reps)\n",
           (unsigned long long)n, reps);
    const char *names[2] = {"ring_2proc_bare_consumer", "ring_2proc_output_logger"};
    for (int mode = 0; mode < 2; mode++) {
        double v[64];
        for (int i = 0; i < reps; i++)
            v[i] = one_run(n, mode);
        qsort(v, (size_t)reps, sizeof v[0], cmp_double);
        printf("%-28s %8.1f %8.1f %8.1f\n", names[mode], v[0], v[reps / 2], v[reps - 1]);
    }
    return 0;
}

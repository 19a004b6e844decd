// ftmb-corpus: style=pthread args="4 2500"
/*
 * Duplicate-packet suppressor: a lock-free open-addressing set of packet fingerprints.
 *
 * Exercises: __atomic_load_n/__atomic_compare_exchange_n on a global array; __atomic_fetch_add and
 * __atomic_add_fetch counters whose results are unused (commutative); _Thread_local counters copied
 * into the per-thread argument at the end; per-thread argument structs on main's stack; a lazily
 * initialized static local salt (a race: every worker may read and write it); a string used by main
 * only; time() as a source of nondeterminism.
 *
 * Usage: pt_dedup_atomic [THREADS [PACKETS_PER_THREAD]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Room for every fingerprint (4 x 2500 packets, 5000 distinct: the set stays under a third full and
 * never runs out of probes), so that the counts do not depend on which thread inserts first. */
#define SET_SLOTS 16384
#define MAX_PROBES 32
#define MAX_THREADS 8

struct worker_arg {
	unsigned id;
	uint64_t dups, inserted;
};

static const char usage[] = "usage: pt_dedup_atomic [THREADS [PACKETS_PER_THREAD]]\n"; /* EXPECT: thread_private */
static uint64_t seen_set[SET_SLOTS]; /* EXPECT: shared_rw atomic */
static uint64_t dup_count; /* EXPECT: shared_rw atomic commutative */
static uint64_t unique_count; /* EXPECT: shared_rw atomic commutative */
static unsigned long pkts_per_thread = 2000; /* EXPECT: shared_ro */
static _Thread_local uint64_t local_dups; /* EXPECT: per_core */
static _Thread_local uint64_t local_inserted; /* EXPECT: per_core */

static uint64_t fingerprint(uint32_t src, uint32_t dst, uint16_t ipid)
{
	static uint64_t salt; /* EXPECT: shared_rw unprotected */

	if (salt == 0)
		salt = ((uint64_t)time(NULL) << 1) | 1;
	uint64_t h = ((uint64_t)src << 32 | dst) ^ ((uint64_t)ipid * 0x9e3779b97f4a7c15ull);
	h ^= salt;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h | 1; /* 0 marks an empty slot */
}

/* Returns 1 if fp was already in the set, 0 if this call inserted it (or the set was full). */
static int set_test_and_insert(uint64_t fp)
{
	unsigned start = (unsigned)(fp % SET_SLOTS);

	for (unsigned i = 0; i < MAX_PROBES; i++) {
		uint64_t *slot = &seen_set[(start + i) % SET_SLOTS];
		uint64_t cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

		if (cur == fp)
			return 1;
		if (cur == 0) {
			uint64_t expected = 0;
			if (__atomic_compare_exchange_n(slot, &expected, fp, 0, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE))
				return 0;
			if (expected == fp)
				return 1;
		}
	}
	return 0;
}

static void *dedup_worker(void *arg)
{
	struct worker_arg *wa = arg;

	for (unsigned long i = 0; i < pkts_per_thread; i++) {
		/* Neighbouring threads replay each other's packets half of the time. */
		uint32_t flow = (uint32_t)(i % 500);
		uint16_t ipid = (uint16_t)((i / 2) + (wa->id / 2) * 7);
		uint64_t fp = fingerprint(0x0a000000u | flow, 0xc0a80001u, ipid);

		if (set_test_and_insert(fp)) {
			local_dups++;
			__atomic_fetch_add(&dup_count, 1, __ATOMIC_RELAXED);
		} else {
			local_inserted++;
			__atomic_add_fetch(&unique_count, 1, __ATOMIC_RELAXED);
		}
	}
	wa->dups = local_dups;
	wa->inserted = local_inserted;
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker_arg args[MAX_THREADS]; /* EXPECT-STACK: per_core */
	pthread_t threads[MAX_THREADS];
	unsigned nthreads = 2;

	if (argc > 1)
		nthreads = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_thread = strtoul(argv[2], NULL, 10);
	if (nthreads < 1 || nthreads > MAX_THREADS) {
		fputs(usage, stderr);
		return 2;
	}

	for (unsigned i = 0; i < nthreads; i++) {
		args[i] = (struct worker_arg){ .id = i };
		pthread_create(&threads[i], NULL, dedup_worker, &args[i]);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);

	uint64_t dups = 0, inserted = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		dups += args[i].dups;
		inserted += args[i].inserted;
	}
	printf("pt_dedup_atomic: dups=%llu unique=%llu (per-thread sums %llu/%llu)\n",
	       (unsigned long long)dup_count, (unsigned long long)unique_count,
	       (unsigned long long)dups, (unsigned long long)inserted);
	return 0;
}

// ftmb-corpus: style=pthread args="3 1200" output=racy
/*
 * Layer-4 load balancer: connection buckets each guarded by their own pthread spinlock.
 *
 * Exercises: a lock embedded in each bucket, taken through a local `struct bucket *` and held while
 * a helper touches the bucket through its parameter (lock=bucket::lock); a malloc'd backend array
 * stored in a global pointer and only read after the threads start; __sync builtins, once with the
 * result unused (a commutative counter) and once with the result steering the packet; per-thread
 * statistics passed as &wstats[i].
 *
 * Usage: pt_lb_spin [THREADS [PACKETS_PER_THREAD]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NB_BUCKETS 64
#define CONNS_PER_BUCKET 8
#define MAX_THREADS 8

struct backend {
	uint32_t ip;
	uint16_t port;
};

struct conn {
	uint32_t client;
	uint16_t cport;
	uint8_t used;
	uint8_t backend;
};

struct bucket {
	pthread_spinlock_t lock;
	struct conn conns[CONNS_PER_BUCKET];
	unsigned n, replaced;
};

struct lb_stats {
	unsigned id;
	unsigned long pkts, new_conns, per_backend[8];
};

static struct bucket buckets[NB_BUCKETS]; /* EXPECT: shared_rw lock lock=bucket::lock */
static struct backend *backends; /* EXPECT: shared_ro */
static unsigned n_backends = 4; /* EXPECT: shared_ro */
static unsigned long pkts_per_thread = 1000; /* EXPECT: shared_ro */
static unsigned long total_conns; /* EXPECT: shared_rw atomic commutative */
static unsigned rr_cursor; /* EXPECT: shared_rw atomic */
static struct lb_stats wstats[MAX_THREADS]; /* EXPECT: per_core */

/* The caller holds b->lock. */
static uint8_t bucket_lookup_or_insert(struct bucket *b, uint32_t client, uint16_t cport, int *is_new)
{
	for (unsigned i = 0; i < b->n; i++)
		if (b->conns[i].client == client && b->conns[i].cport == cport)
			return b->conns[i].backend;

	uint8_t chosen = (uint8_t)(__sync_fetch_and_add(&rr_cursor, 1) % n_backends);
	unsigned slot = b->n < CONNS_PER_BUCKET ? b->n++ : (b->replaced++ % CONNS_PER_BUCKET);

	b->conns[slot].client = client;
	b->conns[slot].cport = cport;
	b->conns[slot].used = 1;
	b->conns[slot].backend = chosen;
	*is_new = 1;
	return chosen;
}

static void *lb_worker(void *arg)
{
	struct lb_stats *st = arg;

	for (unsigned long i = 0; i < pkts_per_thread; i++) {
		uint32_t client = 0x0a010000u | (uint32_t)((i * 13 + st->id * 7) % 300);
		uint16_t cport = (uint16_t)(40000 + i % 17);
		struct bucket *b = &buckets[(client ^ cport) % NB_BUCKETS];
		int is_new = 0;

		pthread_spin_lock(&b->lock);
		uint8_t be = bucket_lookup_or_insert(b, client, cport, &is_new);
		pthread_spin_unlock(&b->lock);

		if (is_new) {
			__sync_fetch_and_add(&total_conns, 1);
			st->new_conns++;
		}
		uint32_t dst = backends[be].ip;
		st->per_backend[be % 8] += (dst != 0);
		st->pkts++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[MAX_THREADS];
	unsigned nthreads = 2;

	if (argc > 1)
		nthreads = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_thread = strtoul(argv[2], NULL, 10);
	if (nthreads < 1 || nthreads > MAX_THREADS)
		return 2;

	backends = malloc(n_backends * sizeof *backends); /* EXPECT-HEAP: shared_ro */
	if (!backends)
		return 1;
	for (unsigned i = 0; i < n_backends; i++) {
		backends[i].ip = 0xac100001u + i;
		backends[i].port = 8080;
	}
	for (unsigned i = 0; i < NB_BUCKETS; i++)
		pthread_spin_init(&buckets[i].lock, PTHREAD_PROCESS_PRIVATE);

	for (unsigned i = 0; i < nthreads; i++) {
		wstats[i].id = i;
		pthread_create(&threads[i], NULL, lb_worker, &wstats[i]);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);

	unsigned long pkts = 0, per_backend[8] = { 0 };
	for (unsigned i = 0; i < nthreads; i++) {
		pkts += wstats[i].pkts;
		for (unsigned j = 0; j < 8; j++)
			per_backend[j] += wstats[i].per_backend[j];
	}
	printf("pt_lb_spin: pkts=%lu conns=%lu backends=[%lu %lu %lu %lu]\n", pkts, total_conns,
	       per_backend[0], per_backend[1], per_backend[2], per_backend[3]);
	free(backends);
	return 0;
}

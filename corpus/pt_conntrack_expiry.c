// ftmb-corpus: style=pthread args="3 3000"
/*
 * Connection tracker with an expiry thread: workers look up and insert connections in a calloc'd
 * table (header plus flexible array) reached through a global pointer; a timer thread expires idle
 * entries.
 *
 * Exercises: a heap object whose mutex lives inside it, used under that lock everywhere except a
 * "table pressure" check the workers make without it (mixed); a one-time banner claimed with
 * __sync_bool_compare_and_swap; a volatile stop flag for the expiry thread written by main between
 * the joins; the expiry thread's own static local; per-thread hit/miss counters indexed by the
 * thread argument; clock_gettime as the clock of the tracker.
 *
 * Usage: pt_conntrack_expiry [WORKERS [PACKETS_PER_WORKER]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CT_SLOTS 256
#define MAX_WORKERS 8

struct ct_entry {
	uint32_t saddr, daddr;
	uint16_t sport, dport;
	uint64_t last_seen_us;
	uint8_t used;
};

struct ct_table {
	pthread_mutex_t lock;
	size_t size, count;
	uint64_t expired, pressure_events;
	struct ct_entry slots[];
};

static struct ct_table *g_ct; /* EXPECT: shared_ro */
static unsigned idle_timeout_us = 300; /* EXPECT: shared_ro */
static unsigned long pkts_per_worker = 2000; /* EXPECT: shared_ro */
static volatile int stop_expiry; /* EXPECT: shared_rw unprotected */
static int banner_claimed; /* EXPECT: shared_rw atomic */
static unsigned long lookups[MAX_WORKERS][2]; /* EXPECT: per_core */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The caller holds ct->lock. Returns 1 on a hit, 0 when inserted or dropped. */
static int ct_lookup_insert(struct ct_table *ct, const struct ct_entry *key, uint64_t now)
{
	size_t h = (key->saddr * 2654435761u ^ key->sport * 40503u) % ct->size;

	for (size_t i = 0; i < 8; i++) {
		struct ct_entry *e = &ct->slots[(h + i) % ct->size];
		if (e->used && e->saddr == key->saddr && e->sport == key->sport &&
		    e->daddr == key->daddr && e->dport == key->dport) {
			e->last_seen_us = now;
			return 1;
		}
		if (!e->used) {
			*e = *key;
			e->used = 1;
			e->last_seen_us = now;
			ct->count++;
			return 0;
		}
	}
	return 0;
}

static void *ct_worker(void *arg)
{
	const unsigned idx = (unsigned)(uintptr_t)arg;

	if (__sync_bool_compare_and_swap(&banner_claimed, 0, 1))
		printf("conntrack: first worker up (timeout %u us)\n", idle_timeout_us);
	for (unsigned long i = 0; i < pkts_per_worker; i++) {
		struct ct_entry key = {
			.saddr = 0x0a000000u | (uint32_t)((i * 11 + idx * 5) % 400),
			.daddr = 0xc0a80001u,
			.sport = (uint16_t)(1024 + i % 7),
			.dport = 443,
		};
		if (g_ct->count > g_ct->size * 3 / 4 && i % 64 == 0) {
			pthread_mutex_lock(&g_ct->lock);
			g_ct->pressure_events++;
			pthread_mutex_unlock(&g_ct->lock);
		}
		pthread_mutex_lock(&g_ct->lock);
		int hit = ct_lookup_insert(g_ct, &key, now_us());
		pthread_mutex_unlock(&g_ct->lock);
		lookups[idx][hit]++;
	}
	return NULL;
}

static void *ct_expiry(void *arg)
{
	(void)arg;
	static unsigned passes; /* EXPECT: thread_private */
	const struct timespec pause = { 0, 50000 };

	/* At least one pass, however the threads are scheduled: what the program prints must not
	 * depend on whether this thread got a CPU before the workers were done. */
	do {
		uint64_t now = now_us();

		pthread_mutex_lock(&g_ct->lock);
		for (size_t i = 0; i < g_ct->size; i++) {
			struct ct_entry *e = &g_ct->slots[i];
			if (e->used && now - e->last_seen_us > idle_timeout_us) {
				e->used = 0;
				g_ct->count--;
				g_ct->expired++;
			}
		}
		pthread_mutex_unlock(&g_ct->lock);
		passes++;
		nanosleep(&pause, NULL);
	} while (!stop_expiry);
	printf("expiry: swept %u times\n", passes);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t workers[MAX_WORKERS], expiry;
	unsigned n_workers = 2;

	if (argc > 1)
		n_workers = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_worker = strtoul(argv[2], NULL, 10);
	if (n_workers < 1 || n_workers > MAX_WORKERS)
		return 2;

	g_ct = calloc(1, sizeof *g_ct + CT_SLOTS * sizeof g_ct->slots[0]); /* EXPECT-HEAP: shared_rw mixed */
	if (!g_ct)
		return 1;
	g_ct->size = CT_SLOTS;
	pthread_mutex_init(&g_ct->lock, NULL);

	pthread_create(&expiry, NULL, ct_expiry, NULL);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_create(&workers[i], NULL, ct_worker, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	stop_expiry = 1;
	pthread_join(expiry, NULL);

	unsigned long hits = 0, misses = 0;
	for (unsigned i = 0; i < n_workers; i++) {
		hits += lookups[i][1];
		misses += lookups[i][0];
	}
	printf("pt_conntrack_expiry: hits=%lu misses=%lu live=%zu expired=%llu\n", hits, misses,
	       g_ct->count, (unsigned long long)g_ct->expired);
	pthread_mutex_destroy(&g_ct->lock);
	free(g_ct);
	return 0;
}

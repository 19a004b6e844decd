// ftmb-corpus: style=pthread args="3 1500" output=racy
/*
 * Source NAT over synthesized packets with one mutex-protected translation table.
 *
 * Exercises: lock wrappers (table_lock/table_unlock call pthread_mutex_lock/unlock); the lock is
 * taken in the caller and the table accessed in a callee and through a returned entry pointer; a
 * static local updated under the caller's lock; a port allocator under the lock; per-thread
 * statistics in a calloc'd array stored in a global pointer, selected through a local pointer
 * derived from the thread index passed as the thread argument; configuration written before
 * pthread_create.
 *
 * Usage: pt_nat_mutex [THREADS [PACKETS_PER_THREAD]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NAT_SLOTS 512
#define MAX_PROBES 16
#define MAX_THREADS 8

struct nat_entry {
	uint32_t int_ip;
	uint16_t int_port;
	uint16_t ext_port;
	uint8_t used;
	unsigned long hits;
};

struct thread_stats {
	unsigned long translated, created, failed;
	uint32_t checksum;
};

static pthread_mutex_t nat_mutex = PTHREAD_MUTEX_INITIALIZER; /* EXPECT: shared_rw atomic */
static struct nat_entry nat_table[NAT_SLOTS]; /* EXPECT: shared_rw lock lock=nat_mutex */
static uint16_t next_ext_port = 20000; /* EXPECT: shared_rw lock lock=nat_mutex */
static uint32_t public_ip; /* EXPECT: shared_ro */
static unsigned nb_threads = 2; /* EXPECT: shared_ro */
static unsigned long pkts_per_thread = 1000; /* EXPECT: shared_ro */
static struct thread_stats *tstats; /* EXPECT: shared_ro */
static int verbose; /* EXPECT: thread_private */

static void table_lock(void)
{
	pthread_mutex_lock(&nat_mutex);
}

static void table_unlock(void)
{
	pthread_mutex_unlock(&nat_mutex);
}

static unsigned flow_hash(uint32_t ip, uint16_t port)
{
	uint32_t h = ip * 2654435761u ^ (uint32_t)port * 40503u;
	return (h ^ (h >> 15)) % NAT_SLOTS;
}

/* The caller holds nat_mutex. */
static struct nat_entry *nat_find_or_create(uint32_t ip, uint16_t port, int *created)
{
	static unsigned long full_warnings; /* EXPECT: shared_rw lock lock=nat_mutex */
	unsigned h = flow_hash(ip, port);

	for (unsigned i = 0; i < MAX_PROBES; i++) {
		struct nat_entry *e = &nat_table[(h + i) % NAT_SLOTS];

		if (e->used && e->int_ip == ip && e->int_port == port)
			return e;
		if (!e->used) {
			e->used = 1;
			e->int_ip = ip;
			e->int_port = port;
			e->ext_port = next_ext_port++;
			*created = 1;
			return e;
		}
	}
	if (full_warnings++ == 0)
		printf("nat table: probe limit reached\n");
	return NULL;
}

static void *nat_worker(void *arg)
{
	unsigned idx = (unsigned)(uintptr_t)arg;
	struct thread_stats *st = &tstats[idx];

	for (unsigned long i = 0; i < pkts_per_thread; i++) {
		uint32_t ip = 0x0a000000u | (uint32_t)((i * 7 + idx) % 200);
		uint16_t port = (uint16_t)(1024 + (i * nb_threads + idx) % 50);
		int created = 0;
		uint16_t ext = 0;

		table_lock();
		struct nat_entry *e = nat_find_or_create(ip, port, &created);
		if (e) {
			ext = e->ext_port;
			e->hits++;
		}
		table_unlock();

		if (!e) {
			st->failed++;
			continue;
		}
		st->translated++;
		st->created += (unsigned long)created;
		st->checksum += public_ip ^ ext;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[MAX_THREADS];

	if (argc > 1)
		nb_threads = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_thread = strtoul(argv[2], NULL, 10);
	verbose = getenv("NAT_VERBOSE") != NULL;
	if (nb_threads < 1 || nb_threads > MAX_THREADS)
		return 2;
	public_ip = 0xcb007101u;
	tstats = calloc(nb_threads, sizeof *tstats); /* EXPECT-HEAP: per_core */
	if (!tstats)
		return 1;

	for (unsigned i = 0; i < nb_threads; i++)
		pthread_create(&threads[i], NULL, nat_worker, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < nb_threads; i++)
		pthread_join(threads[i], NULL);

	unsigned long translated = 0, created = 0, used = 0;
	for (unsigned i = 0; i < nb_threads; i++) {
		translated += tstats[i].translated;
		created += tstats[i].created;
		if (verbose)
			printf("thread %u: translated=%lu failed=%lu\n", i, tstats[i].translated,
			       tstats[i].failed);
	}
	for (unsigned i = 0; i < NAT_SLOTS; i++)
		used += nat_table[i].used;
	printf("pt_nat_mutex: translated=%lu created=%lu entries=%lu next_port=%u\n", translated,
	       created, used, next_ext_port);
	free(tstats);
	return 0;
}

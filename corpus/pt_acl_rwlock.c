// ftmb-corpus: style=pthread args="3 3000"
/*
 * Access-control list whose rules a control thread rewrites while the workers filter packets.
 *
 * Exercises: pthread_rwlock (workers read-lock, the control thread write-locks); a rule-set version
 * written under the write lock but polled by the workers without it (mixed); a C11 atomic_bool stop
 * flag stored by main between the joins and read by the control thread and the workers; per-thread
 * hit counters indexed by the thread index passed as the thread argument; clock_gettime on the
 * packet path; a counter used by the single control thread only.
 *
 * Usage: pt_acl_rwlock [WORKERS [PACKETS_PER_WORKER]]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_RULES 16
#define MAX_WORKERS 8

enum { ACT_ALLOW, ACT_DENY };

struct rule {
	uint32_t prefix, mask;
	uint16_t dport;
	uint8_t action;
};

static pthread_rwlock_t acl_lock = PTHREAD_RWLOCK_INITIALIZER; /* EXPECT: shared_rw atomic */
static struct rule acl[MAX_RULES]; /* EXPECT: shared_rw lock lock=acl_lock */
static unsigned acl_len; /* EXPECT: shared_rw lock lock=acl_lock */
static unsigned acl_version; /* EXPECT: shared_rw mixed */
static atomic_bool stop; /* EXPECT: shared_rw atomic */
static unsigned long hits[MAX_WORKERS][2]; /* EXPECT: per_core */
static unsigned long version_changes[MAX_WORKERS]; /* EXPECT: per_core */
static unsigned long pkts_per_worker = 1000; /* EXPECT: shared_ro */
static unsigned ctl_rounds; /* EXPECT: thread_private */

static uint8_t acl_match(uint32_t src, uint16_t dport)
{
	uint8_t action = ACT_ALLOW;

	pthread_rwlock_rdlock(&acl_lock);
	for (unsigned i = 0; i < acl_len; i++) {
		if ((src & acl[i].mask) == acl[i].prefix && (acl[i].dport == 0 || acl[i].dport == dport)) {
			action = acl[i].action;
			break;
		}
	}
	pthread_rwlock_unlock(&acl_lock);
	return action;
}

static void *acl_worker(void *arg)
{
	const unsigned idx = (unsigned)(uintptr_t)arg;
	unsigned seen_version = 0;
	struct timespec ts;

	for (unsigned long i = 0; i < pkts_per_worker && !atomic_load(&stop); i++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint32_t src = 0x0a000000u | (uint32_t)((i * 31 + (unsigned long)ts.tv_nsec) & 0xffff);
		uint16_t dport = (uint16_t)(i % 3 == 0 ? 22 : 443);

		hits[idx][acl_match(src, dport)]++;
		if (acl_version != seen_version) {
			seen_version = acl_version;
			version_changes[idx]++;
		}
	}
	return NULL;
}

static void *acl_control(void *arg)
{
	(void)arg;
	const struct timespec pause = { 0, 20000 };

	/* At least one round, however the threads are scheduled: what the program prints must not
	 * depend on whether this thread got a CPU before the workers were done. */
	do {
		pthread_rwlock_wrlock(&acl_lock);
		acl[0].dport = acl[0].dport == 22 ? 2222 : 22;
		if (acl_len < MAX_RULES) {
			acl[acl_len].prefix = 0x0a000000u | ((ctl_rounds & 0xff) << 8);
			acl[acl_len].mask = 0xffffff00u;
			acl[acl_len].dport = 0;
			acl[acl_len].action = ACT_DENY;
			acl_len++;
		}
		acl_version++;
		pthread_rwlock_unlock(&acl_lock);
		ctl_rounds++;
		nanosleep(&pause, NULL);
	} while (!atomic_load(&stop));
	printf("control: rules rotated %u times\n", ctl_rounds);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t workers[MAX_WORKERS], control;
	unsigned n_workers = 2;

	if (argc > 1)
		n_workers = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_worker = strtoul(argv[2], NULL, 10);
	if (n_workers < 1 || n_workers > MAX_WORKERS)
		return 2;

	acl[0] = (struct rule){ .prefix = 0x0a000000u, .mask = 0xff000000u, .dport = 22, .action = ACT_DENY };
	acl_len = 1;

	pthread_create(&control, NULL, acl_control, NULL);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_create(&workers[i], NULL, acl_worker, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	atomic_store(&stop, true);
	pthread_join(control, NULL);

	unsigned long allowed = 0, denied = 0;
	for (unsigned i = 0; i < n_workers; i++) {
		allowed += hits[i][ACT_ALLOW];
		denied += hits[i][ACT_DENY];
	}
	printf("pt_acl_rwlock: allowed=%lu denied=%lu rules=%u\n", allowed, denied, acl_len);
	return 0;
}

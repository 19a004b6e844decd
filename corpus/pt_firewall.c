// ftmb-corpus: style=pthread args="4 2000" output=racy
/*
 * Stateless port firewall over synthesized packets.
 *
 * Exercises: run-to-completion pthread workers, each with its own &args[i] (global array);
 * a volatile stop flag set by a SIGINT handler; global statistics bumped through a macro and read by
 * main only after the join; a read-only port list; _Thread_local PRNG state seeded from time();
 * a racy "report once" static local on the packet path; variables used by main only.
 *
 * Usage: pt_firewall [THREADS [PACKETS_PER_THREAD]]
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_WORKERS 8
#define STAT_INC(field) (fw_stats.field++)

struct pkt {
	uint32_t src, dst;
	uint16_t sport, dport;
	uint8_t proto;
	uint16_t len;
};

struct fw_counters {
	unsigned long passed, dropped, bytes;
};

struct worker_arg {
	unsigned id;
	unsigned long budget;
	unsigned long seen;
	unsigned long blocked;
};

static const uint16_t blocked_ports[] = { 23, 135, 445, 3389 }; /* EXPECT: shared_ro */
static unsigned n_workers = 2; /* EXPECT: shared_ro */
static unsigned long pkts_per_worker = 1000; /* EXPECT: thread_private */
static volatile sig_atomic_t stop_requested; /* EXPECT: shared_rw unprotected */
static struct fw_counters fw_stats; /* EXPECT: shared_rw unprotected commutative */
static struct worker_arg args[MAX_WORKERS]; /* EXPECT: per_core */
static pthread_t threads[MAX_WORKERS]; /* EXPECT: thread_private */
static _Thread_local uint32_t rng_state; /* EXPECT: per_core */

static void on_sigint(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint32_t next_random(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void synthesize(struct pkt *p, const struct worker_arg *a)
{
	uint32_t r = next_random();

	p->src = 0x0a000000u | (a->id + (uint32_t)a->seen * n_workers);
	p->dst = 0xc0a80100u | (r & 0xff);
	p->sport = (uint16_t)(1024 + (r >> 8) % 30000);
	p->dport = (uint16_t)((r >> 20) % 4 == 0 ? blocked_ports[(r >> 24) % 4] : 80 + (r >> 24) % 8);
	p->proto = (r & 0x300) ? 6 : 1;
	p->len = (uint16_t)(64 + (r >> 12) % 1400);
}

static int is_blocked(const struct pkt *p)
{
	for (size_t i = 0; i < sizeof blocked_ports / sizeof blocked_ports[0]; i++)
		if (p->dport == blocked_ports[i])
			return 1;
	return p->proto == 1 && p->len > 1000;
}

static void note_first_drop(unsigned worker, const struct pkt *p)
{
	static int reported; /* EXPECT: shared_rw unprotected */

	if (!reported) {
		reported = 1;
		printf("first drop seen by worker %u (dport %u)\n", worker, p->dport);
	}
}

static void *fw_worker(void *opaque)
{
	struct worker_arg *a = opaque;

	rng_state = ((uint32_t)time(NULL) ^ (a->id * 2654435761u)) | 1u;
	while (!stop_requested && a->seen < a->budget) {
		struct pkt p;

		synthesize(&p, a);
		a->seen++;
		if (is_blocked(&p)) {
			STAT_INC(dropped);
			a->blocked++;
			note_first_drop(a->id, &p);
		} else {
			STAT_INC(passed);
			fw_stats.bytes += p.len;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		n_workers = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_worker = strtoul(argv[2], NULL, 10);
	if (n_workers < 1 || n_workers > MAX_WORKERS) {
		fprintf(stderr, "threads must be 1..%d\n", MAX_WORKERS);
		return 2;
	}
	signal(SIGINT, on_sigint);

	for (unsigned i = 0; i < n_workers; i++) {
		args[i].id = i;
		args[i].budget = pkts_per_worker;
		if (pthread_create(&threads[i], NULL, fw_worker, &args[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(threads[i], NULL);

	unsigned long blocked = 0;
	for (unsigned i = 0; i < n_workers; i++)
		blocked += args[i].blocked;
	printf("pt_firewall: passed=%lu dropped=%lu bytes=%lu blocked_by_workers=%lu\n",
	       fw_stats.passed, fw_stats.dropped, fw_stats.bytes, blocked);
	return 0;
}

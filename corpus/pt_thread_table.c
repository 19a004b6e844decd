// ftmb-corpus: style=pthread args="4000"
/*
 * Flow emitter and scanner started from a table of thread functions, in the style of older
 * monitoring daemons: the thread functions are declared and defined K&R style (no prototypes),
 * their addresses sit in a static `void *` table inside main, which starts every entry in a loop.
 *
 * Exercises: thread roots reached only through a static local `void *` table of K&R functions; a ring shared
 * by the two threads under one mutex; a packet budget set before the spawn; the scanner's alert
 * count returned through pthread_join.
 *
 * Usage: pt_thread_table [PACKETS]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define RING 256
#define NTHREADS 2

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER; /* EXPECT: shared_rw atomic */
static uint32_t ring[RING]; /* EXPECT: shared_rw lock lock=ring_lock */
static unsigned ring_head; /* EXPECT: shared_rw lock lock=ring_lock */
static unsigned ring_tail; /* EXPECT: shared_rw lock lock=ring_lock */
static int emit_done; /* EXPECT: shared_rw lock lock=ring_lock */
static unsigned long budget = 1000; /* EXPECT: shared_ro */

void *emit_thread();
void *scan_thread();

int main(int argc, char **argv)
{
	static void *threads[NTHREADS] = {&emit_thread, &scan_thread}; /* EXPECT: thread_private */
	pthread_t tid[NTHREADS];
	pthread_attr_t attr;
	void *alerts = 0;
	int i;

	if (argc > 1)
		budget = strtoul(argv[1], NULL, 10);
	pthread_attr_init(&attr);
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&tid[i], &attr, threads[i], 0) != 0)
			return 1;
	pthread_join(tid[0], 0);
	pthread_join(tid[1], &alerts);
	pthread_attr_destroy(&attr);
	printf("pt_thread_table: packets=%lu alerts=%lu\n", budget, (unsigned long)(uintptr_t)alerts);
	return 0;
}

void *emit_thread()
{
	unsigned long sent = 0;
	uint32_t flow = 2166136261u;

	while (sent < budget) {
		flow = (flow ^ (uint32_t)sent) * 16777619u;
		pthread_mutex_lock(&ring_lock);
		if (ring_head - ring_tail < RING) {
			ring[ring_head % RING] = flow;
			ring_head++;
			sent++;
		}
		pthread_mutex_unlock(&ring_lock);
	}
	pthread_mutex_lock(&ring_lock);
	emit_done = 1;
	pthread_mutex_unlock(&ring_lock);
	return 0;
}

void *scan_thread()
{
	unsigned long alerts = 0;

	for (;;) {
		uint32_t flow = 0;
		int have = 0, done;

		pthread_mutex_lock(&ring_lock);
		if (ring_tail != ring_head) {
			flow = ring[ring_tail % RING];
			ring_tail++;
			have = 1;
		}
		done = emit_done && ring_tail == ring_head;
		pthread_mutex_unlock(&ring_lock);
		if (have) {
			if ((flow & 0xff) == 0x2a)
				alerts++;
		} else if (done) {
			break;
		}
	}
	return (void *)(uintptr_t)alerts;
}

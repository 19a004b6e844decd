// ftmb-corpus: style=pthread args="3000"
/*
 * Two-stage pipeline started stage by stage, in the style of DPDK's packet_ordering: main starts
 * the worker threads in a loop, then sets the transmit stage's batch size, then starts the
 * transmit thread. The launch orders main's write before everything the transmit thread does,
 * and the workers, already running, never touch the batch size: it is read-only to the threads.
 *
 * Exercises: a write by main between two launches that only the later-launched thread reads
 * (`tx_batch`, shared_ro); a write by main inside the spawn loop, before the spawn call in the
 * loop body, that threads started in earlier iterations read (`started`, shared_rw); a queue
 * under one mutex; a counter only the transmit thread writes, read by main after the join.
 *
 * Usage: pt_staged_start [PACKETS_PER_WORKER]
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NWORKERS 2
#define QSIZE 128

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER; /* EXPECT: shared_rw atomic */
static unsigned long queue[QSIZE]; /* EXPECT: shared_rw lock lock=q_lock */
static unsigned q_head; /* EXPECT: shared_rw lock lock=q_lock */
static unsigned q_tail; /* EXPECT: shared_rw lock lock=q_lock */
static unsigned workers_done; /* EXPECT: shared_rw lock lock=q_lock */
static unsigned long budget = 1000; /* EXPECT: shared_ro */
static unsigned started; /* EXPECT: shared_rw atomic */
static unsigned long tx_batch; /* EXPECT: shared_ro */
static unsigned long tx_batches; /* EXPECT: thread_private */

static void *worker_main(void *arg)
{
	unsigned long id = (unsigned long)(uintptr_t)arg;
	unsigned long i = 0;

	/* wait until main is starting the last worker */
	while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < NWORKERS - 1)
		sched_yield();
	while (i < budget) {
		int full;

		pthread_mutex_lock(&q_lock);
		full = q_head - q_tail >= QSIZE;
		if (!full) {
			queue[q_head % QSIZE] = id * budget + i;
			q_head++;
			i++;
		}
		pthread_mutex_unlock(&q_lock);
		if (full)
			sched_yield();
	}
	pthread_mutex_lock(&q_lock);
	workers_done++;
	pthread_mutex_unlock(&q_lock);
	return NULL;
}

static void *tx_main(void *unused)
{
	unsigned long got = 0, in_batch = 0;

	(void)unused;
	for (;;) {
		int empty, done;

		pthread_mutex_lock(&q_lock);
		empty = q_head == q_tail;
		done = workers_done == NWORKERS;
		if (!empty) {
			got += queue[q_tail % QSIZE] != ~0ul;
			q_tail++;
		}
		pthread_mutex_unlock(&q_lock);
		if (!empty) {
			if (++in_batch == tx_batch) {
				tx_batches++;
				in_batch = 0;
			}
		} else if (done) {
			break;
		} else {
			sched_yield();
		}
	}
	if (in_batch)
		tx_batches++;
	return (void *)(uintptr_t)got;
}

int main(int argc, char **argv)
{
	pthread_t workers[NWORKERS], tx;
	void *got = NULL;
	unsigned i;

	if (argc > 1)
		budget = strtoul(argv[1], NULL, 10);
	for (i = 0; i < NWORKERS; i++) {
		__atomic_store_n(&started, i, __ATOMIC_RELEASE);
		if (pthread_create(&workers[i], NULL, worker_main, (void *)(uintptr_t)i) != 0)
			return 1;
	}
	/* the workers run already; the transmit thread, which alone reads the batch size, starts next */
	tx_batch = budget / 8 + 1;
	if (pthread_create(&tx, NULL, tx_main, NULL) != 0)
		return 1;
	for (i = 0; i < NWORKERS; i++)
		pthread_join(workers[i], NULL);
	pthread_join(tx, &got);
	printf("pt_staged_start: packets=%lu batch=%lu batches=%lu\n", (unsigned long)(uintptr_t)got, tx_batch,
	       tx_batches);
	return 0;
}

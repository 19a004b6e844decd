// ftmb-corpus: style=pthread args="3 4000" output=racy
/*
 * Traffic monitor that samples packets into a shared top-talker table; a control thread retunes the
 * sampling rate while the workers run.
 *
 * Exercises: one context struct on main's stack shared by every thread, all of its fields guarded
 * by the mutex inside it (lock=monitor_ctx::lock); per-thread argument structs on main's stack
 * (&wargs[i]); workers started through a function pointer variable; run-time configuration written
 * by the control thread and read by the workers without synchronization (a race); a counter bumped
 * atomically by the workers but read plainly by the control thread (mixed); a "done" flag written by
 * main between the joins; a static local of the single control thread; clock_gettime.
 *
 * Usage: pt_monitor_ctl [WORKERS [PACKETS_PER_WORKER]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 8

struct monitor_ctx {
	pthread_mutex_t lock;
	unsigned long sampled, bytes;
	unsigned long per_src[256];
	uint32_t top_src;
	unsigned long top_count;
};

struct worker_arg {
	struct monitor_ctx *ctx;
	unsigned id;
	unsigned long seen;
};

static void *monitor_worker(void *arg);

static unsigned sample_every = 4; /* EXPECT: shared_rw unprotected */
static unsigned long total_seen; /* EXPECT: shared_rw mixed */
static unsigned long pkts_per_worker = 2000; /* EXPECT: shared_ro */
static volatile int workers_done; /* EXPECT: shared_rw unprotected */
static void *(*worker_entry)(void *) = monitor_worker; /* EXPECT: thread_private */

static void *monitor_worker(void *arg)
{
	struct worker_arg *wa = arg;
	struct monitor_ctx *c = wa->ctx;

	for (unsigned long i = 0; i < pkts_per_worker; i++) {
		uint32_t src = 0x0a000000u | (uint32_t)((i * i + wa->id * 97) % 1000);
		unsigned len = 64 + (unsigned)(i % 1400);

		__atomic_fetch_add(&total_seen, 1, __ATOMIC_RELAXED);
		wa->seen++;
		if (i % sample_every != 0)
			continue;

		pthread_mutex_lock(&c->lock);
		c->sampled++;
		c->bytes += len;
		unsigned long n = ++c->per_src[src & 0xff];
		if (n > c->top_count) {
			c->top_count = n;
			c->top_src = src;
		}
		pthread_mutex_unlock(&c->lock);
	}
	return NULL;
}

static void *monitor_control(void *arg)
{
	struct monitor_ctx *c = arg;
	static unsigned adjustments; /* EXPECT: thread_private */
	struct timespec now, pause = { 0, 20000 };

	/* At least one round, however the threads are scheduled: what the program prints must not
	 * depend on whether this thread got a CPU before the workers were done. */
	do {
		unsigned long seen = total_seen;

		pthread_mutex_lock(&c->lock);
		unsigned long top = c->top_count;
		pthread_mutex_unlock(&c->lock);

		clock_gettime(CLOCK_MONOTONIC, &now);
		unsigned want = top > 50 ? 8 : 2 + (unsigned)((seen ^ (unsigned long)now.tv_nsec) & 1);
		if (want != sample_every) {
			sample_every = want;
			adjustments++;
		}
		nanosleep(&pause, NULL);
	} while (!workers_done);
	printf("control: sampling rate retuned %u times\n", adjustments);
	return NULL;
}

int main(int argc, char **argv)
{
	struct monitor_ctx ctx; /* EXPECT-STACK: shared_rw lock lock=monitor_ctx::lock */
	struct worker_arg wargs[MAX_WORKERS]; /* EXPECT-STACK: per_core */
	pthread_t threads[MAX_WORKERS], control;
	unsigned n_workers = 2;

	if (argc > 1)
		n_workers = (unsigned)atoi(argv[1]);
	if (argc > 2)
		pkts_per_worker = strtoul(argv[2], NULL, 10);
	if (n_workers < 1 || n_workers > MAX_WORKERS)
		return 2;

	memset(&ctx, 0, sizeof ctx);
	pthread_mutex_init(&ctx.lock, NULL);
	pthread_create(&control, NULL, monitor_control, &ctx);
	for (unsigned i = 0; i < n_workers; i++) {
		wargs[i] = (struct worker_arg){ .ctx = &ctx, .id = i, .seen = 0 };
		pthread_create(&threads[i], NULL, worker_entry, &wargs[i]);
	}
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(threads[i], NULL);
	workers_done = 1;
	pthread_join(control, NULL);

	unsigned long seen = 0;
	for (unsigned i = 0; i < n_workers; i++)
		seen += wargs[i].seen;
	printf("pt_monitor_ctl: seen=%lu total=%lu sampled=%lu bytes=%lu top_src=%08x\n", seen,
	       total_seen, ctx.sampled, ctx.bytes, (unsigned)ctx.top_src);
	pthread_mutex_destroy(&ctx.lock);
	return 0;
}

// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="-r 500000 -n 80"
/*
 * Aggregate rate limiter: one token bucket shared by every worker, refilled by main from the TSC
 * while the workers run; packets without a token are dropped.
 *
 * Exercises: rte_atomic64 tokens taken with a compare-and-set loop by the workers and refilled by
 * main concurrently; an rte_atomic64 drop counter read by main only after the wait (commutative);
 * a SIGUSR1 handler (installed with sigaction) that sets a flag polled by main and keeps a counter
 * of its own; a static local of the refill routine that only main runs; RTE_PER_LCORE counters
 * copied into a per-lcore array; rte_rdtsc and rte_get_tsc_hz.
 *
 * Usage: dp_ratelimit [EAL args] -- [-r PPS] [-n BURSTS_PER_LCORE]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_atomic.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_per_lcore.h>

#define BURST 32
#define BUCKET_DEPTH 512

static rte_atomic64_t tokens; /* EXPECT: shared_rw atomic */
static rte_atomic64_t dropped; /* EXPECT: shared_rw atomic commutative */
static uint64_t rate_pps = 1000000; /* EXPECT: shared_ro */
static unsigned bursts_per_lcore = 50; /* EXPECT: shared_ro */
static volatile sig_atomic_t dump_requested; /* EXPECT: shared_rw unprotected */
static unsigned long signals_seen; /* EXPECT: thread_private */
static RTE_DEFINE_PER_LCORE(uint64_t, passed); /* EXPECT: per_core */
static uint64_t passed_by_lcore[RTE_MAX_LCORE]; /* EXPECT: per_core */

static void on_sigusr1(int sig)
{
	(void)sig;
	signals_seen++;
	dump_requested = 1;
}

static int take_token(void)
{
	for (;;) {
		int64_t cur = rte_atomic64_read(&tokens);
		if (cur <= 0)
			return 0;
		if (rte_atomic64_cmpset((volatile uint64_t *)&tokens.cnt, (uint64_t)cur, (uint64_t)(cur - 1)))
			return 1;
	}
}

/* Run by main only, between the launch and the wait. */
static void refill(void)
{
	static uint64_t last_tsc; /* EXPECT: thread_private */
	uint64_t now = rte_rdtsc();

	if (last_tsc != 0) {
		uint64_t add = (now - last_tsc) * rate_pps / rte_get_tsc_hz();
		if (add > BUCKET_DEPTH)
			add = BUCKET_DEPTH;
		if (rte_atomic64_read(&tokens) < BUCKET_DEPTH)
			rte_atomic64_add(&tokens, (int64_t)add);
	}
	last_tsc = now;
}

static int limiter_loop(void *arg)
{
	(void)arg;
	const uint16_t queue = (uint16_t)(rte_lcore_index(-1) - 1);
	struct rte_mbuf *bufs[BURST];
	/* Never take more than one burst's worth per poll at low rates. */
	const unsigned cap = rate_pps < 100000 ? 4 : BURST;

	for (unsigned b = 0; b < bursts_per_lcore; b++) {
		uint16_t n = rte_eth_rx_burst(0, queue, bufs, BURST);
		uint16_t keep = 0;
		for (uint16_t i = 0; i < n; i++) {
			if (keep < cap && take_token()) {
				bufs[keep++] = bufs[i];
				RTE_PER_LCORE(passed)++;
			} else {
				rte_atomic64_inc(&dropped);
				rte_pktmbuf_free(bufs[i]);
			}
		}
		uint16_t sent = rte_eth_tx_burst(0, queue, bufs, keep);
		for (uint16_t i = sent; i < keep; i++)
			rte_pktmbuf_free(bufs[i]);
		rte_delay_us_sleep(20);
	}
	passed_by_lcore[rte_lcore_id()] = RTE_PER_LCORE(passed);
	return 0;
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf = { 0 };
	struct sigaction sa;
	int ret = rte_eal_init(argc, argv), opt;

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	argc -= ret;
	argv += ret;
	while ((opt = getopt(argc, argv, "r:n:")) != -1) {
		if (opt == 'r')
			rate_pps = strtoull(optarg, NULL, 10);
		else if (opt == 'n')
			bursts_per_lcore = (unsigned)atoi(optarg);
		else
			rte_exit(EXIT_FAILURE, "usage: dp_ratelimit [EAL] -- [-r PPS] [-n BURSTS]\n");
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigusr1;
	sigaction(SIGUSR1, &sa, NULL);

	uint16_t nq = (uint16_t)(rte_lcore_count() - 1);
	struct rte_mempool *pool = rte_pktmbuf_pool_create("mbufs", 2047, 32, 0,
							    RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool || nq == 0 || rte_eth_dev_configure(0, nq, nq, &conf) < 0)
		rte_exit(EXIT_FAILURE, "port setup\n");
	for (uint16_t q = 0; q < nq; q++)
		if (rte_eth_rx_queue_setup(0, q, 128, rte_socket_id(), NULL, pool) < 0 ||
		    rte_eth_tx_queue_setup(0, q, 128, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "queue setup\n");
	if (rte_eth_dev_start(0) < 0)
		rte_exit(EXIT_FAILURE, "start\n");
	rte_atomic64_init(&tokens);
	rte_atomic64_set(&tokens, BUCKET_DEPTH / 4);
	rte_atomic64_init(&dropped);

	rte_eal_mp_remote_launch(limiter_loop, NULL, SKIP_MAIN);
	unsigned lcore;
	for (;;) {
		int running = 0;
		RTE_LCORE_FOREACH_WORKER(lcore)
			running |= rte_eal_get_lcore_state(lcore) == RUNNING;
		if (!running)
			break;
		refill();
		if (dump_requested) {
			dump_requested = 0;
			printf("tokens now %lld\n", (long long)rte_atomic64_read(&tokens));
		}
		rte_delay_us_sleep(50);
	}
	rte_eal_mp_wait_lcore();

	uint64_t passed = 0;
	RTE_LCORE_FOREACH_WORKER(lcore)
		passed += passed_by_lcore[lcore];
	printf("dp_ratelimit: passed=%llu dropped=%lld\n", (unsigned long long)passed,
	       (long long)rte_atomic64_read(&dropped));
	rte_eth_dev_stop(0);
	rte_eal_cleanup();
	return 0;
}

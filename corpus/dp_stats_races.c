// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="100 1"
/*
 * Burst-statistics collector written the way real code often is: some counters racy, some locked,
 * one checked without the lock and then updated under it.
 *
 * Exercises: rte_eal_mp_remote_launch(CALL_MAIN) (main's lcore runs the worker too); a global
 * counter bumped with += by every lcore and read after the wait (a commutative race); counters bumped
 * through a macro; a timestamp read and written by every lcore (a race that is not commutative);
 * a maximum tested without the lock and updated under it (mixed); a histogram only touched under the
 * lock; a static local sequence number on the packet path; a per-lcore array where each lcore also
 * reads its neighbour's slot (therefore shared, not per-core) next to a truly per-lcore one;
 * configuration from argv; rte_rdtsc.
 *
 * Usage: dp_stats_races [EAL args] -- [BURSTS_PER_LCORE [DEBUG_LEVEL]]
 */
#include <stdio.h>
#include <stdlib.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>

#define BURST 32
#define COUNT(field) (counters.field++)

struct app_counters {
	uint64_t polls, empty_polls, stamped;
};

static uint64_t total_pkts; /* EXPECT: shared_rw unprotected commutative */
static struct app_counters counters; /* EXPECT: shared_rw unprotected commutative */
static uint64_t last_burst_tsc; /* EXPECT: shared_rw unprotected */
static uint16_t max_burst_seen; /* EXPECT: shared_rw mixed */
static rte_spinlock_t stats_lock = RTE_SPINLOCK_INITIALIZER; /* EXPECT: shared_rw atomic */
static uint64_t burst_hist[BURST + 1]; /* EXPECT: shared_rw lock lock=stats_lock commutative */
static uint64_t lcore_load[RTE_MAX_LCORE]; /* EXPECT: shared_rw unprotected */
static uint64_t lcore_backoffs[RTE_MAX_LCORE]; /* EXPECT: per_core */
static unsigned bursts_per_lcore = 100; /* EXPECT: shared_ro */
static int debug_level; /* EXPECT: shared_ro */

static void stamp(struct rte_mbuf *m)
{
	static uint32_t seq; /* EXPECT: shared_rw unprotected */

	m->hash.usr = seq++;
	COUNT(stamped);
}

static void record_burst(uint16_t n)
{
	if (n > max_burst_seen) {
		rte_spinlock_lock(&stats_lock);
		if (n > max_burst_seen)
			max_burst_seen = n;
		rte_spinlock_unlock(&stats_lock);
	}
	rte_spinlock_lock(&stats_lock);
	burst_hist[n]++;
	rte_spinlock_unlock(&stats_lock);
}

static int stats_worker(void *arg)
{
	(void)arg;
	const unsigned lcore = rte_lcore_id();
	const unsigned peer = rte_get_next_lcore(lcore, 0, 1);
	const uint16_t queue = (uint16_t)rte_lcore_index((int)lcore);
	struct rte_mbuf *bufs[BURST];

	for (unsigned b = 0; b < bursts_per_lcore; b++) {
		uint16_t want = (uint16_t)(1 + (b * 7 + lcore) % BURST);
		uint16_t n = rte_eth_rx_burst(0, queue, bufs, want);

		COUNT(polls);
		if (n == 0) {
			COUNT(empty_polls);
			continue;
		}
		uint64_t now = rte_rdtsc();
		uint64_t gap = last_burst_tsc ? now - last_burst_tsc : 0;
		last_burst_tsc = now;
		if (debug_level > 1 && b % 50 == 0)
			printf("lcore %u: gap since any burst %llu cycles\n", lcore, (unsigned long long)gap);

		for (uint16_t i = 0; i < n; i++)
			stamp(bufs[i]);
		total_pkts += n;
		record_burst(n);
		lcore_load[lcore] += n;
		if (peer != lcore && lcore_load[peer] * 2 < lcore_load[lcore])
			lcore_backoffs[lcore]++;
		rte_pktmbuf_free_bulk(bufs, n);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf = { 0 };
	int ret = rte_eal_init(argc, argv);

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	if (argc - ret > 1)
		bursts_per_lcore = (unsigned)atoi(argv[ret + 1]);
	if (argc - ret > 2)
		debug_level = atoi(argv[ret + 2]);

	uint16_t nq = (uint16_t)rte_lcore_count();
	struct rte_mempool *pool = rte_pktmbuf_pool_create("mbufs", 2047, 32, 0,
							    RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool || rte_eth_dev_configure(0, nq, nq, &conf) < 0)
		rte_exit(EXIT_FAILURE, "port setup\n");
	for (uint16_t q = 0; q < nq; q++)
		if (rte_eth_rx_queue_setup(0, q, 128, rte_socket_id(), NULL, pool) < 0 ||
		    rte_eth_tx_queue_setup(0, q, 128, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "queue setup\n");
	if (rte_eth_dev_start(0) < 0)
		rte_exit(EXIT_FAILURE, "start\n");

	rte_eal_mp_remote_launch(stats_worker, NULL, CALL_MAIN);
	rte_eal_mp_wait_lcore();

	uint64_t backoffs = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH(lcore)
		backoffs += lcore_backoffs[lcore];
	printf("dp_stats_races: pkts=%llu polls=%llu empty=%llu max_burst=%u full_bursts=%llu backoffs=%llu\n",
	       (unsigned long long)total_pkts, (unsigned long long)counters.polls,
	       (unsigned long long)counters.empty_polls, max_burst_seen,
	       (unsigned long long)burst_hist[BURST], (unsigned long long)backoffs);
	if (debug_level > 0)
		printf("stamped=%llu\n", (unsigned long long)counters.stamped);
	rte_eth_dev_stop(0);
	rte_eal_cleanup();
	return 0;
}

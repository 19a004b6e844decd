// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="150"
/*
 * Flow tracker: a global flow table split into buckets, each bucket guarded by one of a few
 * striped rte_spinlocks; new and evicted flows counted with rte_atomic32.
 *
 * Exercises: a lock array (lock=stripe_locks[]) taken by the caller while a helper walks the bucket;
 * rte_atomic32_inc on a counter read by main only (commutative) and rte_atomic32_add_return whose
 * result is used on the packet path; RTE_PER_LCORE packet counts copied into a per-lcore array at
 * the end; flow keys and eviction victims drawn with rte_rand; rte_rdtsc timestamps.
 *
 * Usage: dp_flow_stripes [EAL args] -- [BURSTS_PER_LCORE]
 */
#include <stdio.h>
#include <stdlib.h>

#include <rte_atomic.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_per_lcore.h>
#include <rte_random.h>
#include <rte_spinlock.h>

#define BURST 32
#define FLOW_BUCKETS 256
#define WAYS 4
#define LOCK_STRIPES 16

struct flow {
	uint64_t key;
	uint64_t pkts;
	uint64_t last_tsc;
};

static rte_spinlock_t stripe_locks[LOCK_STRIPES]; /* EXPECT: shared_rw atomic */
static struct flow flow_table[FLOW_BUCKETS][WAYS]; /* EXPECT: shared_rw lock lock=stripe_locks[] */
static rte_atomic32_t new_flows; /* EXPECT: shared_rw atomic commutative */
static rte_atomic32_t evictions; /* EXPECT: shared_rw atomic */
static RTE_DEFINE_PER_LCORE(uint64_t, pkts_seen); /* EXPECT: per_core */
static uint64_t lcore_total[RTE_MAX_LCORE]; /* EXPECT: per_core */
static unsigned nb_bursts = 100; /* EXPECT: shared_ro */
static struct rte_mempool *pool; /* EXPECT: thread_private */

/* The caller holds stripe_locks[bucket % LOCK_STRIPES]. */
static int flow_update_locked(unsigned bucket, uint64_t key, uint64_t now)
{
	struct flow *ways = flow_table[bucket];

	for (unsigned w = 0; w < WAYS; w++) {
		if (ways[w].key == key) {
			ways[w].pkts++;
			ways[w].last_tsc = now;
			return 0;
		}
	}
	for (unsigned w = 0; w < WAYS; w++) {
		if (ways[w].key == 0) {
			ways[w] = (struct flow){ .key = key, .pkts = 1, .last_tsc = now };
			return 1;
		}
	}
	unsigned victim = (unsigned)(rte_rand() % WAYS);
	ways[victim] = (struct flow){ .key = key, .pkts = 1, .last_tsc = now };
	return 2;
}

static void track(uint64_t key)
{
	unsigned bucket = (unsigned)(key % FLOW_BUCKETS);

	rte_spinlock_lock(&stripe_locks[bucket % LOCK_STRIPES]);
	int outcome = flow_update_locked(bucket, key, rte_rdtsc());
	rte_spinlock_unlock(&stripe_locks[bucket % LOCK_STRIPES]);

	if (outcome == 1)
		rte_atomic32_inc(&new_flows);
	else if (outcome == 2 && rte_atomic32_add_return(&evictions, 1) % 2000 == 0)
		printf("lcore %u: 2000 more evictions\n", rte_lcore_id());
}

static int tracker_loop(void *arg)
{
	(void)arg;
	const uint16_t queue = (uint16_t)(rte_lcore_index(-1) - 1);
	struct rte_mbuf *bufs[BURST];

	for (unsigned b = 0; b < nb_bursts; b++) {
		uint16_t n = rte_eth_rx_burst(0, queue, bufs, BURST);
		for (uint16_t i = 0; i < n; i++) {
			track(1 + rte_rand() % 2000);
			RTE_PER_LCORE(pkts_seen)++;
		}
		rte_pktmbuf_free_bulk(bufs, n);
	}
	lcore_total[rte_lcore_id()] = RTE_PER_LCORE(pkts_seen);
	return 0;
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf = { 0 };
	int ret = rte_eal_init(argc, argv);

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	if (argc - ret > 1)
		nb_bursts = (unsigned)atoi(argv[ret + 1]);

	uint16_t nq = (uint16_t)(rte_lcore_count() - 1);
	pool = rte_pktmbuf_pool_create("mbufs", 2047, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool || nq == 0 || rte_eth_dev_configure(0, nq, nq, &conf) < 0)
		rte_exit(EXIT_FAILURE, "port setup\n");
	for (uint16_t q = 0; q < nq; q++)
		if (rte_eth_rx_queue_setup(0, q, 128, rte_socket_id(), NULL, pool) < 0 ||
		    rte_eth_tx_queue_setup(0, q, 128, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "queue setup\n");
	if (rte_eth_dev_start(0) < 0)
		rte_exit(EXIT_FAILURE, "start\n");
	for (unsigned i = 0; i < LOCK_STRIPES; i++)
		rte_spinlock_init(&stripe_locks[i]);
	rte_atomic32_init(&new_flows);
	rte_atomic32_init(&evictions);

	rte_eal_mp_remote_launch(tracker_loop, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	uint64_t pkts = 0, live = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore)
		pkts += lcore_total[lcore];
	for (unsigned b = 0; b < FLOW_BUCKETS; b++)
		for (unsigned w = 0; w < WAYS; w++)
			live += flow_table[b][w].key != 0;
	printf("dp_flow_stripes: pkts=%llu new_flows=%d evictions=%d live=%llu\n",
	       (unsigned long long)pkts, rte_atomic32_read(&new_flows), rte_atomic32_read(&evictions),
	       (unsigned long long)live);
	rte_eth_dev_stop(0);
	rte_eal_cleanup();
	return 0;
}

// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="120 30"
/*
 * Longest-prefix-match router whose route table main keeps updating while the workers forward.
 *
 * Exercises: rte_zmalloc'd route table reached through a global pointer, guarded by the rte_rwlock
 * inside it (lock=g_routes->lock): workers read-lock, main write-locks between launch and wait;
 * the lookup helper reads the table through its parameter while its caller holds the lock;
 * rte_zmalloc'd per-lcore statistics indexed by rte_lcore_id(); rte_eal_remote_launch in
 * RTE_LCORE_FOREACH_WORKER and rte_eal_wait_lcore; rte_rand destinations.
 *
 * Usage: dp_router_rwlock [EAL args] -- [BURSTS_PER_LCORE [ROUTE_UPDATES]]
 */
#include <stdio.h>
#include <stdlib.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_rwlock.h>

#define BURST 32
#define MAX_ROUTES 64
#define NB_HOPS 8

struct route {
	uint32_t prefix;
	uint8_t depth;
	uint8_t next_hop;
};

struct route_table {
	rte_rwlock_t lock;
	unsigned n;
	struct route r[MAX_ROUTES];
};

struct lcore_stats {
	uint64_t routed, no_route;
	uint64_t per_hop[NB_HOPS];
} __rte_cache_aligned;

static struct route_table *g_routes; /* EXPECT: shared_ro */
static struct lcore_stats *g_stats; /* EXPECT: shared_ro */
static unsigned bursts_per_lcore = 100; /* EXPECT: shared_ro */
static unsigned route_updates = 20; /* EXPECT: thread_private */

/* The caller holds t->lock (read or write). Returns the next hop, or -1. */
static int lpm_lookup(const struct route_table *t, uint32_t dst)
{
	int best = -1, best_depth = -1;

	for (unsigned i = 0; i < t->n; i++) {
		uint32_t mask = t->r[i].depth ? ~0u << (32 - t->r[i].depth) : 0;
		if ((dst & mask) == t->r[i].prefix && t->r[i].depth > best_depth) {
			best = t->r[i].next_hop;
			best_depth = t->r[i].depth;
		}
	}
	return best;
}

static int route_worker(void *arg)
{
	(void)arg;
	const unsigned lcore = rte_lcore_id();
	const uint16_t queue = (uint16_t)(rte_lcore_index((int)lcore) - 1);
	struct rte_mbuf *bufs[BURST];

	for (unsigned b = 0; b < bursts_per_lcore; b++) {
		uint16_t n = rte_eth_rx_burst(0, queue, bufs, BURST);
		for (uint16_t i = 0; i < n; i++) {
			uint32_t dst = (uint32_t)rte_rand();

			rte_rwlock_read_lock(&g_routes->lock);
			int hop = lpm_lookup(g_routes, dst);
			rte_rwlock_read_unlock(&g_routes->lock);

			if (hop < 0) {
				g_stats[lcore].no_route++;
				continue;
			}
			g_stats[lcore].routed++;
			g_stats[lcore].per_hop[hop % NB_HOPS]++;
		}
		rte_pktmbuf_free_bulk(bufs, n);
	}
	return 0;
}

static void route_add_or_replace(uint32_t prefix, uint8_t depth, uint8_t hop)
{
	rte_rwlock_write_lock(&g_routes->lock);
	unsigned slot = g_routes->n < MAX_ROUTES ? g_routes->n++ : prefix % MAX_ROUTES;
	g_routes->r[slot] = (struct route){ .prefix = prefix, .depth = depth, .next_hop = hop };
	rte_rwlock_write_unlock(&g_routes->lock);
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
		route_updates = (unsigned)atoi(argv[ret + 2]);

	g_routes = rte_zmalloc("routes", sizeof *g_routes, RTE_CACHE_LINE_SIZE); /* EXPECT-HEAP: shared_rw lock lock=g_routes->lock */
	g_stats = rte_zmalloc("stats", RTE_MAX_LCORE * sizeof *g_stats, RTE_CACHE_LINE_SIZE); /* EXPECT-HEAP: per_core */
	if (!g_routes || !g_stats)
		rte_exit(EXIT_FAILURE, "rte_zmalloc\n");
	rte_rwlock_init(&g_routes->lock);
	g_routes->r[0] = (struct route){ .prefix = 0, .depth = 1, .next_hop = 0 };
	g_routes->n = 1;

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

	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore)
		rte_eal_remote_launch(route_worker, NULL, lcore);
	for (unsigned u = 0; u < route_updates; u++) {
		uint8_t depth = (uint8_t)(8 + u % 17);
		uint32_t prefix = (uint32_t)rte_rand() & (~0u << (32 - depth));
		route_add_or_replace(prefix, depth, (uint8_t)(1 + u % (NB_HOPS - 1)));
		rte_delay_us_sleep(100);
	}
	RTE_LCORE_FOREACH_WORKER(lcore)
		rte_eal_wait_lcore(lcore);

	uint64_t routed = 0, dropped = 0;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		routed += g_stats[lcore].routed;
		dropped += g_stats[lcore].no_route;
	}
	printf("dp_router_rwlock: routed=%llu no_route=%llu routes=%u\n", (unsigned long long)routed,
	       (unsigned long long)dropped, g_routes->n);
	rte_eth_dev_stop(0);
	rte_free(g_stats);
	rte_free(g_routes);
	rte_eal_cleanup();
	return 0;
}

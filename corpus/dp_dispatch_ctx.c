// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="classify size 60"
/*
 * Packet classifier with pluggable modes and classifiers, chosen on the command line.
 *
 * Exercises: the lcore entry reached through a function pointer variable filled from a table of
 * modes (both modes are possible thread roots); a table of classifier function pointers indexed by
 * configuration written before the launch; one context struct on main's stack passed to every
 * lcore, all of its fields guarded by the rte_spinlock inside it and only ever incremented
 * (lock=app_ctx::lock, commutative); per-lcore packet counts indexed by rte_lcore_id(); rte_rdtsc.
 *
 * Usage: dp_dispatch_ctx [EAL args] -- [count|classify [size|time [BURSTS_PER_LCORE]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>

#define BURST 32
#define NB_CLASSES 4

struct app_ctx {
	rte_spinlock_t lock;
	uint64_t classified[NB_CLASSES];
	uint64_t bytes, bursts;
};

typedef int (*mode_fn)(void *arg);
typedef unsigned (*classifier_fn)(const struct rte_mbuf *m);

struct mode_desc {
	const char *name;
	mode_fn fn;
};

static int count_mode(void *arg);
static int classify_mode(void *arg);
static unsigned by_size(const struct rte_mbuf *m);
static unsigned by_time(const struct rte_mbuf *m);

static const struct mode_desc modes[] = { { "count", count_mode }, { "classify", classify_mode } }; /* EXPECT: thread_private */
static mode_fn selected_mode = count_mode; /* EXPECT: thread_private */
static const classifier_fn classifiers[] = { by_size, by_time }; /* EXPECT: shared_ro */
static unsigned active_classifier; /* EXPECT: shared_ro */
static unsigned bursts_per_lcore = 50; /* EXPECT: shared_ro */
static uint64_t lcore_pkts[RTE_MAX_LCORE]; /* EXPECT: per_core */

static unsigned by_size(const struct rte_mbuf *m)
{
	return m->pkt_len < 128 ? 0 : m->pkt_len < 512 ? 1 : m->pkt_len < 1024 ? 2 : 3;
}

static unsigned by_time(const struct rte_mbuf *m)
{
	(void)m;
	return (unsigned)(rte_rdtsc() >> 4) % NB_CLASSES;
}

static uint16_t poll_queue(struct rte_mbuf **bufs)
{
	return rte_eth_rx_burst(0, (uint16_t)(rte_lcore_index(-1) - 1), bufs, BURST);
}

static int count_mode(void *arg)
{
	struct app_ctx *c = arg;
	struct rte_mbuf *bufs[BURST];

	for (unsigned b = 0; b < bursts_per_lcore; b++) {
		uint16_t n = poll_queue(bufs);
		uint64_t bytes = 0;
		for (uint16_t i = 0; i < n; i++)
			bytes += bufs[i]->pkt_len;
		rte_spinlock_lock(&c->lock);
		c->bytes += bytes;
		c->bursts++;
		rte_spinlock_unlock(&c->lock);
		lcore_pkts[rte_lcore_id()] += n;
		rte_pktmbuf_free_bulk(bufs, n);
	}
	return 0;
}

static int classify_mode(void *arg)
{
	struct app_ctx *c = arg;
	struct rte_mbuf *bufs[BURST];
	const classifier_fn classify = classifiers[active_classifier];

	for (unsigned b = 0; b < bursts_per_lcore; b++) {
		uint16_t n = poll_queue(bufs);
		for (uint16_t i = 0; i < n; i++) {
			unsigned k = classify(bufs[i]);
			rte_spinlock_lock(&c->lock);
			c->classified[k]++;
			c->bytes += bufs[i]->pkt_len;
			rte_spinlock_unlock(&c->lock);
		}
		lcore_pkts[rte_lcore_id()] += n;
		rte_pktmbuf_free_bulk(bufs, n);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct app_ctx ctx; /* EXPECT-STACK: shared_rw lock lock=app_ctx::lock commutative */
	struct rte_eth_conf conf = { 0 };
	int ret = rte_eal_init(argc, argv);

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	argc -= ret;
	argv += ret;
	for (size_t i = 0; argc > 1 && i < sizeof modes / sizeof modes[0]; i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			selected_mode = modes[i].fn;
	if (argc > 2)
		active_classifier = strcmp(argv[2], "time") == 0 ? 1 : 0;
	if (argc > 3)
		bursts_per_lcore = (unsigned)atoi(argv[3]);

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

	memset(&ctx, 0, sizeof ctx);
	rte_spinlock_init(&ctx.lock);
	rte_eal_mp_remote_launch(selected_mode, &ctx, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	uint64_t pkts = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore)
		pkts += lcore_pkts[lcore];
	printf("dp_dispatch_ctx: pkts=%llu bytes=%llu bursts=%llu classes=[%llu %llu %llu %llu]\n",
	       (unsigned long long)pkts, (unsigned long long)ctx.bytes, (unsigned long long)ctx.bursts,
	       (unsigned long long)ctx.classified[0], (unsigned long long)ctx.classified[1],
	       (unsigned long long)ctx.classified[2], (unsigned long long)ctx.classified[3]);
	rte_eth_dev_stop(0);
	rte_eal_cleanup();
	return 0;
}

// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="-b 200"
/*
 * l2fwd-style forwarder on one port: each worker lcore owns one RX/TX queue pair, rewrites the
 * source MAC and sends the burst back out.
 *
 * Exercises: rte_eal_mp_remote_launch(SKIP_MAIN) of a run-to-completion loop; per-lcore statistics
 * selected by a local copy of rte_lcore_id() handed to a helper as a parameter; a volatile quit flag
 * set by a signal handler; configuration (burst budget, port, MAC, TSC rate) written before the
 * launch; DPDK objects used by main only; rte_rdtsc on the packet path.
 *
 * Usage: dp_l2fwd [EAL args] -- [-b BURSTS_PER_LCORE]
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#define BURST 32
#define NB_DESC 256

struct lcore_port_stats {
	uint64_t rx, tx, dropped, drains;
} __rte_cache_aligned;

static volatile bool force_quit; /* EXPECT: shared_rw unprotected */
static struct lcore_port_stats port_stats[RTE_MAX_LCORE]; /* EXPECT: per_core */
static struct rte_mempool *pktmbuf_pool; /* EXPECT: thread_private */
static struct rte_eth_conf port_conf = { .txmode = { .mq_mode = RTE_ETH_MQ_TX_NONE } }; /* EXPECT: thread_private */
static uint16_t port_id; /* EXPECT: shared_ro */
static unsigned max_bursts = 100; /* EXPECT: shared_ro */
static uint64_t drain_tsc; /* EXPECT: shared_ro */
static struct rte_ether_addr port_mac; /* EXPECT: shared_ro */

static void signal_handler(int signum)
{
	if (signum == SIGINT || signum == SIGTERM)
		force_quit = true;
}

static void forward_burst(unsigned lcore, uint16_t queue, struct rte_mbuf **bufs, uint16_t n)
{
	struct lcore_port_stats *st = &port_stats[lcore];

	for (uint16_t i = 0; i < n; i++) {
		struct rte_ether_hdr *eth = rte_pktmbuf_mtod(bufs[i], struct rte_ether_hdr *);
		rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
		rte_ether_addr_copy(&port_mac, &eth->src_addr);
	}
	uint16_t sent = rte_eth_tx_burst(port_id, queue, bufs, n);
	st->rx += n;
	st->tx += sent;
	st->dropped += (uint64_t)(n - sent);
	for (uint16_t i = sent; i < n; i++)
		rte_pktmbuf_free(bufs[i]);
}

static int l2fwd_main_loop(void *arg)
{
	(void)arg;
	const unsigned lcore = rte_lcore_id();
	const uint16_t queue = (uint16_t)(rte_lcore_index((int)lcore) - 1);
	struct rte_mbuf *bufs[BURST];
	uint64_t prev_tsc = rte_rdtsc();

	for (unsigned b = 0; b < max_bursts && !force_quit; b++) {
		uint16_t n = rte_eth_rx_burst(port_id, queue, bufs, BURST);
		if (n > 0)
			forward_burst(lcore, queue, bufs, n);
		uint64_t now = rte_rdtsc();
		if (now - prev_tsc > drain_tsc) {
			port_stats[lcore].drains++;
			prev_tsc = now;
		}
	}
	return 0;
}

static int parse_args(int argc, char **argv)
{
	int opt;

	while ((opt = getopt(argc, argv, "b:")) != -1) {
		if (opt != 'b')
			return -1;
		max_bursts = (unsigned)strtoul(optarg, NULL, 10);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int ret = rte_eal_init(argc, argv);
	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	argc -= ret;
	argv += ret;
	if (parse_args(argc, argv) < 0)
		rte_exit(EXIT_FAILURE, "usage: dp_l2fwd [EAL] -- [-b BURSTS]\n");
	signal(SIGINT, signal_handler);
	signal(SIGTERM, signal_handler);

	uint16_t nb_queues = (uint16_t)(rte_lcore_count() - 1);
	if (nb_queues == 0 || rte_eth_dev_count_avail() == 0)
		rte_exit(EXIT_FAILURE, "need a port and at least one worker lcore\n");
	pktmbuf_pool = rte_pktmbuf_pool_create("mbufs", 4095, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					       rte_socket_id());
	if (!pktmbuf_pool)
		rte_exit(EXIT_FAILURE, "mbuf pool\n");
	port_id = 0;
	if (rte_eth_dev_configure(port_id, nb_queues, nb_queues, &port_conf) < 0)
		rte_exit(EXIT_FAILURE, "configure\n");
	for (uint16_t q = 0; q < nb_queues; q++) {
		if (rte_eth_rx_queue_setup(port_id, q, NB_DESC, rte_socket_id(), NULL, pktmbuf_pool) < 0 ||
		    rte_eth_tx_queue_setup(port_id, q, NB_DESC, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "queue setup\n");
	}
	rte_eth_macaddr_get(port_id, &port_mac);
	drain_tsc = rte_get_tsc_hz() / 10000;
	if (rte_eth_dev_start(port_id) < 0)
		rte_exit(EXIT_FAILURE, "start\n");

	rte_eal_mp_remote_launch(l2fwd_main_loop, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	uint64_t rx = 0, tx = 0, dropped = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		rx += port_stats[lcore].rx;
		tx += port_stats[lcore].tx;
		dropped += port_stats[lcore].dropped;
	}
	printf("dp_l2fwd: rx=%llu tx=%llu dropped=%llu\n", (unsigned long long)rx,
	       (unsigned long long)tx, (unsigned long long)dropped);
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
	rte_eal_cleanup();
	return 0;
}

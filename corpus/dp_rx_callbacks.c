// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="-n 20000"
/*
 * Packet counting through ethdev RX callbacks, after DPDK's rxtx_callbacks example: main installs
 * a callback on every RX queue; the worker lcores only receive and drop, and stop once the
 * callbacks have counted enough packets.
 *
 * Exercises: rte_eth_add_rx_callback (the callback runs inside rte_eth_rx_burst, in the worker
 * lcore that receives); a global packet count the callback updates and the worker loop reads
 * without a lock; a per-lcore burst histogram indexed by rte_lcore_id() in the callback; a
 * commutative __atomic counter of callback calls; the stop threshold set before the launch.
 *
 * Usage: dp_rx_callbacks [EAL args] -- [-n PACKETS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#define BURST 32
#define NB_DESC 256

struct burst_hist {
	uint64_t sizes[BURST + 1];
} __rte_cache_aligned;

static uint64_t rx_cb_pkts; /* EXPECT: shared_rw unprotected */
static uint64_t rx_cb_calls; /* EXPECT: shared_rw atomic commutative */
static struct burst_hist hist[RTE_MAX_LCORE]; /* EXPECT: per_core */
static uint64_t stop_after = 10000; /* EXPECT: shared_ro */
static uint16_t port_id; /* EXPECT: shared_ro */
static struct rte_mempool *pktmbuf_pool; /* EXPECT: thread_private */
static struct rte_eth_conf port_conf; /* EXPECT: thread_private */

static uint16_t count_rx(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t nb_pkts,
			 uint16_t max_pkts, void *user)
{
	(void)port;
	(void)queue;
	(void)pkts;
	(void)max_pkts;
	(void)user;
	hist[rte_lcore_id()].sizes[nb_pkts]++;
	rx_cb_pkts += nb_pkts;
	__atomic_fetch_add(&rx_cb_calls, 1, __ATOMIC_RELAXED);
	return nb_pkts;
}

static int rx_main_loop(void *arg)
{
	const uint16_t queue = (uint16_t)(rte_lcore_index((int)rte_lcore_id()) - 1);
	struct rte_mbuf *bufs[BURST];

	(void)arg;
	while (rx_cb_pkts < stop_after) {
		uint16_t n = rte_eth_rx_burst(port_id, queue, bufs, BURST);
		rte_pktmbuf_free_bulk(bufs, n);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int opt, ret = rte_eal_init(argc, argv);

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	argc -= ret;
	argv += ret;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n')
			rte_exit(EXIT_FAILURE, "usage: dp_rx_callbacks [EAL] -- [-n PACKETS]\n");
		stop_after = strtoull(optarg, NULL, 10);
	}
	uint16_t nb_queues = (uint16_t)(rte_lcore_count() - 1);
	if (nb_queues == 0 || rte_eth_dev_count_avail() == 0)
		rte_exit(EXIT_FAILURE, "need a port and at least one worker lcore\n");
	pktmbuf_pool = rte_pktmbuf_pool_create("mbufs", 4095, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pktmbuf_pool)
		rte_exit(EXIT_FAILURE, "mbuf pool\n");
	port_id = 0;
	if (rte_eth_dev_configure(port_id, nb_queues, nb_queues, &port_conf) < 0)
		rte_exit(EXIT_FAILURE, "configure\n");
	for (uint16_t q = 0; q < nb_queues; q++) {
		if (rte_eth_rx_queue_setup(port_id, q, NB_DESC, rte_socket_id(), NULL, pktmbuf_pool) < 0 ||
		    rte_eth_tx_queue_setup(port_id, q, NB_DESC, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "queue setup\n");
		if (rte_eth_add_rx_callback(port_id, q, count_rx, NULL) == NULL)
			rte_exit(EXIT_FAILURE, "RX callbacks are not enabled in this DPDK\n");
	}
	if (rte_eth_dev_start(port_id) < 0)
		rte_exit(EXIT_FAILURE, "start\n");

	rte_eal_mp_remote_launch(rx_main_loop, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	uint64_t full = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore)
		full += hist[lcore].sizes[BURST];
	printf("dp_rx_callbacks: enough=%d calls>0=%d full_bursts>0=%d\n", rx_cb_pkts >= stop_after,
	       rx_cb_calls > 0, full > 0);
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
	rte_eal_cleanup();
	return 0;
}

// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-2)@(0,1)" args="-b 400"
/*
 * Flow tracking with expiry timers: the worker lcores count received packets into a flow table,
 * and a periodic rte_timer per worker lcore, run by rte_timer_manage() in that lcore's loop, ages
 * the table out under the same spinlock.
 *
 * Exercises: rte_timer_reset callbacks that run in the worker lcores calling rte_timer_manage (not
 * in main, which arms them); a flow table shared by the packet path and the timer callback under an
 * rte_spinlock; an expiry counter only the callback updates (commutative, under the lock); the
 * burst budget set before the launch; the timers and their period used by main only.
 *
 * Usage: dp_timer_callbacks [EAL args] -- [-b BURSTS_PER_LCORE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>
#include <rte_timer.h>

#define BURST 32
#define NB_DESC 256
#define NFLOWS 128

struct flow {
	uint64_t pkts;
	uint64_t idle_ticks;
};

static rte_spinlock_t tbl_lock = RTE_SPINLOCK_INITIALIZER; /* EXPECT: shared_rw atomic */
static struct flow flow_table[NFLOWS]; /* EXPECT: shared_rw lock lock=tbl_lock */
static uint64_t expired_flows; /* EXPECT: shared_rw lock lock=tbl_lock commutative */
static struct rte_timer age_timers[RTE_MAX_LCORE]; /* EXPECT: thread_private */
static uint64_t age_period; /* EXPECT: thread_private */
static unsigned max_bursts = 100; /* EXPECT: shared_ro */
static uint16_t port_id; /* EXPECT: shared_ro */
static struct rte_mempool *pktmbuf_pool; /* EXPECT: thread_private */
static struct rte_eth_conf port_conf; /* EXPECT: thread_private */

static void age_flows(struct rte_timer *tim, void *arg)
{
	(void)tim;
	(void)arg;
	rte_spinlock_lock(&tbl_lock);
	for (unsigned f = 0; f < NFLOWS; f++) {
		if (flow_table[f].pkts == 0)
			continue;
		if (++flow_table[f].idle_ticks > 2) {
			flow_table[f].pkts = 0;
			flow_table[f].idle_ticks = 0;
			expired_flows++;
		}
	}
	rte_spinlock_unlock(&tbl_lock);
}

static int worker_loop(void *arg)
{
	const uint16_t queue = (uint16_t)(rte_lcore_index((int)rte_lcore_id()) - 1);
	struct rte_mbuf *bufs[BURST];

	(void)arg;
	for (unsigned b = 0; b < max_bursts; b++) {
		uint16_t n = rte_eth_rx_burst(port_id, queue, bufs, BURST);
		rte_spinlock_lock(&tbl_lock);
		for (uint16_t i = 0; i < n; i++) {
			unsigned f = (b * BURST + i) % NFLOWS;
			flow_table[f].pkts++;
			flow_table[f].idle_ticks = 0;
		}
		rte_spinlock_unlock(&tbl_lock);
		rte_pktmbuf_free_bulk(bufs, n);
		rte_timer_manage();
		rte_delay_us(20);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int opt, ret = rte_eal_init(argc, argv);
	unsigned lcore;

	if (ret < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	argc -= ret;
	argv += ret;
	while ((opt = getopt(argc, argv, "b:")) != -1) {
		if (opt != 'b')
			rte_exit(EXIT_FAILURE, "usage: dp_timer_callbacks [EAL] -- [-b BURSTS]\n");
		max_bursts = (unsigned)strtoul(optarg, NULL, 10);
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
	}
	if (rte_eth_dev_start(port_id) < 0)
		rte_exit(EXIT_FAILURE, "start\n");

	rte_timer_subsystem_init();
	age_period = rte_get_timer_hz() / 10000;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		rte_timer_init(&age_timers[lcore]);
		rte_timer_reset(&age_timers[lcore], age_period, PERIODICAL, lcore, age_flows, NULL);
	}
	rte_eal_mp_remote_launch(worker_loop, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();
	RTE_LCORE_FOREACH_WORKER(lcore)
		rte_timer_stop_sync(&age_timers[lcore]);

	uint64_t live = 0;
	for (unsigned f = 0; f < NFLOWS; f++)
		live += flow_table[f].pkts != 0;
	printf("dp_timer_callbacks: flows=%d expired>0=%d\n", NFLOWS, expired_flows > 0 || live < NFLOWS);
	rte_timer_subsystem_finalize();
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
	rte_eal_cleanup();
	return 0;
}

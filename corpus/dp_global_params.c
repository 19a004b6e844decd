// ftmb-corpus: style=dpdk eal="--vdev=net_pcap0,rx_pcap={corpus}/data/flows.pcap,tx_pcap={out}/dp_global_params.out.pcap --lcores=(0-3)@(0,1)"
/*
 * Load balancer after DPDK's old load_balancer/pipeline apps: everything lives in one global
 * `struct app_params app` -- the mempool, an rte_ring per worker between the RX lcore and the
 * workers, a per-port TX buffer the workers fill and flush under a spinlock, burst sizes and a hash
 * seed set before the launch, per-worker statistics indexed by lcore, an end-of-input flag.
 *
 * Exercises: field-sensitive objects. Each member is its own object with its own class (markers
 * EXPECT(app.member) on the member's declaration): the read-only configuration is not ordered
 * against the buffers the workers write, so the ring enqueue whose ring index calls flow_hash()
 * (which reads app.hash_seed) needs no ordered region; members of an array of structs
 * (app.wstats[lcore].pkts); nested members (app.rx.pkts, written by the RX lcore only); a racy
 * commutative drop counter; a member lock (app.tx_lock) guarding two other members.
 *
 * Usage: dp_global_params [EAL args with a net_pcap vdev and at least 3 lcores]
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_spinlock.h>

#define MAX_WORKERS 4
#define MAX_BURST 32
#define RX_IDLE_POLLS 64

struct rx_counters {
	uint64_t pkts; /* EXPECT(app.rx.pkts): thread_private */
	uint64_t bursts; /* EXPECT(app.rx.bursts): thread_private */
};

struct worker_stats {
	uint64_t pkts; /* EXPECT(app.wstats.pkts): per_core */
};

struct app_params {
	struct rte_mempool *pool; /* EXPECT(app.pool): shared_ro */
	struct rte_ring *rings[MAX_WORKERS]; /* EXPECT(app.rings): shared_ro */
	unsigned n_workers; /* EXPECT(app.n_workers): shared_ro */
	uint16_t port; /* EXPECT(app.port): shared_ro */
	uint16_t burst_rx; /* EXPECT(app.burst_rx): shared_ro */
	uint16_t burst_worker; /* EXPECT(app.burst_worker): shared_ro */
	uint32_t hash_seed; /* EXPECT(app.hash_seed): shared_ro */
	struct rx_counters rx;
	int rx_done; /* EXPECT(app.rx_done): shared_rw atomic */
	rte_spinlock_t tx_lock; /* EXPECT(app.tx_lock): shared_rw atomic */
	struct rte_mbuf *tx_buf[MAX_BURST]; /* EXPECT(app.tx_buf): shared_rw lock lock=app.tx_lock */
	uint16_t tx_len; /* EXPECT(app.tx_len): shared_rw lock lock=app.tx_lock */
	uint64_t tx_pkts; /* EXPECT(app.tx_pkts): shared_rw lock lock=app.tx_lock commutative */
	uint64_t drops; /* EXPECT(app.drops): shared_rw unprotected commutative */
	struct worker_stats wstats[RTE_MAX_LCORE];
};

static struct app_params app; /* EXPECT: shared_rw mixed */

static unsigned flow_hash(const struct rte_mbuf *m)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	if (m->data_len < 34)
		return 0;
	return (p[26] ^ p[29] ^ p[30] ^ app.hash_seed) % app.n_workers;
}

static int rx_lcore(void *arg)
{
	(void)arg;
	struct rte_mbuf *bufs[MAX_BURST];
	unsigned idle = 0;

	while (idle < RX_IDLE_POLLS) {
		uint16_t n = rte_eth_rx_burst(app.port, 0, bufs, app.burst_rx);
		if (n == 0) {
			idle++;
			sched_yield();
			continue;
		}
		idle = 0;
		app.rx.bursts++;
		app.rx.pkts += n;
		for (uint16_t i = 0; i < n; i++) {
			while (rte_ring_enqueue(app.rings[flow_hash(bufs[i])], bufs[i]) != 0)
				sched_yield();
		}
	}
	__atomic_store_n(&app.rx_done, 1, __ATOMIC_RELEASE);
	return 0;
}

static void flush_tx(void)
{
	uint16_t sent = rte_eth_tx_burst(app.port, 0, app.tx_buf, app.tx_len);
	app.tx_pkts += sent;
	for (uint16_t i = sent; i < app.tx_len; i++)
		rte_pktmbuf_free(app.tx_buf[i]);
	app.tx_len = 0;
}

static int worker_lcore(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	void *objs[MAX_BURST];

	for (;;) {
		int done = __atomic_load_n(&app.rx_done, __ATOMIC_ACQUIRE);
		unsigned n = rte_ring_dequeue_burst(app.rings[w], objs, app.burst_worker, NULL);
		if (n == 0) {
			if (done)
				break;
			sched_yield();
			continue;
		}
		app.wstats[rte_lcore_id()].pkts += n;
		for (unsigned i = 0; i < n; i++) {
			struct rte_mbuf *m = objs[i];
			if (m->pool != app.pool) {
				app.drops++;
				rte_pktmbuf_free(m);
				continue;
			}
			rte_spinlock_lock(&app.tx_lock);
			app.tx_buf[app.tx_len++] = m;
			if (app.tx_len == MAX_BURST)
				flush_tx();
			rte_spinlock_unlock(&app.tx_lock);
		}
		rte_spinlock_lock(&app.tx_lock);
		flush_tx();
		rte_spinlock_unlock(&app.tx_lock);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf = { 0 };
	char name[32];

	if (rte_eal_init(argc, argv) < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed\n");
	if (rte_lcore_count() < 3 || rte_eth_dev_count_avail() == 0)
		rte_exit(EXIT_FAILURE, "need a port and at least 3 lcores\n");
	app.n_workers = rte_lcore_count() - 2;
	if (app.n_workers > MAX_WORKERS)
		app.n_workers = MAX_WORKERS;
	app.burst_rx = MAX_BURST;
	app.burst_worker = MAX_BURST / 2;
	app.hash_seed = 0x5a;
	rte_spinlock_init(&app.tx_lock);

	app.pool = rte_pktmbuf_pool_create("mbufs", 2047, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!app.pool || rte_eth_dev_configure(app.port, 1, 1, &conf) < 0 ||
	    rte_eth_rx_queue_setup(app.port, 0, 512, rte_socket_id(), NULL, app.pool) < 0 ||
	    rte_eth_tx_queue_setup(app.port, 0, 512, rte_socket_id(), NULL) < 0 ||
	    rte_eth_dev_start(app.port) < 0)
		rte_exit(EXIT_FAILURE, "port setup\n");
	for (unsigned i = 0; i < app.n_workers; i++) {
		snprintf(name, sizeof name, "ring%u", i);
		app.rings[i] = rte_ring_create(name, 1024, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (!app.rings[i])
			rte_exit(EXIT_FAILURE, "ring\n");
	}

	unsigned rx_id = rte_get_next_lcore(-1, 1, 0);
	rte_eal_remote_launch(rx_lcore, NULL, rx_id);
	unsigned lcore = rx_id;
	for (unsigned w = 0; w < app.n_workers; w++) {
		lcore = rte_get_next_lcore(lcore, 1, 0);
		if (lcore >= RTE_MAX_LCORE)
			break;
		rte_eal_remote_launch(worker_lcore, (void *)(uintptr_t)w, lcore);
	}
	rte_eal_mp_wait_lcore();

	uint64_t worked = 0;
	for (unsigned i = 0; i < RTE_MAX_LCORE; i++)
		worked += app.wstats[i].pkts;
	printf("dp_global_params: rx=%llu bursts=%llu worked=%llu tx=%llu drops=%llu\n",
	       (unsigned long long)app.rx.pkts, (unsigned long long)app.rx.bursts, (unsigned long long)worked,
	       (unsigned long long)app.tx_pkts, (unsigned long long)app.drops);
	rte_eth_dev_stop(app.port);
	rte_eal_cleanup();
	return 0;
}

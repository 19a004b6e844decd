// ftmb-corpus: style=dpdk eal="--vdev=net_pcap0,rx_pcap={corpus}/data/flows.pcap,tx_pcap={out}/dp_pipeline_ring.out.pcap --lcores=(0-3)@(0,1)"
/*
 * Pipeline: one RX lcore reads a pcap trace and spreads packets over rte_rings by flow hash; the
 * worker lcores classify them through a table of per-protocol handlers and transmit on the single
 * TX queue under a spinlock.
 *
 * Exercises: different thread roots launched with rte_eal_remote_launch (one RX instance, several
 * workers, each worker with its own &wctx[i]); ring pointers and the handler table written before
 * the launch; an end-of-input flag published with __atomic_store_n and polled with __atomic_load_n;
 * a TX counter updated only under the TX lock (commutative); a counter of the RX thread only;
 * workers that sched_yield() when idle (more lcores than CPUs).
 *
 * Usage: dp_pipeline_ring [EAL args with a net_pcap vdev and at least 3 lcores]
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_spinlock.h>

#define BURST 32
#define MAX_WORKERS 4
#define RX_IDLE_POLLS 64

struct worker_ctx {
	unsigned ring_idx;
	uint64_t tcp, udp, other, tx;
} __rte_cache_aligned;

typedef void (*proto_handler)(struct rte_mbuf *m, struct worker_ctx *w);

static void handle_tcp(struct rte_mbuf *m, struct worker_ctx *w);
static void handle_udp(struct rte_mbuf *m, struct worker_ctx *w);

static struct rte_ring *rings[MAX_WORKERS]; /* EXPECT: shared_ro */
static unsigned nb_workers; /* EXPECT: shared_ro */
static uint16_t port_id; /* EXPECT: shared_ro */
static int rx_done; /* EXPECT: shared_rw atomic */
static struct worker_ctx wctx[MAX_WORKERS]; /* EXPECT: per_core */
static const proto_handler handlers[256] = { [IPPROTO_TCP] = handle_tcp, [IPPROTO_UDP] = handle_udp }; /* EXPECT: shared_ro */
static rte_spinlock_t tx_lock = RTE_SPINLOCK_INITIALIZER; /* EXPECT: shared_rw atomic */
static uint64_t tx_total; /* EXPECT: shared_rw lock lock=tx_lock commutative */
static uint64_t rx_bursts; /* EXPECT: thread_private */

static void handle_tcp(struct rte_mbuf *m, struct worker_ctx *w)
{
	(void)m;
	w->tcp++;
}

static void handle_udp(struct rte_mbuf *m, struct worker_ctx *w)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, 14);
	ip->time_to_live--;
	w->udp++;
}

static int rx_thread(void *arg)
{
	(void)arg;
	struct rte_mbuf *bufs[BURST];
	unsigned idle = 0;

	while (idle < RX_IDLE_POLLS) {
		uint16_t n = rte_eth_rx_burst(port_id, 0, bufs, BURST);
		if (n == 0) {
			idle++;
			sched_yield();
			continue;
		}
		idle = 0;
		rx_bursts++;
		for (uint16_t i = 0; i < n; i++) {
			const uint8_t *p = rte_pktmbuf_mtod(bufs[i], const uint8_t *);
			unsigned r = bufs[i]->data_len > 33 ? (unsigned)(p[26] ^ p[29] ^ p[30]) % nb_workers : 0;
			while (rte_ring_enqueue(rings[r], bufs[i]) != 0)
				sched_yield();
		}
	}
	__atomic_store_n(&rx_done, 1, __ATOMIC_RELEASE);
	printf("rx: %s\n", rx_bursts ? "trace read" : "no packets");
	return 0;
}

static void transmit(struct rte_mbuf **bufs, uint16_t n, struct worker_ctx *w)
{
	rte_spinlock_lock(&tx_lock);
	uint16_t sent = rte_eth_tx_burst(port_id, 0, bufs, n);
	tx_total += sent;
	rte_spinlock_unlock(&tx_lock);
	w->tx += sent;
	for (uint16_t i = sent; i < n; i++)
		rte_pktmbuf_free(bufs[i]);
}

static int worker_thread(void *arg)
{
	struct worker_ctx *w = arg;
	void *objs[BURST];

	for (;;) {
		int done = __atomic_load_n(&rx_done, __ATOMIC_ACQUIRE);
		unsigned n = rte_ring_dequeue_burst(rings[w->ring_idx], objs, BURST, NULL);
		if (n == 0) {
			if (done)
				break;
			sched_yield();
			continue;
		}
		for (unsigned i = 0; i < n; i++) {
			struct rte_mbuf *m = objs[i];
			const struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, const struct rte_ipv4_hdr *, 14);
			proto_handler h = m->data_len >= 34 ? handlers[ip->next_proto_id] : NULL;
			if (h)
				h(m, w);
			else
				w->other++;
		}
		transmit((struct rte_mbuf **)objs, (uint16_t)n, w);
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
	nb_workers = rte_lcore_count() - 2;
	if (nb_workers > MAX_WORKERS)
		nb_workers = MAX_WORKERS;

	struct rte_mempool *pool = rte_pktmbuf_pool_create("mbufs", 2047, 32, 0,
							    RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool || rte_eth_dev_configure(port_id, 1, 1, &conf) < 0 ||
	    rte_eth_rx_queue_setup(port_id, 0, 512, rte_socket_id(), NULL, pool) < 0 ||
	    rte_eth_tx_queue_setup(port_id, 0, 512, rte_socket_id(), NULL) < 0 ||
	    rte_eth_dev_start(port_id) < 0)
		rte_exit(EXIT_FAILURE, "port setup\n");
	for (unsigned i = 0; i < nb_workers; i++) {
		snprintf(name, sizeof name, "ring%u", i);
		rings[i] = rte_ring_create(name, 1024, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (!rings[i])
			rte_exit(EXIT_FAILURE, "ring\n");
	}

	unsigned lcore, launched = 0;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		if (launched == 0) {
			rte_eal_remote_launch(rx_thread, NULL, lcore);
		} else if (launched <= nb_workers) {
			wctx[launched - 1].ring_idx = launched - 1;
			rte_eal_remote_launch(worker_thread, &wctx[launched - 1], lcore);
		}
		launched++;
	}
	rte_eal_mp_wait_lcore();

	uint64_t tcp = 0, udp = 0, other = 0;
	for (unsigned i = 0; i < nb_workers; i++) {
		tcp += wctx[i].tcp;
		udp += wctx[i].udp;
		other += wctx[i].other;
	}
	printf("dp_pipeline_ring: tcp=%llu udp=%llu other=%llu tx=%llu\n", (unsigned long long)tcp,
	       (unsigned long long)udp, (unsigned long long)other, (unsigned long long)tx_total);
	rte_eth_dev_stop(port_id);
	rte_eal_cleanup();
	return 0;
}

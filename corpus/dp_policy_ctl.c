// ftmb-corpus: style=dpdk eal="--vdev=net_null0 --lcores=(0-3)@(0,1)" args="80 40"
/*
 * Marking policer with a control lcore: one lcore rewrites the policy while the others apply it.
 *
 * Exercises: a single-instance control lcore and several worker lcores started with
 * rte_eal_remote_launch; a global policy struct behind a global rte_rwlock; a logging interval the
 * control lcore changes with no synchronization (a race); a counter the workers bump atomically but
 * the control lcore reads under the write lock without an atomic (mixed); a plain stop flag that main
 * sets after the control lcore has finished; rte_malloc'd per-lcore histograms; a counter of the
 * control lcore only; a lcore number used by main only.
 *
 * Usage: dp_policy_ctl [EAL args, >= 3 lcores] -- [MAX_BURSTS_PER_WORKER [CONTROL_ROUNDS]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rwlock.h>

#define BURST 32
#define HIST_BINS 16

struct policy {
	uint16_t max_len;
	uint8_t mark;
	uint8_t drop_odd;
};

struct len_hist {
	uint64_t bins[HIST_BINS];
	uint64_t dropped;
} __rte_cache_aligned;

static rte_rwlock_t policy_lock = RTE_RWLOCK_INITIALIZER; /* EXPECT: shared_rw atomic */
static struct policy policy = { .max_len = 1500, .mark = 0, .drop_odd = 0 }; /* EXPECT: shared_rw lock lock=policy_lock */
static unsigned log_every = 64; /* EXPECT: shared_rw unprotected */
static uint64_t marked; /* EXPECT: shared_rw mixed */
static int quit; /* EXPECT: shared_rw unprotected */
static struct len_hist *hists; /* EXPECT: shared_ro */
static unsigned max_bursts = 80; /* EXPECT: shared_ro */
static unsigned control_rounds = 40; /* EXPECT: shared_ro */
static uint64_t policy_changes; /* EXPECT: thread_private */
static unsigned ctl_lcore; /* EXPECT: thread_private */

static int control_lcore(void *arg)
{
	(void)arg;

	for (unsigned r = 0; r < control_rounds; r++) {
		rte_rwlock_write_lock(&policy_lock);
		policy.max_len = (uint16_t)(policy.max_len == 1500 ? 48 : 1500);
		policy.mark = (uint8_t)(r & 0x3f);
		policy.drop_odd = marked > 1000;
		rte_rwlock_write_unlock(&policy_lock);
		policy_changes++;
		log_every = r % 2 ? 32 : 64;
		rte_delay_us_sleep(50);
	}
	printf("control: %llu policy changes\n", (unsigned long long)policy_changes);
	return 0;
}

static int policer_lcore(void *arg)
{
	const uint16_t queue = (uint16_t)(uintptr_t)arg;
	const unsigned lcore = rte_lcore_id();
	struct rte_mbuf *bufs[BURST];

	for (unsigned b = 0; b < max_bursts && !quit; b++) {
		uint16_t n = rte_eth_rx_burst(0, queue, bufs, BURST);
		struct policy p;

		rte_rwlock_read_lock(&policy_lock);
		p = policy;
		rte_rwlock_read_unlock(&policy_lock);

		for (uint16_t i = 0; i < n; i++) {
			uint32_t len = bufs[i]->pkt_len;
			if (len > p.max_len || (p.drop_odd && (len & 1))) {
				hists[lcore].dropped++;
				continue;
			}
			bufs[i]->hash.usr = p.mark;
			__atomic_fetch_add(&marked, 1, __ATOMIC_RELAXED);
			hists[lcore].bins[(len / 128) % HIST_BINS]++;
		}
		if (b % log_every == 0 && queue == 0)
			printf("queue 0: burst %u max_len %u\n", b, p.max_len);
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
		max_bursts = (unsigned)atoi(argv[ret + 1]);
	if (argc - ret > 2)
		control_rounds = (unsigned)atoi(argv[ret + 2]);
	if (rte_lcore_count() < 3)
		rte_exit(EXIT_FAILURE, "need at least 3 lcores\n");

	uint16_t nq = (uint16_t)(rte_lcore_count() - 2);
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
	hists = rte_malloc("hists", RTE_MAX_LCORE * sizeof *hists, RTE_CACHE_LINE_SIZE); /* EXPECT-HEAP: per_core */
	if (!hists)
		rte_exit(EXIT_FAILURE, "rte_malloc\n");
	memset(hists, 0, RTE_MAX_LCORE * sizeof *hists);

	ctl_lcore = rte_get_next_lcore(-1, 1, 0);
	rte_eal_remote_launch(control_lcore, NULL, ctl_lcore);
	uint16_t q = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		if (lcore != ctl_lcore)
			rte_eal_remote_launch(policer_lcore, (void *)(uintptr_t)q++, lcore);
	}
	rte_eal_wait_lcore(ctl_lcore);
	quit = 1;
	rte_eal_mp_wait_lcore();

	uint64_t dropped = 0, kept = 0;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		dropped += hists[lcore].dropped;
		for (unsigned i = 0; i < HIST_BINS; i++)
			kept += hists[lcore].bins[i];
	}
	printf("dp_policy_ctl: rounds=%u kept=%llu dropped=%llu marked=%llu\n", control_rounds,
	       (unsigned long long)kept, (unsigned long long)dropped, (unsigned long long)marked);
	rte_free(hists);
	rte_eth_dev_stop(0);
	rte_eal_cleanup();
	return 0;
}

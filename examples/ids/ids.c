/* SPDX-License-Identifier: BSD-3-Clause
 *
 * ids: a multi-core traffic monitor that reports heavy hitters and samples packets.
 *
 * Every TCP/UDP packet is counted in one count-min sketch shared by all cores (--rows hash
 * rows of --cols counters, incremented atomically). When a flow's estimate (the minimum of its
 * counters) reaches --threshold packets, the core that sees it emits one alert for the flow.
 * Independently, each packet is sampled with probability --sample-rate (rte_rand). Alerts and
 * samples are report frames (EtherType 0x88b5) sent right after the packet that caused them;
 * the monitored traffic itself is forwarded unchanged.
 *
 * Report frame: Ethernet (dst 02:1d:50:00:00:01, src 02:1d:50:00:00:00, type 0x88b5), then
 * "IDSREPT1", kind (1 alert, 2 sample), a pad byte, lcore (be16), estimate (be32),
 * threshold (be32), original length (be32), and the first 128 bytes of the packet.
 * Sketch row r hashes the 13-byte key proto|src ip|dst ip|src port|dst port (network order)
 * with 32-bit FNV-1a started from 2166136261 ^ ((r + 1) * 0x9e3779b1); the column is the hash
 * modulo --cols.
 *
 * Each worker lcore polls receive queue i of every port and sends on queue i of the paired port
 * (port 0 <-> 1; the same port when there is only one).
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_random.h>
#include <rte_spinlock.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#define NUM_MBUFS 8191
#define MBUF_CACHE_SIZE 250
#define RX_RING_SIZE 1024
#define TX_RING_SIZE 1024
#define BURST_SIZE 32
#define MAX_ROWS 8
#define ALERT_BITS 65536
#define ALERT_LOG_SIZE 64
#define REPORT_ETHER_TYPE 0x88b5
#define REPORT_SNAP 128
#define IDLE_POLLS_BEFORE_SLEEP 64
#define IDLE_SLEEP_US 50

enum report_kind { REPORT_ALERT = 1, REPORT_SAMPLE = 2 };

struct report_hdr {
	char magic[8];
	uint8_t kind;
	uint8_t pad;
	uint16_t lcore;
	uint32_t estimate;
	uint32_t threshold;
	uint32_t orig_len;
} __rte_packed;

struct alert_record {
	uint8_t key[13];
	uint32_t estimate;
	unsigned int lcore;
};

struct lcore_stats {
	uint64_t rx;
	uint64_t tx;
	uint64_t dropped;
	uint64_t counted;
	uint64_t alerts;
	uint64_t samples;
} __rte_cache_aligned;

struct ids_config {
	uint32_t threshold;
	uint32_t rows;
	uint32_t cols;
	double sample_rate;
	uint64_t sample_below; /* a packet is sampled when rte_rand() < sample_below */
	uint64_t idle_exit_ms; /* 0: run until signalled */
};

static volatile bool force_quit;
static struct ids_config config = {
	.threshold = 1000,
	.rows = 4,
	.cols = 4096,
	.sample_rate = 0.01,
};
static struct rte_mempool *pktmbuf_pool;
static uint16_t nb_ports;
static uint16_t nb_queues;
static uint32_t *sketch;                    /* rows x cols counters, atomic increments */
static uint64_t alerted[ALERT_BITS / 64];   /* flows already reported, atomic fetch-or */
static uint64_t alerts_raised;              /* atomic */
static rte_spinlock_t alert_log_lock = RTE_SPINLOCK_INITIALIZER;
static struct alert_record alert_log[ALERT_LOG_SIZE]; /* the first alerts, under the lock */
static unsigned int alert_log_len;
static struct lcore_stats stats[RTE_MAX_LCORE];
static unsigned int lcore_queue[RTE_MAX_LCORE];

static void
signal_handler(int signum)
{
	if (signum == SIGINT || signum == SIGTERM)
		force_quit = true;
}

static inline uint32_t
fnv1a_row(const uint8_t *key, unsigned int len, uint32_t row)
{
	uint32_t h = 2166136261u ^ ((row + 1) * 0x9e3779b1u);
	unsigned int i;

	for (i = 0; i < len; i++) {
		h ^= key[i];
		h *= 16777619u;
	}
	return h;
}

/* Count one packet of the flow `key`; return the flow's estimate after counting. */
static uint32_t
sketch_count(const uint8_t key[13], uint32_t *first_hash)
{
	uint32_t estimate = UINT32_MAX;
	uint32_t r;

	for (r = 0; r < config.rows; r++) {
		uint32_t h = fnv1a_row(key, 13, r);
		uint32_t v = __atomic_add_fetch(&sketch[r * config.cols + h % config.cols], 1,
						__ATOMIC_RELAXED);
		if (r == 0)
			*first_hash = h;
		if (v < estimate)
			estimate = v;
	}
	return estimate;
}

static void
log_alert(const uint8_t key[13], uint32_t estimate, unsigned int lcore_id)
{
	rte_spinlock_lock(&alert_log_lock);
	if (alert_log_len < ALERT_LOG_SIZE) {
		memcpy(alert_log[alert_log_len].key, key, 13);
		alert_log[alert_log_len].estimate = estimate;
		alert_log[alert_log_len].lcore = lcore_id;
		alert_log_len++;
	}
	rte_spinlock_unlock(&alert_log_lock);
}

static struct rte_mbuf *
make_report(const struct rte_mbuf *m, enum report_kind kind, uint32_t estimate,
	    unsigned int lcore_id)
{
	static const struct rte_ether_addr collector = {{ 0x02, 0x1d, 0x50, 0x00, 0x00, 0x01 }};
	static const struct rte_ether_addr monitor = {{ 0x02, 0x1d, 0x50, 0x00, 0x00, 0x00 }};
	const uint32_t snap = RTE_MIN((uint32_t)m->data_len, (uint32_t)REPORT_SNAP);
	struct rte_mbuf *r = rte_pktmbuf_alloc(pktmbuf_pool);
	struct rte_ether_hdr *eth;
	struct report_hdr *hdr;

	if (r == NULL)
		return NULL;
	eth = (struct rte_ether_hdr *)rte_pktmbuf_append(r, sizeof(*eth) + sizeof(*hdr) + snap);
	if (eth == NULL) {
		rte_pktmbuf_free(r);
		return NULL;
	}
	rte_ether_addr_copy(&collector, &eth->dst_addr);
	rte_ether_addr_copy(&monitor, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(REPORT_ETHER_TYPE);
	hdr = (struct report_hdr *)(eth + 1);
	memcpy(hdr->magic, "IDSREPT1", sizeof(hdr->magic));
	hdr->kind = (uint8_t)kind;
	hdr->pad = 0;
	hdr->lcore = rte_cpu_to_be_16((uint16_t)lcore_id);
	hdr->estimate = rte_cpu_to_be_32(estimate);
	hdr->threshold = rte_cpu_to_be_32(config.threshold);
	hdr->orig_len = rte_cpu_to_be_32(m->pkt_len);
	memcpy(hdr + 1, rte_pktmbuf_mtod(m, const void *), snap);
	return r;
}

/* Inspect one packet; append it and any report it causes to out[]. */
static void
inspect_packet(struct rte_mbuf *m, struct rte_mbuf **out, uint16_t *nb_out,
	       struct lcore_stats *st, unsigned int lcore_id)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	const struct rte_ipv4_hdr *ip;
	const uint8_t *l4;
	uint8_t key[13];
	uint32_t estimate;
	uint32_t first_hash = 0;
	struct rte_mbuf *report;

	out[(*nb_out)++] = m;
	if (m->data_len < sizeof(*eth) + sizeof(*ip) ||
	    eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return;
	ip = (const struct rte_ipv4_hdr *)(eth + 1);
	if (ip->next_proto_id != IPPROTO_TCP && ip->next_proto_id != IPPROTO_UDP)
		return;
	if ((rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK) != 0)
		return;
	l4 = (const uint8_t *)ip + rte_ipv4_hdr_len(ip);
	if (l4 + 4 > rte_pktmbuf_mtod(m, const uint8_t *) + m->data_len)
		return;

	key[0] = ip->next_proto_id;
	memcpy(&key[1], &ip->src_addr, 4);
	memcpy(&key[5], &ip->dst_addr, 4);
	memcpy(&key[9], l4, 4); /* source and destination port */
	estimate = sketch_count(key, &first_hash);
	st->counted++;

	if (estimate >= config.threshold) {
		const uint32_t bit = first_hash % ALERT_BITS;
		const uint64_t mask = UINT64_C(1) << (bit % 64);

		if ((__atomic_fetch_or(&alerted[bit / 64], mask, __ATOMIC_RELAXED) & mask) == 0) {
			__atomic_fetch_add(&alerts_raised, 1, __ATOMIC_RELAXED);
			log_alert(key, estimate, lcore_id);
			report = make_report(m, REPORT_ALERT, estimate, lcore_id);
			if (report != NULL) {
				out[(*nb_out)++] = report;
				st->alerts++;
			}
		}
	}
	if (config.sample_below != 0 && rte_rand() < config.sample_below) {
		report = make_report(m, REPORT_SAMPLE, estimate, lcore_id);
		if (report != NULL) {
			out[(*nb_out)++] = report;
			st->samples++;
		}
	}
}

static void
send_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
	   struct lcore_stats *st)
{
	uint16_t sent = 0;
	unsigned int tries = 0;

	while (sent < n && tries++ < 100)
		sent += rte_eth_tx_burst(port, queue, pkts + sent, n - sent);
	st->tx += sent;
	st->dropped += n - sent;
	while (sent < n)
		rte_pktmbuf_free(pkts[sent++]);
}

static int
worker_main(__rte_unused void *arg)
{
	const unsigned int lcore_id = rte_lcore_id();
	const uint16_t queue = (uint16_t)lcore_queue[lcore_id];
	struct lcore_stats *st = &stats[lcore_id];
	const uint64_t idle_exit = config.idle_exit_ms * rte_get_tsc_hz() / 1000;
	uint64_t last_rx = rte_get_tsc_cycles();
	unsigned int idle_polls = 0;
	struct rte_mbuf *bufs[BURST_SIZE];
	struct rte_mbuf *out[3 * BURST_SIZE];

	printf("ids: lcore %u polls queue %u\n", lcore_id, queue);
	while (!force_quit) {
		uint64_t now = rte_get_tsc_cycles();
		bool got = false;
		uint16_t port;

		for (port = 0; port < nb_ports; port++) {
			const uint16_t nb_rx = rte_eth_rx_burst(port, queue, bufs, BURST_SIZE);
			uint16_t nb_out = 0;
			uint16_t i;

			if (nb_rx == 0)
				continue;
			got = true;
			st->rx += nb_rx;
			for (i = 0; i < nb_rx; i++)
				inspect_packet(bufs[i], out, &nb_out, st, lcore_id);
			send_burst(nb_ports == 1 ? port : port ^ 1, queue, out, nb_out, st);
		}
		if (got) {
			last_rx = now;
			idle_polls = 0;
			continue;
		}
		if (idle_exit != 0 && now - last_rx > idle_exit)
			break;
		if (++idle_polls >= IDLE_POLLS_BEFORE_SLEEP) {
			const struct timespec pause_ts = { 0, IDLE_SLEEP_US * 1000 };

			rte_pause();
			nanosleep(&pause_ts, NULL);
		}
	}
	return 0;
}

/* --- set-up --- */

static int
port_init(uint16_t port)
{
	struct rte_eth_conf port_conf = { 0 };
	struct rte_eth_dev_info dev_info;
	uint16_t nb_rxd = RX_RING_SIZE;
	uint16_t nb_txd = TX_RING_SIZE;
	uint16_t q;
	int ret;

	ret = rte_eth_dev_info_get(port, &dev_info);
	if (ret != 0)
		return ret;
	if (dev_info.max_rx_queues < nb_queues || dev_info.max_tx_queues < nb_queues) {
		fprintf(stderr, "ids: port %u has %u rx / %u tx queues but %u workers "
			"need one each (give the vdev one rx_pcap= and tx_pcap= per worker)\n",
			port, dev_info.max_rx_queues, dev_info.max_tx_queues, nb_queues);
		return -EINVAL;
	}
	ret = rte_eth_dev_configure(port, nb_queues, nb_queues, &port_conf);
	if (ret != 0)
		return ret;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
	if (ret != 0)
		return ret;
	for (q = 0; q < nb_queues; q++) {
		ret = rte_eth_rx_queue_setup(port, q, nb_rxd, rte_eth_dev_socket_id(port), NULL,
					     pktmbuf_pool);
		if (ret < 0)
			return ret;
		ret = rte_eth_tx_queue_setup(port, q, nb_txd, rte_eth_dev_socket_id(port), NULL);
		if (ret < 0)
			return ret;
	}
	ret = rte_eth_dev_start(port);
	if (ret < 0)
		return ret;
	rte_eth_promiscuous_enable(port);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ids [EAL options] -- [--threshold N] [--rows N] [--cols N]\n"
		"           [--sample-rate P] [--idle-exit-ms N]\n");
}

static int
parse_u64(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "ids: %s: '%s' is not a number between %" PRIu64 " and %"
			PRIu64 "\n", opt, text, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_args(int argc, char **argv)
{
	enum { OPT_THR = 256, OPT_ROWS, OPT_COLS, OPT_SAMPLE, OPT_IDLE };
	static const struct option longopts[] = {
		{ "threshold", required_argument, NULL, OPT_THR },
		{ "rows", required_argument, NULL, OPT_ROWS },
		{ "cols", required_argument, NULL, OPT_COLS },
		{ "sample-rate", required_argument, NULL, OPT_SAMPLE },
		{ "idle-exit-ms", required_argument, NULL, OPT_IDLE },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	char *end;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_THR:
			if (parse_u64("--threshold", optarg, 1, UINT32_MAX, &v) < 0)
				return -1;
			config.threshold = (uint32_t)v;
			break;
		case OPT_ROWS:
			if (parse_u64("--rows", optarg, 1, MAX_ROWS, &v) < 0)
				return -1;
			config.rows = (uint32_t)v;
			break;
		case OPT_COLS:
			if (parse_u64("--cols", optarg, 1, 1u << 24, &v) < 0)
				return -1;
			config.cols = (uint32_t)v;
			break;
		case OPT_SAMPLE:
			errno = 0;
			config.sample_rate = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    !(config.sample_rate >= 0.0 && config.sample_rate <= 1.0)) {
				fprintf(stderr, "ids: --sample-rate: '%s' is not a probability "
					"between 0 and 1\n", optarg);
				return -1;
			}
			break;
		case OPT_IDLE:
			if (parse_u64("--idle-exit-ms", optarg, 0, 86400000,
				      &config.idle_exit_ms) < 0)
				return -1;
			break;
		default:
			fprintf(stderr, "ids: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage();
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ids: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	config.sample_below = config.sample_rate >= 1.0 ? UINT64_MAX :
		(uint64_t)ldexp(config.sample_rate, 64);
	return 0;
}

int
main(int argc, char **argv)
{
	unsigned int lcore_id;
	struct lcore_stats total = { 0 };
	unsigned int i;
	uint16_t port;
	int ret;

	ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		fprintf(stderr, "ids: EAL initialization failed: %s (check the EAL options and "
			"the vdev files)\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= ret;
	argv += ret;
	if (parse_args(argc, argv) < 0) {
		rte_eal_cleanup();
		return 2;
	}
	signal(SIGINT, signal_handler);
	signal(SIGTERM, signal_handler);

	nb_ports = rte_eth_dev_count_avail();
	nb_queues = (uint16_t)(rte_lcore_count() - 1);
	if (nb_ports < 1 || nb_ports > 2) {
		fprintf(stderr, "ids: found %u ports, need one or two (check the --vdev "
			"arguments and the files they name)\n", nb_ports);
		rte_eal_cleanup();
		return 2;
	}
	if (nb_queues < 1) {
		fprintf(stderr, "ids: need at least two lcores (the main one and a worker)\n");
		rte_eal_cleanup();
		return 2;
	}
	pktmbuf_pool = rte_pktmbuf_pool_create("mbuf_pool", NUM_MBUFS * nb_ports, MBUF_CACHE_SIZE,
					       0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	sketch = rte_zmalloc("ids_sketch", (size_t)config.rows * config.cols * sizeof(uint32_t),
			     RTE_CACHE_LINE_SIZE);
	if (pktmbuf_pool == NULL || sketch == NULL) {
		fprintf(stderr, "ids: out of memory for mbufs or the sketch (raise -m)\n");
		rte_eal_cleanup();
		return 1;
	}
	RTE_ETH_FOREACH_DEV(port) {
		if (port_init(port) != 0) {
			fprintf(stderr, "ids: cannot initialize port %u\n", port);
			rte_eal_cleanup();
			return 1;
		}
	}
	ret = 0;
	RTE_LCORE_FOREACH_WORKER(lcore_id)
		lcore_queue[lcore_id] = (unsigned int)ret++;

	rte_eal_mp_remote_launch(worker_main, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	RTE_LCORE_FOREACH_WORKER(lcore_id) {
		total.rx += stats[lcore_id].rx;
		total.tx += stats[lcore_id].tx;
		total.dropped += stats[lcore_id].dropped;
		total.counted += stats[lcore_id].counted;
		total.alerts += stats[lcore_id].alerts;
		total.samples += stats[lcore_id].samples;
	}
	printf("ids: rx=%" PRIu64 " tx=%" PRIu64 " dropped=%" PRIu64 " counted=%" PRIu64
	       " alerts=%" PRIu64 " samples=%" PRIu64 " raised=%" PRIu64 "\n", total.rx, total.tx,
	       total.dropped, total.counted, total.alerts, total.samples,
	       __atomic_load_n(&alerts_raised, __ATOMIC_RELAXED));
	for (i = 0; i < alert_log_len; i++) {
		const uint8_t *k = alert_log[i].key;

		printf("ids: alert proto %u %u.%u.%u.%u:%u > %u.%u.%u.%u:%u estimate %u lcore %u\n",
		       k[0], k[1], k[2], k[3], k[4], k[9] << 8 | k[10], k[5], k[6], k[7], k[8],
		       k[11] << 8 | k[12], alert_log[i].estimate, alert_log[i].lcore);
	}

	RTE_ETH_FOREACH_DEV(port) {
		rte_eth_dev_stop(port);
		rte_eth_dev_close(port);
	}
	rte_eal_cleanup();
	return 0;
}

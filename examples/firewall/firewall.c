/* SPDX-License-Identifier: BSD-3-Clause
 *
 * firewall: a multi-core stateful firewall with a global connection limit.
 *
 * A TCP connection is admitted by its opening SYN, a UDP flow by its first packet, and only
 * while fewer than --max-conns connections are live across all cores (the rule "allow new
 * connections unless A >= limit"): the live count is checked and incremented under one mutex
 * shared by every core. Packets of connections that were not admitted are dropped, as are TCP
 * packets other than a SYN that belong to no live connection. A connection ends with a RST, once
 * both sides have sent a FIN, or after --timeout-ms without packets; its slot is then freed.
 *
 * Each worker lcore polls receive queue i of every port and sends on queue i of the paired port
 * (port 0 <-> 1; the same port when there is only one). The NIC's symmetric RSS puts both
 * directions of a connection on the same queue, so connection tables are per core.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
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
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_jhash.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#define NUM_MBUFS 8191
#define MBUF_CACHE_SIZE 250
#define RX_RING_SIZE 1024
#define TX_RING_SIZE 1024
#define BURST_SIZE 32
#define CONN_TABLE_SIZE 65536
#define EXPIRE_SCAN_MS 10
#define IDLE_POLLS_BEFORE_SLEEP 64
#define IDLE_SLEEP_US 50
#define MAX_EXPIRED_PER_SCAN 256

/* A connection in canonical form: endpoint a is the numerically lower (address, port). */
struct conn_key {
	uint32_t a_ip; /* network byte order, all fields */
	uint32_t b_ip;
	uint16_t a_port;
	uint16_t b_port;
	uint8_t proto;
	uint8_t pad[3];
} __rte_packed;

#define FIN_FROM_A 0x1
#define FIN_FROM_B 0x2

struct conn {
	struct conn_key key;
	uint8_t fins; /* FIN_FROM_A | FIN_FROM_B */
	uint64_t last_seen; /* TSC */
};

struct conn_table {
	struct rte_hash *hash;
	struct conn *conns; /* indexed by rte_hash position */
	uint64_t next_scan;
};

struct lcore_stats {
	uint64_t rx;
	uint64_t tx;
	uint64_t dropped;
	uint64_t admitted;
	uint64_t rejected;
	uint64_t closed;
	uint64_t expired;
} __rte_cache_aligned;

struct fw_config {
	uint32_t max_conns;
	uint64_t timeout_ms;
	uint64_t idle_exit_ms; /* 0: run until signalled */
};

static volatile bool force_quit;
static struct fw_config config = {
	.max_conns = 5,
	.timeout_ms = 10000,
};
static struct rte_mempool *pktmbuf_pool;
static uint16_t nb_ports;
static uint16_t nb_queues;
static struct conn_table conn_tables[RTE_MAX_LCORE];
static struct lcore_stats stats[RTE_MAX_LCORE];
static unsigned int lcore_queue[RTE_MAX_LCORE];

/* The global admission state: live_conns and peak_live_conns are guarded by admit_lock. */
static pthread_mutex_t admit_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t live_conns;
static uint32_t peak_live_conns;
static uint64_t rejected_conns; /* updated with atomics, read at exit */

static void
signal_handler(int signum)
{
	if (signum == SIGINT || signum == SIGTERM)
		force_quit = true;
}

/* --- global admission --- */

static bool
admit_connection(void)
{
	bool admitted = false;

	pthread_mutex_lock(&admit_lock);
	if (live_conns < config.max_conns) {
		live_conns++;
		if (live_conns > peak_live_conns)
			peak_live_conns = live_conns;
		admitted = true;
	}
	pthread_mutex_unlock(&admit_lock);
	if (!admitted)
		__atomic_fetch_add(&rejected_conns, 1, __ATOMIC_RELAXED);
	return admitted;
}

static void
release_connection(void)
{
	pthread_mutex_lock(&admit_lock);
	live_conns--;
	pthread_mutex_unlock(&admit_lock);
}

/* --- per-core connection table --- */

static int
conn_table_init(unsigned int lcore_id)
{
	char name[RTE_HASH_NAMESIZE];
	struct rte_hash_parameters params = {
		.entries = CONN_TABLE_SIZE,
		.key_len = sizeof(struct conn_key),
		.hash_func = rte_jhash,
		.socket_id = (int)rte_socket_id(),
	};
	struct conn_table *t = &conn_tables[lcore_id];

	snprintf(name, sizeof(name), "fw_conns_%u", lcore_id);
	params.name = name;
	t->hash = rte_hash_create(&params);
	if (t->hash == NULL)
		return -ENOMEM;
	t->conns = rte_zmalloc("fw_conns", CONN_TABLE_SIZE * sizeof(struct conn), 0);
	if (t->conns == NULL)
		return -ENOMEM;
	return 0;
}

static void
close_connection(struct conn_table *t, const struct conn_key *key)
{
	if (rte_hash_del_key(t->hash, key) >= 0)
		release_connection();
}

static void
expire_connections(struct conn_table *t, struct lcore_stats *st, uint64_t now)
{
	const uint64_t timeout = config.timeout_ms * rte_get_tsc_hz() / 1000;
	struct conn_key expired[MAX_EXPIRED_PER_SCAN];
	unsigned int nb_expired = 0;
	const void *key;
	void *data;
	uint32_t next = 0;
	int32_t pos;
	unsigned int i;

	while (nb_expired < MAX_EXPIRED_PER_SCAN &&
	       (pos = rte_hash_iterate(t->hash, &key, &data, &next)) >= 0) {
		if (now - t->conns[pos].last_seen > timeout)
			expired[nb_expired++] = t->conns[pos].key;
	}
	for (i = 0; i < nb_expired; i++)
		close_connection(t, &expired[i]);
	st->expired += nb_expired;
}

/* --- packet processing --- */

/* Returns true when the packet is to be sent on, false when it is to be dropped. */
static bool
filter_packet(struct rte_mbuf *m, struct conn_table *t, struct lcore_stats *st, uint64_t now)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip;
	struct conn_key key = { 0 };
	const uint8_t *l4;
	uint16_t sport, dport;
	uint8_t tcp_flags = 0;
	uint8_t fin_bit;
	int32_t pos;

	if (m->data_len < sizeof(*eth) + sizeof(*ip) ||
	    eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return false;
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	if (ip->next_proto_id != IPPROTO_TCP && ip->next_proto_id != IPPROTO_UDP)
		return false;
	if ((rte_be_to_cpu_16(ip->fragment_offset) &
	     (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0)
		return false;
	l4 = (const uint8_t *)ip + rte_ipv4_hdr_len(ip);
	if (l4 + (ip->next_proto_id == IPPROTO_TCP ? sizeof(struct rte_tcp_hdr) :
		  sizeof(struct rte_udp_hdr)) > rte_pktmbuf_mtod(m, uint8_t *) + m->data_len)
		return false;
	sport = ((const uint16_t *)l4)[0];
	dport = ((const uint16_t *)l4)[1];
	if (ip->next_proto_id == IPPROTO_TCP)
		tcp_flags = ((const struct rte_tcp_hdr *)l4)->tcp_flags;

	key.proto = ip->next_proto_id;
	if (((uint64_t)rte_be_to_cpu_32(ip->src_addr) << 16 | rte_be_to_cpu_16(sport)) <=
	    ((uint64_t)rte_be_to_cpu_32(ip->dst_addr) << 16 | rte_be_to_cpu_16(dport))) {
		key.a_ip = ip->src_addr;
		key.a_port = sport;
		key.b_ip = ip->dst_addr;
		key.b_port = dport;
		fin_bit = FIN_FROM_A;
	} else {
		key.a_ip = ip->dst_addr;
		key.a_port = dport;
		key.b_ip = ip->src_addr;
		key.b_port = sport;
		fin_bit = FIN_FROM_B;
	}

	pos = rte_hash_lookup(t->hash, &key);
	if (pos >= 0) {
		struct conn *c = &t->conns[pos];

		c->last_seen = now;
		if (tcp_flags & RTE_TCP_RST_FLAG) {
			close_connection(t, &key);
			st->closed++;
		} else if (tcp_flags & RTE_TCP_FIN_FLAG) {
			c->fins |= fin_bit;
			if (c->fins == (FIN_FROM_A | FIN_FROM_B)) {
				close_connection(t, &key);
				st->closed++;
			}
		}
		return true;
	}

	/* Unknown connection: only a TCP SYN or a UDP datagram may open one. */
	if (key.proto == IPPROTO_TCP &&
	    (tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG |
			  RTE_TCP_FIN_FLAG)) != RTE_TCP_SYN_FLAG)
		return false;
	if (!admit_connection()) {
		st->rejected++;
		return false;
	}
	pos = rte_hash_add_key(t->hash, &key);
	if (pos < 0) { /* table full: give the slot back */
		release_connection();
		return false;
	}
	t->conns[pos].key = key;
	t->conns[pos].fins = 0;
	t->conns[pos].last_seen = now;
	st->admitted++;
	return true;
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
	struct conn_table *t = &conn_tables[lcore_id];
	struct lcore_stats *st = &stats[lcore_id];
	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t scan_interval = EXPIRE_SCAN_MS * hz / 1000;
	const uint64_t idle_exit = config.idle_exit_ms * hz / 1000;
	uint64_t last_rx = rte_get_tsc_cycles();
	unsigned int idle_polls = 0;
	struct rte_mbuf *bufs[BURST_SIZE];
	struct rte_mbuf *out[BURST_SIZE];

	printf("firewall: lcore %u polls queue %u\n", lcore_id, queue);
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
			for (i = 0; i < nb_rx; i++) {
				if (filter_packet(bufs[i], t, st, now)) {
					out[nb_out++] = bufs[i];
				} else {
					st->dropped++;
					rte_pktmbuf_free(bufs[i]);
				}
			}
			if (nb_out > 0)
				send_burst(nb_ports == 1 ? port : port ^ 1, queue, out, nb_out, st);
		}
		if (now >= t->next_scan) {
			expire_connections(t, st, now);
			t->next_scan = now + scan_interval;
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
		fprintf(stderr, "firewall: port %u has %u rx / %u tx queues but %u workers "
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
	fprintf(stderr, "usage: firewall [EAL options] -- [--max-conns N] [--timeout-ms N] "
		"[--idle-exit-ms N]\n");
}

static int
parse_u64(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "firewall: %s: '%s' is not a number between %" PRIu64 " and %"
			PRIu64 "\n", opt, text, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_args(int argc, char **argv)
{
	enum { OPT_MAX = 256, OPT_TMO, OPT_IDLE };
	static const struct option longopts[] = {
		{ "max-conns", required_argument, NULL, OPT_MAX },
		{ "timeout-ms", required_argument, NULL, OPT_TMO },
		{ "idle-exit-ms", required_argument, NULL, OPT_IDLE },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_MAX:
			if (parse_u64("--max-conns", optarg, 0, CONN_TABLE_SIZE, &v) < 0)
				return -1;
			config.max_conns = (uint32_t)v;
			break;
		case OPT_TMO:
			if (parse_u64("--timeout-ms", optarg, 1, 86400000, &config.timeout_ms) < 0)
				return -1;
			break;
		case OPT_IDLE:
			if (parse_u64("--idle-exit-ms", optarg, 0, 86400000,
				      &config.idle_exit_ms) < 0)
				return -1;
			break;
		default:
			fprintf(stderr, "firewall: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage();
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "firewall: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	unsigned int lcore_id;
	struct lcore_stats total = { 0 };
	uint16_t port;
	int ret;

	ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		fprintf(stderr, "firewall: EAL initialization failed: %s (check the EAL options "
			"and the vdev files)\n", rte_strerror(rte_errno));
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
		fprintf(stderr, "firewall: found %u ports, need one or two (check the --vdev "
			"arguments and the files they name)\n", nb_ports);
		rte_eal_cleanup();
		return 2;
	}
	if (nb_queues < 1) {
		fprintf(stderr, "firewall: need at least two lcores (the main one and a worker)\n");
		rte_eal_cleanup();
		return 2;
	}
	pktmbuf_pool = rte_pktmbuf_pool_create("mbuf_pool", NUM_MBUFS * nb_ports, MBUF_CACHE_SIZE,
					       0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (pktmbuf_pool == NULL) {
		fprintf(stderr, "firewall: out of memory for mbufs (raise -m)\n");
		rte_eal_cleanup();
		return 1;
	}
	RTE_ETH_FOREACH_DEV(port) {
		if (port_init(port) != 0) {
			fprintf(stderr, "firewall: cannot initialize port %u\n", port);
			rte_eal_cleanup();
			return 1;
		}
	}
	ret = 0;
	RTE_LCORE_FOREACH_WORKER(lcore_id) {
		lcore_queue[lcore_id] = (unsigned int)ret++;
		if (conn_table_init(lcore_id) < 0) {
			fprintf(stderr, "firewall: out of memory for the table of lcore %u\n",
				lcore_id);
			rte_eal_cleanup();
			return 1;
		}
	}

	rte_eal_mp_remote_launch(worker_main, NULL, SKIP_MAIN);
	rte_eal_mp_wait_lcore();

	RTE_LCORE_FOREACH_WORKER(lcore_id) {
		total.rx += stats[lcore_id].rx;
		total.tx += stats[lcore_id].tx;
		total.dropped += stats[lcore_id].dropped;
		total.admitted += stats[lcore_id].admitted;
		total.rejected += stats[lcore_id].rejected;
		total.closed += stats[lcore_id].closed;
		total.expired += stats[lcore_id].expired;
	}
	printf("firewall: rx=%" PRIu64 " tx=%" PRIu64 " dropped=%" PRIu64 " admitted=%" PRIu64
	       " rejected=%" PRIu64 " closed=%" PRIu64 " expired=%" PRIu64 " live=%u peak=%u"
	       " max=%u\n", total.rx, total.tx, total.dropped, total.admitted,
	       __atomic_load_n(&rejected_conns, __ATOMIC_RELAXED), total.closed, total.expired,
	       live_conns, peak_live_conns, config.max_conns);

	RTE_ETH_FOREACH_DEV(port) {
		rte_eth_dev_stop(port);
		rte_eth_dev_close(port);
	}
	rte_eal_cleanup();
	return 0;
}

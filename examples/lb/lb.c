/* SPDX-License-Identifier: BSD-3-Clause
 *
 * lb: a multi-core layer-4 load balancer with direct server return.
 *
 * Packets addressed to the virtual IP (--vip) are sent to one of the --backends: the first
 * packet of a flow picks a backend from the backend table shared by all cores (least
 * connections, or round robin), and every later packet of the flow keeps that backend. The
 * destination IP (checksums fixed) and MAC (02:be:<backend IP>) are rewritten. Replies from the
 * VIP and all other IPv4 traffic pass unchanged. A flow stops counting as a backend connection
 * at its first FIN or RST; its entry is kept, so stragglers keep their backend, until it has
 * been idle for --timeout-ms.
 *
 * Each worker lcore polls receive queue i of every port and sends on queue i of the paired port
 * (port 0 <-> 1; the same port when there is only one). The NIC's symmetric RSS puts both
 * directions of a flow on the same queue, so flow tables are per core.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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
#include <rte_spinlock.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#define NUM_MBUFS 8191
#define MBUF_CACHE_SIZE 250
#define RX_RING_SIZE 1024
#define TX_RING_SIZE 1024
#define BURST_SIZE 32
#define FLOW_TABLE_SIZE 65536
#define MAX_BACKENDS 64
#define EXPIRE_SCAN_MS 10
#define IDLE_POLLS_BEFORE_SLEEP 64
#define IDLE_SLEEP_US 50
#define MAX_EXPIRED_PER_SCAN 256

enum lb_policy { POLICY_LEAST_CONN, POLICY_ROUND_ROBIN };

struct flow_key {
	uint32_t client_ip; /* network byte order, all fields */
	uint32_t vip;
	uint16_t client_port;
	uint16_t vip_port;
	uint8_t proto;
	uint8_t pad[3];
} __rte_packed;

struct lb_flow {
	struct flow_key key;
	uint16_t backend;
	uint8_t closing; /* FIN or RST seen: no longer counted as a backend connection */
	uint64_t last_seen; /* TSC */
};

/* The backend table: active and assigned are guarded by backend_lock. */
struct backend {
	uint32_t ip; /* network byte order */
	struct rte_ether_addr mac;
	uint32_t active;   /* flows currently assigned and not closing */
	uint64_t assigned; /* flows ever assigned */
};

struct flow_table {
	struct rte_hash *hash;
	struct lb_flow *flows; /* indexed by rte_hash position */
	uint64_t next_scan;
};

struct lcore_stats {
	uint64_t rx;
	uint64_t tx;
	uint64_t dropped;
	uint64_t to_backend;
	uint64_t passed;
	uint64_t new_flows;
	uint64_t expired;
} __rte_cache_aligned;

struct lb_config {
	uint32_t vip; /* network byte order */
	enum lb_policy policy;
	uint64_t timeout_ms;
	uint64_t idle_exit_ms; /* 0: run until signalled */
};

static volatile bool force_quit;
static struct lb_config config = {
	.policy = POLICY_LEAST_CONN,
	.timeout_ms = 10000,
};
static struct rte_mempool *pktmbuf_pool;
static uint16_t nb_ports;
static uint16_t nb_queues;
static struct backend backends[MAX_BACKENDS];
static unsigned int nb_backends;
static rte_spinlock_t backend_lock = RTE_SPINLOCK_INITIALIZER;
static uint32_t rr_cursor;       /* round-robin position, advanced with atomics */
static uint64_t flows_balanced;  /* updated with atomics by every core */
static struct flow_table flow_tables[RTE_MAX_LCORE];
static struct lcore_stats stats[RTE_MAX_LCORE];
static unsigned int lcore_queue[RTE_MAX_LCORE];

static void
signal_handler(int signum)
{
	if (signum == SIGINT || signum == SIGTERM)
		force_quit = true;
}

/* --- checksums (RFC 1624 incremental update; all values in network byte order) --- */

static inline uint16_t
csum_replace16(uint16_t csum, uint16_t old_val, uint16_t new_val)
{
	uint32_t sum = (uint16_t)~csum + (uint16_t)~old_val + new_val;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static inline uint16_t
csum_replace32(uint16_t csum, uint32_t old_val, uint32_t new_val)
{
	csum = csum_replace16(csum, (uint16_t)(old_val >> 16), (uint16_t)(new_val >> 16));
	return csum_replace16(csum, (uint16_t)(old_val & 0xffff), (uint16_t)(new_val & 0xffff));
}

/* Rewrite one address and one port of a TCP/UDP packet, fixing the IP and L4 checksums.
 * Fields are reached by offset: the DPDK header structs are packed. */
static void
rewrite_endpoint(struct rte_ipv4_hdr *ip, uint8_t *l4, bool source, uint32_t new_ip,
		 uint16_t new_port_be)
{
	uint32_t *addr = (uint32_t *)((uint8_t *)ip + (source ? 12 : 16));
	uint16_t *port = (uint16_t *)(l4 + (source ? 0 : 2));
	uint16_t *l4_csum = (uint16_t *)(l4 + (ip->next_proto_id == IPPROTO_TCP ? 16 : 6));
	const uint32_t old_ip = *addr;
	const uint16_t old_port = *port;

	ip->hdr_checksum = csum_replace32(ip->hdr_checksum, old_ip, new_ip);
	if (ip->next_proto_id == IPPROTO_TCP || *l4_csum != 0) {
		uint16_t c = csum_replace32(*l4_csum, old_ip, new_ip);

		c = csum_replace16(c, old_port, new_port_be);
		if (ip->next_proto_id == IPPROTO_UDP && c == 0)
			c = 0xffff;
		*l4_csum = c;
	}
	*addr = new_ip;
	*port = new_port_be;
}

/* --- the shared backend table --- */

static uint16_t
backend_pick(void)
{
	unsigned int best = 0;
	unsigned int i;

	if (config.policy == POLICY_ROUND_ROBIN) {
		best = __atomic_fetch_add(&rr_cursor, 1, __ATOMIC_RELAXED) % nb_backends;
		rte_spinlock_lock(&backend_lock);
	} else {
		rte_spinlock_lock(&backend_lock);
		for (i = 1; i < nb_backends; i++) {
			if (backends[i].active < backends[best].active ||
			    (backends[i].active == backends[best].active &&
			     backends[i].assigned < backends[best].assigned))
				best = i;
		}
	}
	backends[best].active++;
	backends[best].assigned++;
	rte_spinlock_unlock(&backend_lock);
	__atomic_fetch_add(&flows_balanced, 1, __ATOMIC_RELAXED);
	return (uint16_t)best;
}

static void
backend_release(uint16_t b)
{
	rte_spinlock_lock(&backend_lock);
	backends[b].active--;
	rte_spinlock_unlock(&backend_lock);
}

/* --- per-core flow table --- */

static int
flow_table_init(unsigned int lcore_id)
{
	char name[RTE_HASH_NAMESIZE];
	struct rte_hash_parameters params = {
		.entries = FLOW_TABLE_SIZE,
		.key_len = sizeof(struct flow_key),
		.hash_func = rte_jhash,
		.socket_id = (int)rte_socket_id(),
	};
	struct flow_table *t = &flow_tables[lcore_id];

	snprintf(name, sizeof(name), "lb_flows_%u", lcore_id);
	params.name = name;
	t->hash = rte_hash_create(&params);
	if (t->hash == NULL)
		return -ENOMEM;
	t->flows = rte_zmalloc("lb_flows", FLOW_TABLE_SIZE * sizeof(struct lb_flow), 0);
	if (t->flows == NULL)
		return -ENOMEM;
	return 0;
}

static void
flow_closing(struct lb_flow *f)
{
	if (!f->closing) {
		f->closing = 1;
		backend_release(f->backend);
	}
}

static void
expire_flows(struct flow_table *t, struct lcore_stats *st, uint64_t now)
{
	const uint64_t timeout = config.timeout_ms * rte_get_tsc_hz() / 1000;
	struct flow_key expired[MAX_EXPIRED_PER_SCAN];
	unsigned int nb_expired = 0;
	const void *key;
	void *data;
	uint32_t next = 0;
	int32_t pos;
	unsigned int i;

	while (nb_expired < MAX_EXPIRED_PER_SCAN &&
	       (pos = rte_hash_iterate(t->hash, &key, &data, &next)) >= 0) {
		if (now - t->flows[pos].last_seen > timeout)
			expired[nb_expired++] = t->flows[pos].key;
	}
	for (i = 0; i < nb_expired; i++) {
		pos = rte_hash_lookup(t->hash, &expired[i]);
		if (pos < 0)
			continue;
		flow_closing(&t->flows[pos]);
		rte_hash_del_key(t->hash, &expired[i]);
		st->expired++;
	}
}

/* --- packet processing --- */

/* Returns true when the packet is to be sent on, false when it is to be dropped. */
static bool
balance_packet(struct rte_mbuf *m, struct flow_table *t, struct lcore_stats *st, uint64_t now)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip;
	struct flow_key key = { 0 };
	struct lb_flow *f;
	const struct backend *b;
	uint8_t *l4;
	uint16_t *ports;
	uint8_t tcp_flags = 0;
	int32_t pos;

	if (m->data_len < sizeof(*eth) + sizeof(*ip) ||
	    eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return false;
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	if (ip->next_proto_id != IPPROTO_TCP && ip->next_proto_id != IPPROTO_UDP)
		goto pass;
	if ((rte_be_to_cpu_16(ip->fragment_offset) &
	     (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0)
		goto pass_unless_to_vip;
	l4 = (uint8_t *)ip + rte_ipv4_hdr_len(ip);
	if (l4 + (ip->next_proto_id == IPPROTO_TCP ? sizeof(struct rte_tcp_hdr) :
		  sizeof(struct rte_udp_hdr)) > rte_pktmbuf_mtod(m, uint8_t *) + m->data_len)
		goto pass_unless_to_vip;
	ports = (uint16_t *)l4;
	if (ip->next_proto_id == IPPROTO_TCP)
		tcp_flags = ((struct rte_tcp_hdr *)l4)->tcp_flags;

	if (ip->src_addr == config.vip) {
		/* A reply sent from the VIP: note the end of the connection, send it on as is. */
		key.client_ip = ip->dst_addr;
		key.client_port = ports[1];
		key.vip = ip->src_addr;
		key.vip_port = ports[0];
		key.proto = ip->next_proto_id;
		pos = rte_hash_lookup(t->hash, &key);
		if (pos >= 0 && (tcp_flags & (RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG)))
			flow_closing(&t->flows[pos]);
		goto pass;
	}
	if (ip->dst_addr != config.vip)
		goto pass;

	key.client_ip = ip->src_addr;
	key.client_port = ports[0];
	key.vip = ip->dst_addr;
	key.vip_port = ports[1];
	key.proto = ip->next_proto_id;
	pos = rte_hash_lookup(t->hash, &key);
	if (pos < 0) {
		uint16_t chosen = backend_pick();

		pos = rte_hash_add_key(t->hash, &key);
		if (pos < 0) {
			backend_release(chosen);
			return false;
		}
		f = &t->flows[pos];
		f->key = key;
		f->backend = chosen;
		f->closing = 0;
		st->new_flows++;
	}
	f = &t->flows[pos];
	f->last_seen = now;
	if (tcp_flags & (RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG))
		flow_closing(f);

	b = &backends[f->backend];
	rewrite_endpoint(ip, l4, false, b->ip, ports[1]);
	rte_ether_addr_copy(&b->mac, &eth->dst_addr);
	st->to_backend++;
	return true;

pass_unless_to_vip:
	/* A fragment or truncated header cannot be matched to a flow: never send it to the VIP. */
	if (ip->dst_addr == config.vip)
		return false;
pass:
	st->passed++;
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
	struct flow_table *t = &flow_tables[lcore_id];
	struct lcore_stats *st = &stats[lcore_id];
	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t scan_interval = EXPIRE_SCAN_MS * hz / 1000;
	const uint64_t idle_exit = config.idle_exit_ms * hz / 1000;
	uint64_t last_rx = rte_get_tsc_cycles();
	unsigned int idle_polls = 0;
	struct rte_mbuf *bufs[BURST_SIZE];
	struct rte_mbuf *out[BURST_SIZE];

	printf("lb: lcore %u polls queue %u\n", lcore_id, queue);
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
				if (balance_packet(bufs[i], t, st, now)) {
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
			expire_flows(t, st, now);
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
		fprintf(stderr, "lb: port %u has %u rx / %u tx queues but %u workers "
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
	fprintf(stderr, "usage: lb [EAL options] -- [--vip A.B.C.D] [--backends A.B.C.D,...]\n"
		"          [--policy least-conn|round-robin] [--timeout-ms N]\n"
		"          [--idle-exit-ms N]\n");
}

static int
parse_u64(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "lb: %s: '%s' is not a number between %" PRIu64 " and %"
			PRIu64 "\n", opt, text, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_ipv4(const char *opt, const char *text, uint32_t *out_be)
{
	unsigned int a, b, c, d;
	char extra;

	if (sscanf(text, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 || a > 255 || b > 255 ||
	    c > 255 || d > 255) {
		fprintf(stderr, "lb: %s: '%s' is not an IPv4 address\n", opt, text);
		return -1;
	}
	*out_be = rte_cpu_to_be_32(RTE_IPV4(a, b, c, d));
	return 0;
}

static int
add_backend(const char *text)
{
	uint32_t ip;
	uint32_t host;
	unsigned int i;

	if (parse_ipv4("--backends", text, &ip) < 0)
		return -1;
	if (nb_backends == MAX_BACKENDS) {
		fprintf(stderr, "lb: --backends: more than %d backends\n", MAX_BACKENDS);
		return -1;
	}
	host = rte_be_to_cpu_32(ip);
	backends[nb_backends].ip = ip;
	backends[nb_backends].mac.addr_bytes[0] = 0x02;
	backends[nb_backends].mac.addr_bytes[1] = 0xbe;
	for (i = 0; i < 4; i++)
		backends[nb_backends].mac.addr_bytes[2 + i] = (uint8_t)(host >> (24 - 8 * i));
	nb_backends++;
	return 0;
}

static int
parse_backends(const char *list)
{
	char buf[64 * MAX_BACKENDS];
	char *save = NULL;
	char *item;

	if (strlen(list) >= sizeof(buf)) {
		fprintf(stderr, "lb: --backends: list too long\n");
		return -1;
	}
	strcpy(buf, list);
	nb_backends = 0;
	for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
		if (add_backend(item) < 0)
			return -1;
	if (nb_backends == 0) {
		fprintf(stderr, "lb: --backends: '%s' names no backend\n", list);
		return -1;
	}
	return 0;
}

static int
parse_args(int argc, char **argv)
{
	enum { OPT_VIP = 256, OPT_BACKENDS, OPT_POLICY, OPT_TMO, OPT_IDLE };
	static const struct option longopts[] = {
		{ "vip", required_argument, NULL, OPT_VIP },
		{ "backends", required_argument, NULL, OPT_BACKENDS },
		{ "policy", required_argument, NULL, OPT_POLICY },
		{ "timeout-ms", required_argument, NULL, OPT_TMO },
		{ "idle-exit-ms", required_argument, NULL, OPT_IDLE },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	if (parse_ipv4("--vip", "198.51.100.10", &config.vip) < 0 ||
	    parse_backends("10.10.0.1,10.10.0.2,10.10.0.3,10.10.0.4") < 0)
		return -1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_VIP:
			if (parse_ipv4("--vip", optarg, &config.vip) < 0)
				return -1;
			break;
		case OPT_BACKENDS:
			if (parse_backends(optarg) < 0)
				return -1;
			break;
		case OPT_POLICY:
			if (strcmp(optarg, "least-conn") == 0) {
				config.policy = POLICY_LEAST_CONN;
			} else if (strcmp(optarg, "round-robin") == 0) {
				config.policy = POLICY_ROUND_ROBIN;
			} else {
				fprintf(stderr, "lb: --policy: '%s' is not least-conn or "
					"round-robin\n", optarg);
				return -1;
			}
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
			fprintf(stderr, "lb: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage();
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "lb: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
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
		fprintf(stderr, "lb: EAL initialization failed: %s (check the EAL options and "
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
		fprintf(stderr, "lb: found %u ports, need one or two (check the --vdev "
			"arguments and the files they name)\n", nb_ports);
		rte_eal_cleanup();
		return 2;
	}
	if (nb_queues < 1) {
		fprintf(stderr, "lb: need at least two lcores (the main one and a worker)\n");
		rte_eal_cleanup();
		return 2;
	}
	pktmbuf_pool = rte_pktmbuf_pool_create("mbuf_pool", NUM_MBUFS * nb_ports, MBUF_CACHE_SIZE,
					       0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (pktmbuf_pool == NULL) {
		fprintf(stderr, "lb: out of memory for mbufs (raise -m)\n");
		rte_eal_cleanup();
		return 1;
	}
	RTE_ETH_FOREACH_DEV(port) {
		if (port_init(port) != 0) {
			fprintf(stderr, "lb: cannot initialize port %u\n", port);
			rte_eal_cleanup();
			return 1;
		}
	}
	ret = 0;
	RTE_LCORE_FOREACH_WORKER(lcore_id) {
		lcore_queue[lcore_id] = (unsigned int)ret++;
		if (flow_table_init(lcore_id) < 0) {
			fprintf(stderr, "lb: out of memory for the flow table of lcore %u\n",
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
		total.to_backend += stats[lcore_id].to_backend;
		total.passed += stats[lcore_id].passed;
		total.new_flows += stats[lcore_id].new_flows;
		total.expired += stats[lcore_id].expired;
	}
	printf("lb: rx=%" PRIu64 " tx=%" PRIu64 " dropped=%" PRIu64 " to_backend=%" PRIu64
	       " passed=%" PRIu64 " flows=%" PRIu64 " expired=%" PRIu64 " assigned=", total.rx,
	       total.tx, total.dropped, total.to_backend, total.passed,
	       __atomic_load_n(&flows_balanced, __ATOMIC_RELAXED), total.expired);
	for (i = 0; i < nb_backends; i++)
		printf("%s%" PRIu64, i ? "," : "", backends[i].assigned);
	printf("\n");

	RTE_ETH_FOREACH_DEV(port) {
		rte_eth_dev_stop(port);
		rte_eth_dev_close(port);
	}
	rte_eal_cleanup();
	return 0;
}

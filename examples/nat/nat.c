/* SPDX-License-Identifier: BSD-3-Clause
 *
 * nat: a multi-core source NAT (NAPT).
 *
 * Outbound packets (source inside --internal-net) get their source address rewritten to
 * --external-ip and their source port to a port taken from one pool shared by all cores.
 * Inbound packets addressed to --external-ip are translated back through a shared reverse map.
 * Bindings expire after --timeout-ms without packets, or --closing-timeout-ms after a FIN or RST;
 * the core owning a binding scans its table for expired ones and returns their ports to the pool.
 *
 * Each worker lcore polls receive queue i of every port and sends on queue i of the paired port
 * (port 0 <-> 1; the same port when there is only one). Flows are spread over queues by the NIC
 * (RSS), so a flow's outbound packets always reach the same core: the flow table is per core.
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
#define EXPIRE_SCAN_MS 10
#define IDLE_POLLS_BEFORE_SLEEP 64
#define IDLE_SLEEP_US 50
#define MAX_EXPIRED_PER_SCAN 256

struct flow_key {
	uint32_t src_ip; /* network byte order, all fields */
	uint32_t dst_ip;
	uint16_t src_port;
	uint16_t dst_port;
	uint8_t proto;
	uint8_t pad[3];
} __rte_packed;

/* One binding, owned by the core whose table holds it. */
struct nat_entry {
	struct flow_key key;
	uint16_t ext_port; /* host byte order */
	uint8_t closing;
	uint64_t last_seen; /* TSC */
};

/* Reverse map slot for one external port: who holds it. Guarded by port_pool.lock. */
struct reverse_entry {
	uint32_t int_ip;
	uint16_t int_port;
	uint8_t proto;
	uint8_t in_use;
	uint8_t closing;       /* an inbound FIN/RST was seen */
	uint64_t last_inbound; /* TSC of the latest inbound packet */
};

/* The external ports not bound to any flow: a LIFO stack shared by all cores. */
struct port_pool {
	rte_spinlock_t lock;
	uint16_t *free_ports;
	uint32_t nb_free;
	uint32_t capacity;
};

struct flow_table {
	struct rte_hash *hash;
	struct nat_entry *entries; /* indexed by rte_hash position */
	uint64_t next_scan;
};

struct lcore_stats {
	uint64_t rx;
	uint64_t tx;
	uint64_t translated_out;
	uint64_t translated_in;
	uint64_t dropped;
	uint64_t bindings_created;
	uint64_t bindings_expired;
} __rte_cache_aligned;

struct nat_config {
	uint32_t external_ip; /* network byte order */
	uint32_t internal_net;
	uint32_t internal_mask;
	uint16_t port_min;
	uint16_t port_max;
	uint64_t timeout_ms;
	uint64_t closing_timeout_ms;
	uint64_t idle_exit_ms; /* 0: run until signalled */
};

static volatile bool force_quit;
static struct nat_config config = {
	.port_min = 1024,
	.port_max = 65535,
	.timeout_ms = 10000,
	.closing_timeout_ms = 2000,
};
static struct rte_mempool *pktmbuf_pool;
static uint16_t nb_ports;
static uint16_t nb_queues;
static struct port_pool port_pool;
static struct reverse_entry reverse_map[65536];
static struct flow_table flow_tables[RTE_MAX_LCORE];
static struct lcore_stats stats[RTE_MAX_LCORE];
static unsigned int lcore_queue[RTE_MAX_LCORE];
static uint64_t pool_exhausted_drops; /* updated with atomics by every core */

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

/* --- the shared port pool --- */

static int
port_pool_init(void)
{
	uint32_t n = (uint32_t)config.port_max - config.port_min + 1;
	uint32_t i;

	rte_spinlock_init(&port_pool.lock);
	port_pool.free_ports = rte_malloc("nat_port_pool", n * sizeof(uint16_t), 0);
	if (port_pool.free_ports == NULL)
		return -ENOMEM;
	/* Highest port at the bottom of the stack: a fresh NAT hands out port_min first. */
	for (i = 0; i < n; i++)
		port_pool.free_ports[i] = (uint16_t)(config.port_max - i);
	port_pool.nb_free = n;
	port_pool.capacity = n;
	return 0;
}

/* Take a free port and record who holds it. Returns 0 when the pool is empty. */
static uint16_t
port_alloc(const struct flow_key *key)
{
	uint16_t port = 0;

	rte_spinlock_lock(&port_pool.lock);
	if (port_pool.nb_free > 0) {
		struct reverse_entry *rev;

		port = port_pool.free_ports[--port_pool.nb_free];
		rev = &reverse_map[port];
		rev->int_ip = key->src_ip;
		rev->int_port = key->src_port;
		rev->proto = key->proto;
		rev->in_use = 1;
		rev->closing = 0;
		rev->last_inbound = 0;
	}
	rte_spinlock_unlock(&port_pool.lock);
	return port;
}

static void
port_free(uint16_t port)
{
	rte_spinlock_lock(&port_pool.lock);
	reverse_map[port].in_use = 0;
	port_pool.free_ports[port_pool.nb_free++] = port;
	rte_spinlock_unlock(&port_pool.lock);
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

	snprintf(name, sizeof(name), "nat_flows_%u", lcore_id);
	params.name = name;
	t->hash = rte_hash_create(&params);
	if (t->hash == NULL)
		return -ENOMEM;
	t->entries = rte_zmalloc("nat_entries", FLOW_TABLE_SIZE * sizeof(struct nat_entry), 0);
	if (t->entries == NULL)
		return -ENOMEM;
	return 0;
}

static void
expire_bindings(struct flow_table *t, struct lcore_stats *st, uint64_t now)
{
	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t timeout = config.timeout_ms * hz / 1000;
	const uint64_t closing_timeout = config.closing_timeout_ms * hz / 1000;
	struct flow_key expired[MAX_EXPIRED_PER_SCAN];
	unsigned int nb_expired = 0;
	const void *key;
	void *data;
	uint32_t next = 0;
	int32_t pos;
	unsigned int i;

	while (nb_expired < MAX_EXPIRED_PER_SCAN &&
	       (pos = rte_hash_iterate(t->hash, &key, &data, &next)) >= 0) {
		struct nat_entry *e = &t->entries[pos];
		uint64_t last = e->last_seen;
		bool closing = e->closing;
		struct reverse_entry *rev = &reverse_map[e->ext_port];

		rte_spinlock_lock(&port_pool.lock);
		if (rev->last_inbound > last)
			last = rev->last_inbound;
		closing = closing || rev->closing;
		rte_spinlock_unlock(&port_pool.lock);
		if (now - last > (closing ? closing_timeout : timeout))
			expired[nb_expired++] = e->key;
	}
	for (i = 0; i < nb_expired; i++) {
		pos = rte_hash_del_key(t->hash, &expired[i]);
		if (pos < 0)
			continue;
		port_free(t->entries[pos].ext_port);
		st->bindings_expired++;
	}
}

/* --- packet processing --- */

static inline bool
is_internal(uint32_t addr_be)
{
	return (addr_be & config.internal_mask) == config.internal_net;
}

/* Returns true when the packet is to be sent on, false when it is to be dropped. */
static bool
nat_packet(struct rte_mbuf *m, struct flow_table *t, struct lcore_stats *st, uint64_t now)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip;
	uint8_t *l4;
	uint16_t *ports;
	uint8_t tcp_flags = 0;

	if (m->data_len < sizeof(*eth) + sizeof(*ip) ||
	    eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return false;
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	if (ip->next_proto_id != IPPROTO_TCP && ip->next_proto_id != IPPROTO_UDP)
		return false;
	if ((rte_be_to_cpu_16(ip->fragment_offset) &
	     (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0)
		return false;
	l4 = (uint8_t *)ip + rte_ipv4_hdr_len(ip);
	if (l4 + (ip->next_proto_id == IPPROTO_TCP ? sizeof(struct rte_tcp_hdr) :
		  sizeof(struct rte_udp_hdr)) > rte_pktmbuf_mtod(m, uint8_t *) + m->data_len)
		return false;
	ports = (uint16_t *)l4;
	if (ip->next_proto_id == IPPROTO_TCP)
		tcp_flags = ((struct rte_tcp_hdr *)l4)->tcp_flags;

	if (is_internal(ip->src_addr)) {
		struct flow_key key = {
			.src_ip = ip->src_addr,
			.dst_ip = ip->dst_addr,
			.src_port = ports[0],
			.dst_port = ports[1],
			.proto = ip->next_proto_id,
		};
		struct nat_entry *e;
		int32_t pos = rte_hash_lookup(t->hash, &key);

		if (pos < 0) {
			uint16_t port = port_alloc(&key);

			if (port == 0) {
				__atomic_fetch_add(&pool_exhausted_drops, 1, __ATOMIC_RELAXED);
				return false;
			}
			pos = rte_hash_add_key(t->hash, &key);
			if (pos < 0) {
				port_free(port);
				return false;
			}
			e = &t->entries[pos];
			e->key = key;
			e->ext_port = port;
			e->closing = 0;
			st->bindings_created++;
		}
		e = &t->entries[pos];
		e->last_seen = now;
		if (tcp_flags & (RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG))
			e->closing = 1;
		rewrite_endpoint(ip, l4, true, config.external_ip, rte_cpu_to_be_16(e->ext_port));
		st->translated_out++;
		return true;
	}

	if (ip->dst_addr == config.external_ip) {
		uint16_t port = rte_be_to_cpu_16(ports[1]);
		struct reverse_entry *rev = &reverse_map[port];
		uint32_t int_ip = 0;
		uint16_t int_port = 0;
		bool found = false;

		rte_spinlock_lock(&port_pool.lock);
		if (rev->in_use && rev->proto == ip->next_proto_id) {
			int_ip = rev->int_ip;
			int_port = rev->int_port;
			rev->last_inbound = now;
			if (tcp_flags & (RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG))
				rev->closing = 1;
			found = true;
		}
		rte_spinlock_unlock(&port_pool.lock);
		if (!found)
			return false;
		rewrite_endpoint(ip, l4, false, int_ip, int_port);
		st->translated_in++;
		return true;
	}
	return false;
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

	printf("nat: lcore %u polls queue %u\n", lcore_id, queue);
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
				if (nat_packet(bufs[i], t, st, now)) {
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
			expire_bindings(t, st, now);
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
		fprintf(stderr, "nat: port %u has %u rx / %u tx queues but %u workers "
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
	fprintf(stderr,
		"usage: nat [EAL options] -- [--external-ip A.B.C.D] [--internal-net A.B.C.D/N]\n"
		"           [--port-min N] [--port-max N] [--timeout-ms N]\n"
		"           [--closing-timeout-ms N] [--idle-exit-ms N]\n");
}

static int
parse_u64(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "nat: %s: '%s' is not a number between %" PRIu64 " and %"
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
		fprintf(stderr, "nat: %s: '%s' is not an IPv4 address\n", opt, text);
		return -1;
	}
	*out_be = rte_cpu_to_be_32(RTE_IPV4(a, b, c, d));
	return 0;
}

static int
parse_prefix(const char *opt, const char *text, uint32_t *net_be, uint32_t *mask_be)
{
	char addr[32];
	const char *slash = strchr(text, '/');
	uint64_t len;
	uint32_t mask;

	if (slash == NULL || (size_t)(slash - text) >= sizeof(addr)) {
		fprintf(stderr, "nat: %s: '%s' is not a prefix such as 10.0.0.0/8\n", opt, text);
		return -1;
	}
	memcpy(addr, text, slash - text);
	addr[slash - text] = '\0';
	if (parse_ipv4(opt, addr, net_be) < 0 || parse_u64(opt, slash + 1, 1, 32, &len) < 0)
		return -1;
	mask = len == 32 ? 0xffffffffu : ~(0xffffffffu >> len);
	*mask_be = rte_cpu_to_be_32(mask);
	*net_be &= *mask_be;
	return 0;
}

static int
parse_args(int argc, char **argv)
{
	enum { OPT_EXT = 256, OPT_INT, OPT_PMIN, OPT_PMAX, OPT_TMO, OPT_CTMO, OPT_IDLE };
	static const struct option longopts[] = {
		{ "external-ip", required_argument, NULL, OPT_EXT },
		{ "internal-net", required_argument, NULL, OPT_INT },
		{ "port-min", required_argument, NULL, OPT_PMIN },
		{ "port-max", required_argument, NULL, OPT_PMAX },
		{ "timeout-ms", required_argument, NULL, OPT_TMO },
		{ "closing-timeout-ms", required_argument, NULL, OPT_CTMO },
		{ "idle-exit-ms", required_argument, NULL, OPT_IDLE },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int opt;

	if (parse_ipv4("--external-ip", "203.0.113.1", &config.external_ip) < 0 ||
	    parse_prefix("--internal-net", "10.0.0.0/8", &config.internal_net,
			 &config.internal_mask) < 0)
		return -1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_EXT:
			if (parse_ipv4("--external-ip", optarg, &config.external_ip) < 0)
				return -1;
			break;
		case OPT_INT:
			if (parse_prefix("--internal-net", optarg, &config.internal_net,
					 &config.internal_mask) < 0)
				return -1;
			break;
		case OPT_PMIN:
			if (parse_u64("--port-min", optarg, 1, 65535, &v) < 0)
				return -1;
			config.port_min = (uint16_t)v;
			break;
		case OPT_PMAX:
			if (parse_u64("--port-max", optarg, 1, 65535, &v) < 0)
				return -1;
			config.port_max = (uint16_t)v;
			break;
		case OPT_TMO:
			if (parse_u64("--timeout-ms", optarg, 1, 86400000, &config.timeout_ms) < 0)
				return -1;
			break;
		case OPT_CTMO:
			if (parse_u64("--closing-timeout-ms", optarg, 1, 86400000,
				      &config.closing_timeout_ms) < 0)
				return -1;
			break;
		case OPT_IDLE:
			if (parse_u64("--idle-exit-ms", optarg, 0, 86400000,
				      &config.idle_exit_ms) < 0)
				return -1;
			break;
		default:
			fprintf(stderr, "nat: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage();
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "nat: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (config.port_min > config.port_max) {
		fprintf(stderr, "nat: --port-min %u is above --port-max %u\n", config.port_min,
			config.port_max);
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
		fprintf(stderr, "nat: EAL initialization failed: %s (check the EAL options and "
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
		fprintf(stderr, "nat: found %u ports, need one or two (check the --vdev "
			"arguments and the files they name)\n", nb_ports);
		rte_eal_cleanup();
		return 2;
	}
	if (nb_queues < 1) {
		fprintf(stderr, "nat: need at least two lcores (the main one and a worker)\n");
		rte_eal_cleanup();
		return 2;
	}
	pktmbuf_pool = rte_pktmbuf_pool_create("mbuf_pool", NUM_MBUFS * nb_ports, MBUF_CACHE_SIZE,
					       0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (pktmbuf_pool == NULL || port_pool_init() < 0) {
		fprintf(stderr, "nat: out of memory for mbufs or the port pool (raise -m)\n");
		rte_eal_cleanup();
		return 1;
	}
	RTE_ETH_FOREACH_DEV(port) {
		if (port_init(port) != 0) {
			fprintf(stderr, "nat: cannot initialize port %u\n", port);
			rte_eal_cleanup();
			return 1;
		}
	}
	ret = 0;
	RTE_LCORE_FOREACH_WORKER(lcore_id) {
		lcore_queue[lcore_id] = (unsigned int)ret++;
		if (flow_table_init(lcore_id) < 0) {
			fprintf(stderr, "nat: out of memory for the flow table of lcore %u\n",
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
		total.translated_out += stats[lcore_id].translated_out;
		total.translated_in += stats[lcore_id].translated_in;
		total.dropped += stats[lcore_id].dropped;
		total.bindings_created += stats[lcore_id].bindings_created;
		total.bindings_expired += stats[lcore_id].bindings_expired;
	}
	printf("nat: rx=%" PRIu64 " tx=%" PRIu64 " dropped=%" PRIu64 " out=%" PRIu64 " in=%" PRIu64
	       " bindings=%" PRIu64 " expired=%" PRIu64 " pool_exhausted=%" PRIu64 "\n", total.rx,
	       total.tx, total.dropped, total.translated_out, total.translated_in,
	       total.bindings_created, total.bindings_expired,
	       __atomic_load_n(&pool_exhausted_drops, __ATOMIC_RELAXED));

	RTE_ETH_FOREACH_DEV(port) {
		rte_eth_dev_stop(port);
		rte_eth_dev_close(port);
	}
	rte_eal_cleanup();
	return 0;
}

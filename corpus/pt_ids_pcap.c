// ftmb-corpus: style=pthread libs="-lpcap" args="{corpus}/data/flows.pcap 3"
/*
 * Signature IDS over a pcap trace: main loads the trace with libpcap, the workers scan slices.
 *
 * Exercises: a malloc'd packet array filled before pthread_create and only read afterwards, reached
 * through a global pointer; a table of matcher function pointers; a C11 atomic alert counter bumped
 * with ++ and read by main after the join; a per-flow table under a mutex taken by the caller while
 * a helper updates the flow through its pointer parameter; a __thread buffer holding the previous
 * packet's L4 bytes (its address never taken); a static const local read by every worker;
 * per-thread counters indexed by the thread index.
 *
 * Usage: pt_ids_pcap FILE.pcap [THREADS]
 */
#include <pcap/pcap.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PKTS 4096
#define SNAP 128
#define FLOW_SLOTS 64
#define MAX_THREADS 8

struct pkt_rec {
	uint16_t len;
	uint8_t data[SNAP];
};

struct flow_state {
	uint32_t src;
	unsigned long alerts;
	uint8_t last_rule;
};

typedef int (*matcher_fn)(const uint8_t *l4, unsigned len, uint8_t proto);

static int match_telnet(const uint8_t *l4, unsigned len, uint8_t proto);
static int match_dns(const uint8_t *l4, unsigned len, uint8_t proto);
static int match_long_payload(const uint8_t *l4, unsigned len, uint8_t proto);

static const char *pcap_path; /* EXPECT: thread_private */
static struct pkt_rec *pkts; /* EXPECT: shared_ro */
static size_t n_pkts; /* EXPECT: shared_ro */
static unsigned n_threads = 2; /* EXPECT: shared_ro */
static atomic_ulong alerts; /* EXPECT: shared_rw atomic commutative */
static const matcher_fn matchers[] = { match_telnet, match_dns, match_long_payload }; /* EXPECT: shared_ro */
static pthread_mutex_t flows_mutex = PTHREAD_MUTEX_INITIALIZER; /* EXPECT: shared_rw atomic */
static struct flow_state flows[FLOW_SLOTS]; /* EXPECT: shared_rw lock lock=flows_mutex */
static __thread uint8_t scratch[16]; /* EXPECT: per_core */
static unsigned long scanned[MAX_THREADS]; /* EXPECT: per_core */
static unsigned long repeats[MAX_THREADS]; /* EXPECT: per_core */

static int match_telnet(const uint8_t *l4, unsigned len, uint8_t proto)
{
	return proto == 6 && len >= 4 && (l4[2] << 8 | l4[3]) == 23;
}

static int match_dns(const uint8_t *l4, unsigned len, uint8_t proto)
{
	return proto == 17 && len >= 4 && (l4[2] << 8 | l4[3]) == 53 && len > 30;
}

static int match_long_payload(const uint8_t *l4, unsigned len, uint8_t proto)
{
	static const unsigned threshold = 40; /* EXPECT: shared_ro */

	(void)l4;
	return proto == 6 && len > threshold;
}

/* The caller holds flows_mutex. */
static void record_alert(struct flow_state *f, uint32_t src, uint8_t rule)
{
	if (f->src != src) {
		f->src = src;
		f->alerts = 0;
	}
	f->alerts++;
	f->last_rule = rule;
}

/* Returns whether the packet's first L4 bytes repeat those of this thread's previous packet. */
static int scan_packet(const struct pkt_rec *p)
{
	if (p->len < 34 || p->data[12] != 0x08 || p->data[13] != 0x00)
		return 0;
	const uint8_t *ip = p->data + 14;
	unsigned ihl = (ip[0] & 0x0f) * 4u;
	if (14 + ihl >= p->len)
		return 0;
	const uint8_t *l4 = ip + ihl;
	unsigned l4len = p->len - 14 - ihl;
	uint32_t src = (uint32_t)ip[12] << 24 | ip[13] << 16 | ip[14] << 8 | ip[15];

	for (uint8_t r = 0; r < sizeof matchers / sizeof matchers[0]; r++) {
		if (!matchers[r](l4, l4len, ip[9]))
			continue;
		alerts++;
		pthread_mutex_lock(&flows_mutex);
		record_alert(&flows[src % FLOW_SLOTS], src, r);
		pthread_mutex_unlock(&flows_mutex);
	}

	unsigned same = 0;
	for (unsigned i = 0; i < sizeof scratch && i < l4len; i++) {
		same += scratch[i] == l4[i];
		scratch[i] = l4[i];
	}
	return same == sizeof scratch;
}

static void *ids_worker(void *arg)
{
	const unsigned idx = (unsigned)(uintptr_t)arg;
	size_t begin = n_pkts * idx / n_threads, end = n_pkts * (idx + 1) / n_threads;

	for (size_t i = begin; i < end; i++) {
		repeats[idx] += (unsigned long)scan_packet(&pkts[i]);
		scanned[idx]++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	pthread_t threads[MAX_THREADS];

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE.pcap [THREADS]\n", argv[0]);
		return 2;
	}
	pcap_path = argv[1];
	if (argc > 2)
		n_threads = (unsigned)atoi(argv[2]);
	if (n_threads < 1 || n_threads > MAX_THREADS)
		return 2;

	pcap_t *pc = pcap_open_offline(pcap_path, errbuf);
	if (!pc) {
		fprintf(stderr, "%s: %s\n", pcap_path, errbuf);
		return 1;
	}
	pkts = malloc(MAX_PKTS * sizeof *pkts); /* EXPECT-HEAP: shared_ro */
	if (!pkts)
		return 1;
	struct pcap_pkthdr *hdr;
	const u_char *data;
	while (n_pkts < MAX_PKTS && pcap_next_ex(pc, &hdr, &data) == 1) {
		pkts[n_pkts].len = (uint16_t)(hdr->caplen < SNAP ? hdr->caplen : SNAP);
		memcpy(pkts[n_pkts].data, data, pkts[n_pkts].len);
		n_pkts++;
	}
	pcap_close(pc);

	for (unsigned i = 0; i < n_threads; i++)
		pthread_create(&threads[i], NULL, ids_worker, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);

	unsigned long total = 0, repeated = 0, flagged = 0;
	for (unsigned i = 0; i < n_threads; i++) {
		total += scanned[i];
		repeated += repeats[i];
	}
	for (unsigned i = 0; i < FLOW_SLOTS; i++)
		flagged += flows[i].alerts != 0;
	printf("pt_ids_pcap: packets=%lu repeated=%lu alerts=%lu flagged_flows=%lu\n", total,
	       repeated, atomic_load(&alerts), flagged);
	free(pkts);
	return 0;
}

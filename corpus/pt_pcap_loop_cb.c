// ftmb-corpus: style=pthread libs="-lpcap" args="{corpus}/data/flows.pcap"
/*
 * Capture thread and reporter: the capture thread hands every packet of a trace to a pcap_loop
 * handler that counts it into a flow table shared with a reporter thread, which samples the
 * table until the capture ends.
 *
 * Exercises: a pcap_loop callback running in the capture thread (the table reaches it through
 * pcap_loop's `user` argument); a flow table under a mutex shared by the callback and the reporter;
 * a byte counter the callback updates without the lock while the reporter reads it; an atomic
 * end-of-capture flag; the pcap handle opened by main and used by the capture thread only.
 *
 * Usage: pt_pcap_loop_cb TRACE.pcap
 */
#include <pcap/pcap.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NFLOWS 64

struct flow_table {
	pthread_mutex_t lock;
	uint64_t pkts[NFLOWS];
};

static struct flow_table flows = { .lock = PTHREAD_MUTEX_INITIALIZER }; /* EXPECT: shared_rw lock lock=flow_table::lock */
static uint64_t captured_bytes; /* EXPECT: shared_rw unprotected */
static atomic_int capture_done; /* EXPECT: shared_rw atomic */
static pcap_t *handle; /* EXPECT: shared_ro */
static uint64_t max_seen; /* EXPECT: thread_private */

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct flow_table *t = (struct flow_table *)user;
	uint32_t hash = 2166136261u;

	for (uint32_t i = 26; i < 38 && i < h->caplen; i++)
		hash = (hash ^ bytes[i]) * 16777619u;
	pthread_mutex_lock(&t->lock);
	t->pkts[hash % NFLOWS]++;
	pthread_mutex_unlock(&t->lock);
	captured_bytes += h->caplen;
}

static void *capture(void *arg)
{
	(void)arg;
	pcap_loop(handle, -1, on_packet, (u_char *)&flows);
	atomic_store(&capture_done, 1);
	return NULL;
}

static void *reporter(void *arg)
{
	(void)arg;
	for (;;) {
		int done = atomic_load(&capture_done);
		uint64_t busiest = 0;

		pthread_mutex_lock(&flows.lock);
		for (int f = 0; f < NFLOWS; f++)
			if (flows.pkts[f] > busiest)
				busiest = flows.pkts[f];
		pthread_mutex_unlock(&flows.lock);
		if (busiest > max_seen)
			max_seen = busiest;
		if (done)
			break;
		if (captured_bytes == 0)
			sched_yield();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char err[PCAP_ERRBUF_SIZE];
	pthread_t cap, rep;
	uint64_t total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: pt_pcap_loop_cb TRACE.pcap\n");
		return 1;
	}
	handle = pcap_open_offline(argv[1], err);
	if (!handle) {
		fprintf(stderr, "pt_pcap_loop_cb: %s\n", err);
		return 1;
	}
	pthread_create(&cap, NULL, capture, NULL);
	pthread_create(&rep, NULL, reporter, NULL);
	pthread_join(cap, NULL);
	pthread_join(rep, NULL);
	pcap_close(handle);
	for (int f = 0; f < NFLOWS; f++)
		total += flows.pkts[f];
	printf("pt_pcap_loop_cb: packets=%llu bytes=%llu busiest=%llu\n", (unsigned long long)total,
	       (unsigned long long)captured_bytes, (unsigned long long)max_seen);
	return 0;
}

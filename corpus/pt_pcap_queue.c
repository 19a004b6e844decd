// ftmb-corpus: style=pthread libs="-lpcap" args="{corpus}/data/flows.pcap 3"
/*
 * Per-source byte accounting fed from a pcap trace: a reader thread pushes packets into a bounded
 * queue (mutex + condition variables), worker threads pop them and account bytes per source.
 *
 * Exercises: locks that are fields of global structs (lock=rxq.lock, lock=ftab.lock), with
 * pthread_cond_wait on the same mutex; a lookup helper that runs under its caller's lock; a pcap
 * handle opened by main before the threads start, read by the reader and closed by main after the
 * joins; a plain flag written by the workers and polled by the reader without a lock (a race);
 * per-thread counters indexed by the thread index; clock_gettime timestamps carried in the queue;
 * variables of main only and of the single reader thread only.
 *
 * Usage: pt_pcap_queue FILE.pcap [WORKERS]
 */
#include <pcap/pcap.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QCAP 32
#define SNAP 64
#define FLOWS 64
#define MAX_WORKERS 8

struct pkt_buf {
	uint16_t len, wire_len;
	uint8_t data[SNAP];
	struct timespec queued;
};

struct pkt_queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct pkt_buf slots[QCAP];
	unsigned head, count;
	int eof;
};

struct flow_bytes {
	uint32_t src;
	uint64_t bytes, pkts;
};

struct flow_table {
	pthread_mutex_t lock;
	struct flow_bytes e[FLOWS];
	unsigned used;
};

static struct pkt_queue rxq = { .lock = PTHREAD_MUTEX_INITIALIZER, .nonempty = PTHREAD_COND_INITIALIZER, .nonfull = PTHREAD_COND_INITIALIZER }; /* EXPECT: shared_rw lock lock=rxq.lock */
static struct flow_table ftab = { .lock = PTHREAD_MUTEX_INITIALIZER }; /* EXPECT: shared_rw lock lock=ftab.lock */
static pcap_t *pcap_handle; /* EXPECT: shared_ro */
static int table_full; /* EXPECT: shared_rw unprotected */
static unsigned long popped[MAX_WORKERS]; /* EXPECT: per_core */
static long max_delay_ns[MAX_WORKERS]; /* EXPECT: per_core */
static unsigned long reader_pkts; /* EXPECT: thread_private */
static unsigned n_workers = 2; /* EXPECT: thread_private */

static void *reader(void *arg)
{
	(void)arg;
	struct pcap_pkthdr *hdr;
	const u_char *data;

	while (!table_full && pcap_next_ex(pcap_handle, &hdr, &data) == 1) {
		pthread_mutex_lock(&rxq.lock);
		while (rxq.count == QCAP)
			pthread_cond_wait(&rxq.nonfull, &rxq.lock);
		struct pkt_buf *b = &rxq.slots[(rxq.head + rxq.count) % QCAP];
		b->len = (uint16_t)(hdr->caplen < SNAP ? hdr->caplen : SNAP);
		b->wire_len = (uint16_t)hdr->len;
		memcpy(b->data, data, b->len);
		clock_gettime(CLOCK_MONOTONIC, &b->queued);
		rxq.count++;
		pthread_cond_signal(&rxq.nonempty);
		pthread_mutex_unlock(&rxq.lock);
		reader_pkts++;
	}
	pthread_mutex_lock(&rxq.lock);
	rxq.eof = 1;
	pthread_cond_broadcast(&rxq.nonempty);
	pthread_mutex_unlock(&rxq.lock);
	printf("reader: %lu packets queued\n", reader_pkts);
	return NULL;
}

/* The caller holds ftab.lock. */
static struct flow_bytes *flow_slot_locked(uint32_t src)
{
	for (unsigned i = 0; i < ftab.used; i++)
		if (ftab.e[i].src == src)
			return &ftab.e[i];
	if (ftab.used == FLOWS)
		return NULL;
	ftab.e[ftab.used].src = src;
	return &ftab.e[ftab.used++];
}

static void account(const struct pkt_buf *b)
{
	if (b->len < 34)
		return;
	uint32_t src = (uint32_t)b->data[26] << 24 | b->data[27] << 16 | b->data[28] << 8 | b->data[29];

	pthread_mutex_lock(&ftab.lock);
	struct flow_bytes *f = flow_slot_locked(src);
	if (f) {
		f->bytes += b->wire_len;
		f->pkts++;
	}
	pthread_mutex_unlock(&ftab.lock);
	if (!f)
		table_full = 1;
}

static void *worker(void *arg)
{
	const unsigned idx = (unsigned)(uintptr_t)arg;
	struct pkt_buf b;
	struct timespec now;

	for (;;) {
		pthread_mutex_lock(&rxq.lock);
		while (rxq.count == 0 && !rxq.eof)
			pthread_cond_wait(&rxq.nonempty, &rxq.lock);
		if (rxq.count == 0) {
			pthread_mutex_unlock(&rxq.lock);
			break;
		}
		b = rxq.slots[rxq.head];
		rxq.head = (rxq.head + 1) % QCAP;
		rxq.count--;
		pthread_cond_signal(&rxq.nonfull);
		pthread_mutex_unlock(&rxq.lock);

		clock_gettime(CLOCK_MONOTONIC, &now);
		long delay = (now.tv_sec - b.queued.tv_sec) * 1000000000L + (now.tv_nsec - b.queued.tv_nsec);
		if (delay > max_delay_ns[idx])
			max_delay_ns[idx] = delay;
		account(&b);
		popped[idx]++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	pthread_t rd, workers[MAX_WORKERS];

	if (argc < 2)
		return 2;
	if (argc > 2)
		n_workers = (unsigned)atoi(argv[2]);
	if (n_workers < 1 || n_workers > MAX_WORKERS)
		return 2;
	pcap_handle = pcap_open_offline(argv[1], errbuf);
	if (!pcap_handle) {
		fprintf(stderr, "%s: %s\n", argv[1], errbuf);
		return 1;
	}

	pthread_create(&rd, NULL, reader, NULL);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)i);
	pthread_join(rd, NULL);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	pcap_close(pcap_handle);

	unsigned long pkts = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < n_workers; i++)
		pkts += popped[i];
	for (unsigned i = 0; i < ftab.used; i++)
		bytes += ftab.e[i].bytes;
	printf("pt_pcap_queue: popped=%lu sources=%u bytes=%llu\n", pkts, ftab.used,
	       (unsigned long long)bytes);
	return 0;
}

/*
 * flowmon: a flow monitor that sits in the path. Written like an ordinary pthread + libpcap
 * program (no FTMB calls): it captures from an interface (or reads a pcap file), forwards every
 * frame unchanged back out of the same handle (pcap_inject), counts packets and bytes per flow,
 * and exports each flow's counts as a record frame when it has been idle long enough, and for
 * every flow still open when it stops.
 *
 * Threads:
 *   - capture (pcap_dispatch): hashes each frame's flow to a worker and pushes a copy into that
 *     worker's bounded queue (mutex + two condition variables); a flow always goes to the same
 *     worker, so its frames leave in the order they came;
 *   - N workers: pop a frame, account it in the flow table (buckets, each under its own mutex),
 *     forward it (pcap handles are not thread-safe: sends are under tx_lock);
 *   - exporter: wakes every --export-ms (pthread_cond_timedwait on the control block, which main
 *     also uses to stop it), exports and removes flows idle for --idle-ms, and at the end every
 *     flow left;
 *   - main: starts them, waits for the capture to end (end of file, or SIGINT/SIGTERM: the
 *     handler sets a stop flag, which the capture loop reads between dispatches), closes the
 *     worker queues, joins the workers, stops the exporter, prints one line of totals.
 *
 * Export record: an Ethernet frame of type 0x88B6: "FLOWEXP1", then the flow (src ip, dst ip,
 * src port, dst port, protocol; network order), packets (u64), bytes (u64, frame lengths), the
 * reason (1 idle, 2 final); all big-endian.
 *
 * Usage: flowmon (-i IFACE | -r FILE) [--workers N] [--export-ms MS] [--idle-ms MS]
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 8
#define QCAP 64
#define SNAP 2048
#define NBUCKETS 256
#define BUCKET_SLOTS 16
#define EXPORT_ETHERTYPE 0x88B6
#define EXPORT_LEN (14 + 8 + 13 + 8 + 8 + 1)

struct frame {
	uint32_t len;
	uint64_t ts_ns;
	uint8_t data[SNAP];
};

struct work_queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct frame slots[QCAP];
	unsigned head, count;
	int closed;
};

struct flow_key {
	uint32_t src, dst;
	uint16_t sport, dport;
	uint8_t proto;
};

struct flow {
	struct flow_key key;
	int used;
	uint64_t pkts, bytes, first_ns, last_ns;
};

struct bucket {
	pthread_mutex_t lock;
	struct flow flows[BUCKET_SLOTS];
};

struct control {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stopping;
};

static struct work_queue queues[MAX_WORKERS];
static struct bucket table[NBUCKETS];
static struct control ctl = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
static pthread_mutex_t tx_lock = PTHREAD_MUTEX_INITIALIZER;
static pcap_t *handle;
static volatile sig_atomic_t stop;
static int from_file;
static unsigned n_workers = 2;
static long export_ms = 50, idle_ms = 200;

/* Totals, each written by one thread and read by main after the joins. */
static unsigned long captured;
static unsigned long forwarded[MAX_WORKERS];
static unsigned long untracked[MAX_WORKERS]; /* frames of flows the full table could not hold */
static unsigned long exported, exported_final;
static unsigned long send_errors; /* under tx_lock */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* The flow of an Ethernet/IPv4 frame; 0 for anything else (such frames are forwarded only). */
static int flow_of(const uint8_t *p, uint32_t len, struct flow_key *k)
{
	memset(k, 0, sizeof *k);
	if (len < 34 || p[12] != 0x08 || p[13] != 0x00 || (p[14] >> 4) != 4)
		return 0;
	unsigned ihl = (unsigned)(p[14] & 15) * 4;
	k->proto = p[23];
	memcpy(&k->src, p + 26, 4);
	memcpy(&k->dst, p + 30, 4);
	if ((k->proto == 6 || k->proto == 17) && len >= 14 + ihl + 4) {
		k->sport = (uint16_t)(p[14 + ihl] << 8 | p[15 + ihl]);
		k->dport = (uint16_t)(p[16 + ihl] << 8 | p[17 + ihl]);
	}
	return 1;
}

static unsigned flow_hash(const struct flow_key *k)
{
	uint32_t h = 2166136261u;
	const uint8_t *b = (const uint8_t *)k;
	for (size_t i = 0; i < sizeof *k; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static void send_frame(const uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&tx_lock);
	if (pcap_inject(handle, data, len) < 0)
		send_errors++; /* a savefile cannot send: -r FILE outside a session only counts */
	pthread_mutex_unlock(&tx_lock);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	(void)user;
	struct flow_key k;
	uint32_t len = h->caplen < SNAP ? h->caplen : SNAP;
	unsigned w = flow_of(bytes, len, &k) ? flow_hash(&k) % n_workers : 0;
	struct work_queue *q = &queues[w];

	pthread_mutex_lock(&q->lock);
	while (q->count == QCAP)
		pthread_cond_wait(&q->nonfull, &q->lock);
	struct frame *f = &q->slots[(q->head + q->count) % QCAP];
	f->len = len;
	f->ts_ns = (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec * 1000u;
	memcpy(f->data, bytes, len);
	q->count++;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
	captured++;
}

/* Until the stop flag, or the end of a file: a live handle's dispatch returns 0 after its
 * 100 ms timeout, a file's only at its end. */
static void *capture(void *arg)
{
	pcap_t *p = arg;
	while (!stop) {
		int n = pcap_dispatch(p, QCAP, on_packet, NULL);
		if (n == PCAP_ERROR)
			fprintf(stderr, "flowmon: capture: %s\n", pcap_geterr(p));
		if (n < 0 || (n == 0 && from_file))
			break;
	}
	return NULL;
}

/* Account one frame; 0 when the flow's bucket is full. */
static int account(const struct flow_key *k, const struct frame *f)
{
	struct bucket *b = &table[flow_hash(k) % NBUCKETS];
	struct flow *free_slot = NULL;
	int ok = 1;
	pthread_mutex_lock(&b->lock);
	struct flow *fl = NULL;
	for (unsigned i = 0; i < BUCKET_SLOTS; i++) {
		if (b->flows[i].used && memcmp(&b->flows[i].key, k, sizeof *k) == 0) {
			fl = &b->flows[i];
			break;
		}
		if (!b->flows[i].used && !free_slot)
			free_slot = &b->flows[i];
	}
	if (!fl && free_slot) {
		fl = free_slot;
		*fl = (struct flow){.key = *k, .used = 1, .first_ns = f->ts_ns};
	}
	if (fl) {
		fl->pkts++;
		fl->bytes += f->len;
		fl->last_ns = f->ts_ns;
	} else {
		ok = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static void *worker(void *arg)
{
	const unsigned idx = (unsigned)(uintptr_t)arg;
	struct work_queue *q = &queues[idx];
	struct frame fr, *f = &fr;
	for (;;) {
		pthread_mutex_lock(&q->lock);
		while (q->count == 0 && !q->closed)
			pthread_cond_wait(&q->nonempty, &q->lock);
		if (q->count == 0) {
			pthread_mutex_unlock(&q->lock);
			break;
		}
		*f = q->slots[q->head];
		q->head = (q->head + 1) % QCAP;
		q->count--;
		pthread_cond_signal(&q->nonfull);
		pthread_mutex_unlock(&q->lock);

		struct flow_key k;
		if (flow_of(f->data, f->len, &k) && !account(&k, f))
			untracked[idx]++;
		send_frame(f->data, f->len);
		forwarded[idx]++;
	}
	return NULL;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void export_flow(const struct flow *fl, uint8_t reason)
{
	uint8_t fr[EXPORT_LEN] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
	fr[12] = EXPORT_ETHERTYPE >> 8;
	fr[13] = EXPORT_ETHERTYPE & 0xff;
	memcpy(fr + 14, "FLOWEXP1", 8);
	uint8_t *p = fr + 22;
	memcpy(p, &fl->key.src, 4);
	memcpy(p + 4, &fl->key.dst, 4);
	p[8] = (uint8_t)(fl->key.sport >> 8);
	p[9] = (uint8_t)fl->key.sport;
	p[10] = (uint8_t)(fl->key.dport >> 8);
	p[11] = (uint8_t)fl->key.dport;
	p[12] = fl->key.proto;
	put64(p + 13, fl->pkts);
	put64(p + 21, fl->bytes);
	p[29] = reason;
	send_frame(fr, sizeof fr);
}

/* Export (and forget) the flows idle since before `idle_before`, or all with final. */
static void export_flows(uint64_t idle_before, int final)
{
	for (unsigned i = 0; i < NBUCKETS; i++) {
		struct flow out[BUCKET_SLOTS];
		unsigned n = 0;
		pthread_mutex_lock(&table[i].lock);
		for (unsigned j = 0; j < BUCKET_SLOTS; j++) {
			struct flow *fl = &table[i].flows[j];
			if (fl->used && (final || fl->last_ns < idle_before)) {
				out[n++] = *fl;
				fl->used = 0;
			}
		}
		pthread_mutex_unlock(&table[i].lock);
		for (unsigned j = 0; j < n; j++) {
			export_flow(&out[j], final ? 2 : 1);
			if (final)
				exported_final++;
			else
				exported++;
		}
	}
}

static void *exporter(void *arg)
{
	(void)arg;
	struct timespec now, deadline;
	pthread_mutex_lock(&ctl.lock);
	while (!ctl.stopping) {
		clock_gettime(CLOCK_REALTIME, &now);
		deadline = now;
		deadline.tv_sec += export_ms / 1000;
		deadline.tv_nsec += (export_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		int rc = pthread_cond_timedwait(&ctl.wake, &ctl.lock, &deadline);
		if (ctl.stopping || rc != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&ctl.lock);
		uint64_t now_ns = (uint64_t)deadline.tv_sec * 1000000000u + (uint64_t)deadline.tv_nsec;
		export_flows(now_ns - (uint64_t)idle_ms * 1000000u, 0);
		pthread_mutex_lock(&ctl.lock);
	}
	pthread_mutex_unlock(&ctl.lock);
	export_flows(0, 1);
	return NULL;
}

static long number(const char *opt, const char *val, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = val ? strtol(val, &end, 10) : 0;
	if (!val || errno || *end || v < lo || v > hi) {
		fprintf(stderr, "flowmon: %s %s: expected a number from %ld to %ld\n", opt, val ? val : "(missing)", lo, hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *iface = NULL, *file = NULL;
	char errbuf[PCAP_ERRBUF_SIZE];
	for (int i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "-i") && val)
			iface = argv[++i];
		else if (!strcmp(argv[i], "-r") && val)
			file = argv[++i];
		else if (!strcmp(argv[i], "--workers"))
			n_workers = (unsigned)number(argv[i], val, 1, MAX_WORKERS), i++;
		else if (!strcmp(argv[i], "--export-ms"))
			export_ms = number(argv[i], val, 1, 3600000), i++;
		else if (!strcmp(argv[i], "--idle-ms"))
			idle_ms = number(argv[i], val, 0, 3600000), i++;
		else {
			fprintf(stderr, "flowmon: %s: unknown option\n"
					"usage: flowmon (-i IFACE | -r FILE) [--workers N] [--export-ms MS] [--idle-ms MS]\n",
				argv[i]);
			return 2;
		}
	}
	if (!iface == !file) {
		fprintf(stderr, "flowmon: give one of -i IFACE or -r FILE\n");
		return 2;
	}
	from_file = file != NULL;
	handle = iface ? pcap_open_live(iface, SNAP, 1, 100, errbuf) : pcap_open_offline(file, errbuf);
	if (!handle) {
		fprintf(stderr, "flowmon: %s: %s\n", iface ? iface : file, errbuf);
		return 1;
	}
	for (unsigned i = 0; i < NBUCKETS; i++)
		pthread_mutex_init(&table[i].lock, NULL);
	for (unsigned i = 0; i < n_workers; i++) {
		pthread_mutex_init(&queues[i].lock, NULL);
		pthread_cond_init(&queues[i].nonempty, NULL);
		pthread_cond_init(&queues[i].nonfull, NULL);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	pthread_t cap, exp, workers[MAX_WORKERS];
	for (unsigned i = 0; i < n_workers; i++)
		pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)i);
	pthread_create(&exp, NULL, exporter, NULL);
	pthread_create(&cap, NULL, capture, handle);

	pthread_join(cap, NULL);
	for (unsigned i = 0; i < n_workers; i++) {
		pthread_mutex_lock(&queues[i].lock);
		queues[i].closed = 1;
		pthread_cond_broadcast(&queues[i].nonempty);
		pthread_mutex_unlock(&queues[i].lock);
	}
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	pthread_mutex_lock(&ctl.lock);
	ctl.stopping = 1;
	pthread_cond_broadcast(&ctl.wake);
	pthread_mutex_unlock(&ctl.lock);
	pthread_join(exp, NULL);

	unsigned long fwd = 0, untr = 0;
	for (unsigned i = 0; i < n_workers; i++) {
		fwd += forwarded[i];
		untr += untracked[i];
	}
	printf("flowmon: captured=%lu forwarded=%lu untracked=%lu exported_idle=%lu exported_final=%lu "
	       "send_errors=%lu\n",
	       captured, fwd, untr, exported, exported_final, send_errors);
	pcap_close(handle);
	return 0;
}

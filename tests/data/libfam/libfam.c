/*
 * libfam: two busy-polling lcores race on one DPDK library handle, one library family per mode, and
 * write what each call returned into the packets they transmit (the Ethernet source address:
 * byte 6 the mode, 7 the lcore, 8..11 what the lcore observed). A replay that did not make the calls
 * on the handle in the recorded order would transmit other bytes.
 *
 *   ring     rte_ring mc dequeue / mp enqueue burst: each lcore dequeues up to 4 (its own packets
 *            of its last poll or the other lcore's), then enqueues what it received: count, index,
 *            entries left
 *   reorder  rte_reorder under a spinlock (the library is not MT-safe): lcore q numbers its packets
 *            q, q+2, q+4..., inserts them and drains: the drained count depends on the other lcore
 *   stack    rte_stack of 5 tokens: pop one per packet, hold up to 3, push them back: the token, or
 *            none when the stack ran dry, and the stack's count
 *   timer    one struct rte_timer armed and stopped from both lcores (rte_timer_pending, then
 *            rte_timer_reset or rte_timer_stop): whether it was pending, and the call's result
 *   hash     rte_hash written after launch: per packet a key of 16, looked up, then added when
 *            missing or deleted when present: the lookup's position and the add's or delete's
 *   mempool  rte_mempool_get from a pool of 7 numbered objects, each lcore holding up to 4: the
 *            object's number, or that the pool was empty
 *   pktmbuf  rte_pktmbuf_alloc from a pool of 7 numbered mbufs, the same way
 *   event    one event device (event_sw0: --vdev event_sw0), one atomic queue linked to both lcores'
 *            ports: each lcore enqueues what it received as new events, runs an iteration of the
 *            device's scheduler service and dequeues up to 4: who gets which packet, and the count
 *
 * Usage: libfam EAL-ARGS (one net_null port, 3 lcores; event: also --vdev event_sw0) -- MODE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_eventdev.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_reorder.h>
#include <rte_ring.h>
#include <rte_service.h>
#include <rte_spinlock.h>
#include <rte_stack.h>
#include <rte_timer.h>

#define BURST 32
#define NB_QUEUES 2
#define NB_TOKENS 5
#define TOKENS_HELD 3
#define NB_OBJS 7
#define OBJS_HELD 4
#define NB_KEYS 16

enum mode { RING = 1, REORDER, STACK, TIMER, HASH, MEMPOOL, PKTMBUF, EVENT };
static const char *const mode_names[] = { [RING] = "ring", [REORDER] = "reorder", [STACK] = "stack",
					  [TIMER] = "timer", [HASH] = "hash", [MEMPOOL] = "mempool",
					  [PKTMBUF] = "pktmbuf", [EVENT] = "event" };

static enum mode mode;
static const uint16_t port = 0;
static struct rte_ring *ring;
static struct rte_reorder_buffer *rob;
static rte_spinlock_t rob_lock = RTE_SPINLOCK_INITIALIZER;
static struct rte_stack *stack;
static struct rte_timer timer;
static struct rte_hash *hash;
static struct rte_mempool *objs;
static struct rte_mempool *tiny;
static const uint8_t evdev = 0;
static uint32_t scheduler; /* the software event device's scheduler service */

/* what one lcore holds or counts (on its own stack) */
struct lcore_state {
	uint32_t next_seqn;
	unsigned held;
	void *tokens[TOKENS_HELD];
	void *objs[OBJS_HELD];
	struct rte_mbuf *mbufs[OBJS_HELD];
};

static void stamp(struct rte_mbuf *m, unsigned a, unsigned b, unsigned c, unsigned d)
{
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);

	if (m->data_len < 12)
		return;
	p[6] = (uint8_t)mode;
	p[7] = (uint8_t)rte_lcore_id();
	p[8] = (uint8_t)a;
	p[9] = (uint8_t)b;
	p[10] = (uint8_t)c;
	p[11] = (uint8_t)d;
}

static void transmit(uint16_t q, struct rte_mbuf **pkts, unsigned n)
{
	uint16_t sent = rte_eth_tx_burst(port, q, pkts, (uint16_t)n);

	for (unsigned i = sent; i < n; i++)
		rte_pktmbuf_free(pkts[i]);
}

static void ring_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{
	void *out[4];
	unsigned left = 0;

	(void)s;
	/* dequeue first: what the other lcore enqueued in its last poll, or what this one did in its
	 * own, whichever lcore comes first */
	unsigned k = rte_ring_mc_dequeue_burst(ring, out, 4, &left);
	for (unsigned i = 0; i < k; i++)
		stamp(out[i], k, i, left & 0xff, left >> 8);
	transmit(q, (struct rte_mbuf **)out, k);
	if (n > 0) {
		unsigned in = rte_ring_mp_enqueue_burst(ring, (void **)pkts, n, NULL);
		for (unsigned i = in; i < n; i++)
			rte_pktmbuf_free(pkts[i]);
	}
}

static void reorder_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{
	struct rte_mbuf *out[BURST];
	unsigned drained;

	rte_spinlock_lock(&rob_lock);
	for (uint16_t i = 0; i < n; i++) {
		uint32_t seqn = s->next_seqn;
		s->next_seqn += NB_QUEUES;
		*rte_reorder_seqn(pkts[i]) = seqn;
		if (rte_reorder_insert(rob, pkts[i]) != 0) {
			stamp(pkts[i], 0xff, 0xff, seqn & 0xff, seqn >> 8);
			transmit(q, &pkts[i], 1);
		}
	}
	drained = rte_reorder_drain(rob, out, BURST);
	rte_spinlock_unlock(&rob_lock);
	for (unsigned i = 0; i < drained; i++) {
		uint32_t seqn = *rte_reorder_seqn(out[i]);
		stamp(out[i], drained, i, seqn & 0xff, seqn >> 8);
	}
	transmit(q, out, drained);
}

static void stack_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{

	for (uint16_t i = 0; i < n; i++) {
		void *token = NULL;
		unsigned got = rte_stack_pop(stack, &token, 1);
		if (got == 1)
			s->tokens[s->held++] = token;
		stamp(pkts[i], got, (unsigned)(uintptr_t)token, rte_stack_count(stack), s->held);
		if (s->held == TOKENS_HELD) {
			rte_stack_push(stack, s->tokens, TOKENS_HELD);
			s->held = 0;
		}
	}
	transmit(q, pkts, n);
}

static void expire(struct rte_timer *t, void *arg)
{
	(void)t;
	(void)arg;
}

static void timer_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{
	(void)s;
	for (uint16_t i = 0; i < n; i++) {
		int pending = rte_timer_pending(&timer);
		int r = pending ? rte_timer_stop(&timer)
				: rte_timer_reset(&timer, UINT64_C(1) << 40, SINGLE, rte_lcore_id(), expire, NULL);
		stamp(pkts[i], (unsigned)pending, (unsigned)r & 0xff, q, 0);
	}
	transmit(q, pkts, n);
}

static void hash_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{
	(void)s;
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *p = rte_pktmbuf_mtod(pkts[i], const uint8_t *);
		uint32_t key = pkts[i]->data_len > 40 ? (uint32_t)(p[29] ^ p[37] ^ p[40]) % NB_KEYS : 0;
		int pos = rte_hash_lookup(hash, &key);
		int r = pos >= 0 ? rte_hash_del_key(hash, &key) : rte_hash_add_key(hash, &key);
		stamp(pkts[i], (unsigned)pos & 0xff, (unsigned)r & 0xff, key, 0);
	}
	transmit(q, pkts, n);
}

static void mempool_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{

	for (uint16_t i = 0; i < n; i++) {
		void *obj = NULL;
		int r = rte_mempool_get(objs, &obj);
		unsigned number = 0xff;
		if (r == 0) {
			number = *(const uint32_t *)obj;
			s->objs[s->held++] = obj;
		}
		stamp(pkts[i], r == 0, number, s->held, 0);
		if (s->held == OBJS_HELD) {
			rte_mempool_put_bulk(objs, s->objs, OBJS_HELD);
			s->held = 0;
		}
	}
	transmit(q, pkts, n);
}

/* The mbufs go back with rte_mempool_put: rte_pktmbuf_free is an inline function of the header,
 * whose put on the mbuf's own pool is not a call on a handle the program names. */
static void pktmbuf_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{

	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = rte_pktmbuf_alloc(tiny);
		unsigned number = 0xff;
		if (m != NULL) {
			number = *rte_pktmbuf_mtod(m, const uint8_t *);
			s->mbufs[s->held++] = m;
		}
		stamp(pkts[i], m != NULL, number, s->held, 0);
		if (s->held == OBJS_HELD) {
			for (unsigned j = 0; j < OBJS_HELD; j++)
				rte_mempool_put(tiny, s->mbufs[j]);
			s->held = 0;
		}
	}
	transmit(q, pkts, n);
}

static void event_step(uint16_t q, struct lcore_state *s, struct rte_mbuf **pkts, uint16_t n)
{
	struct rte_event ev[BURST];
	uint8_t evport = (uint8_t)q;

	(void)s;
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *p = rte_pktmbuf_mtod(pkts[i], const uint8_t *);
		memset(&ev[i], 0, sizeof ev[i]);
		ev[i].op = RTE_EVENT_OP_NEW;
		ev[i].queue_id = 0;
		ev[i].sched_type = RTE_SCHED_TYPE_ATOMIC;
		ev[i].flow_id = pkts[i]->data_len > 30 ? p[29] : 0;
		ev[i].mbuf = pkts[i];
	}
	uint16_t in = rte_event_enqueue_burst(evdev, evport, ev, n);
	for (uint16_t i = in; i < n; i++)
		rte_pktmbuf_free(pkts[i]);
	rte_service_run_iter_on_app_lcore(scheduler, 1);
	uint16_t k = rte_event_dequeue_burst(evdev, evport, ev, 4, 0);
	struct rte_mbuf *out[4];
	for (uint16_t i = 0; i < k; i++) {
		out[i] = ev[i].mbuf;
		stamp(out[i], k, i, ev[i].flow_id, 0);
		ev[i].op = RTE_EVENT_OP_RELEASE;
	}
	/* give the atomic flows back to the scheduler */
	rte_event_enqueue_burst(evdev, evport, ev, k);
	transmit(q, out, k);
}

static int worker(void *arg)
{
	uint16_t q = (uint16_t)(uintptr_t)arg;
	struct lcore_state st = { .next_seqn = q };
	struct rte_mbuf *pkts[BURST];

	for (;;) {
		uint16_t n = rte_eth_rx_burst(port, q, pkts, BURST);
		switch (mode) {
		case RING:
			ring_step(q, &st, pkts, n);
			break;
		case REORDER:
			reorder_step(q, &st, pkts, n);
			break;
		case STACK:
			stack_step(q, &st, pkts, n);
			break;
		case TIMER:
			timer_step(q, &st, pkts, n);
			break;
		case HASH:
			hash_step(q, &st, pkts, n);
			break;
		case MEMPOOL:
			mempool_step(q, &st, pkts, n);
			break;
		case PKTMBUF:
			pktmbuf_step(q, &st, pkts, n);
			break;
		case EVENT:
			event_step(q, &st, pkts, n);
			break;
		}
	}
	return 0;
}

static void create_objects(void)
{
	void *all[NB_OBJS];
	struct rte_mbuf *mbufs[NB_OBJS];
	struct rte_hash_parameters hp = { .name = "libfam", .entries = 64, .key_len = sizeof(uint32_t),
					  .hash_func = rte_jhash, .socket_id = (int)rte_socket_id() };

	ring = rte_ring_create("libfam", 1024, rte_socket_id(), 0);
	rob = rte_reorder_create("libfam", rte_socket_id(), 1024);
	stack = rte_stack_create("libfam", NB_TOKENS, rte_socket_id(), 0);
	hash = rte_hash_create(&hp);
	objs = rte_mempool_create("libfam_objs", NB_OBJS, 64, 0, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	tiny = rte_pktmbuf_pool_create("libfam_tiny", NB_OBJS, 0, 0, 256, rte_socket_id());
	if (!ring || !rob || !stack || !hash || !objs || !tiny || rte_timer_subsystem_init() < 0)
		rte_exit(EXIT_FAILURE, "libfam: cannot create the library objects\n");
	rte_timer_init(&timer);
	for (uintptr_t t = 1; t <= NB_TOKENS; t++) {
		void *token = (void *)t;
		if (rte_stack_push(stack, &token, 1) != 1)
			rte_exit(EXIT_FAILURE, "libfam: stack push\n");
	}
	/* number the objects and the mbufs: take them all, write the number, give them back */
	if (rte_mempool_get_bulk(objs, all, NB_OBJS) != 0 || rte_pktmbuf_alloc_bulk(tiny, mbufs, NB_OBJS) != 0)
		rte_exit(EXIT_FAILURE, "libfam: cannot take the pools' objects\n");
	for (unsigned i = 0; i < NB_OBJS; i++) {
		*(uint32_t *)all[i] = i;
		*rte_pktmbuf_mtod(mbufs[i], uint8_t *) = (uint8_t)i;
	}
	rte_mempool_put_bulk(objs, all, NB_OBJS);
	for (unsigned i = 0; i < NB_OBJS; i++)
		rte_mempool_put(tiny, mbufs[i]);
}

/* event_sw0 with one atomic queue linked to one port per lcore; its scheduler runs as a service
 * iteration on the lcores themselves (no service lcore) */
static void create_event_device(void)
{
	struct rte_event_dev_info info;
	struct rte_event_dev_config config = { 0 };
	struct rte_event_queue_conf queue = { .schedule_type = RTE_SCHED_TYPE_ATOMIC,
					      .priority = RTE_EVENT_DEV_PRIORITY_NORMAL,
					      .nb_atomic_flows = 1024, .nb_atomic_order_sequences = 1024 };
	struct rte_event_port_conf port_conf = { .new_event_threshold = 4096, .dequeue_depth = 16,
						 .enqueue_depth = 16 };
	uint8_t queue_id = 0;

	if (rte_event_dev_count() == 0 || rte_event_dev_info_get(evdev, &info) < 0)
		rte_exit(EXIT_FAILURE, "libfam: event mode needs an event device (--vdev event_sw0)\n");
	config.nb_event_queues = 1;
	config.nb_event_ports = NB_QUEUES;
	config.nb_events_limit = 4096;
	config.nb_event_queue_flows = 1024;
	config.nb_event_port_dequeue_depth = 16;
	config.nb_event_port_enqueue_depth = 16;
	config.dequeue_timeout_ns = info.min_dequeue_timeout_ns;
	if (rte_event_dev_configure(evdev, &config) < 0 || rte_event_queue_setup(evdev, 0, &queue) < 0)
		rte_exit(EXIT_FAILURE, "libfam: event device configuration\n");
	for (uint8_t p = 0; p < NB_QUEUES; p++)
		if (rte_event_port_setup(evdev, p, &port_conf) < 0 ||
		    rte_event_port_link(evdev, p, &queue_id, NULL, 1) != 1)
			rte_exit(EXIT_FAILURE, "libfam: event port %u\n", p);
	if (rte_event_dev_service_id_get(evdev, &scheduler) != 0 ||
	    rte_service_set_runstate_mapped_check(scheduler, 0) != 0 || rte_service_runstate_set(scheduler, 1) != 0 ||
	    rte_event_dev_start(evdev) < 0)
		rte_exit(EXIT_FAILURE, "libfam: event device start\n");
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf = { 0 };
	int used = rte_eal_init(argc, argv);

	if (used < 0)
		rte_exit(EXIT_FAILURE, "libfam: EAL init failed\n");
	argc -= used;
	argv += used;
	for (int m = RING; m <= EVENT; m++)
		if (argc == 2 && strcmp(argv[1], mode_names[m]) == 0)
			mode = (enum mode)m;
	if (mode == 0)
		rte_exit(EXIT_FAILURE, "libfam: usage: libfam EAL-ARGS -- ring|reorder|stack|timer|hash|mempool|pktmbuf|event\n");
	if (rte_lcore_count() != NB_QUEUES + 1 || rte_eth_dev_count_avail() == 0)
		rte_exit(EXIT_FAILURE, "libfam: needs one port and %d lcores\n", NB_QUEUES + 1);

	struct rte_mempool *pool = rte_pktmbuf_pool_create("libfam_rx", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
							    rte_socket_id());
	if (!pool || rte_eth_dev_configure(port, NB_QUEUES, NB_QUEUES, &conf) < 0)
		rte_exit(EXIT_FAILURE, "libfam: port configuration\n");
	for (uint16_t q = 0; q < NB_QUEUES; q++)
		if (rte_eth_rx_queue_setup(port, q, 512, rte_socket_id(), NULL, pool) < 0 ||
		    rte_eth_tx_queue_setup(port, q, 512, rte_socket_id(), NULL) < 0)
			rte_exit(EXIT_FAILURE, "libfam: queue setup\n");
	if (rte_eth_dev_start(port) < 0)
		rte_exit(EXIT_FAILURE, "libfam: port start\n");
	create_objects();
	if (mode == EVENT)
		create_event_device();
	printf("libfam: %s\n", mode_names[mode]);
	fflush(stdout);

	uintptr_t q = 0;
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		rte_eal_remote_launch(worker, (void *)q, lcore);
		q++;
	}
	rte_eal_mp_wait_lcore();
	return 0;
}

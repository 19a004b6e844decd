/*
 * Packet input and output of the master inside a session, and the opaque packet buffers that
 * programs without DPDK use (the DPDK adapter copies between mbufs and the same session rings).
 *
 * Receive: a thread owns each input queue it polls (single consumer). A receive that consumes
 * entries (packets, ticks, the EOF mark) logs one RX record {queue, entries, first sequence}: the
 * burst composition. An empty poll consumes nothing and logs nothing: it is a quiet operation,
 * counted, and the thread's next RX record carries the count (runtime.c), so replay returns nothing
 * at exactly the receives that returned nothing. In record mode a poll that finds nothing first
 * waits a little for input (the dwell, runtime.c), so an idle thread makes few of them. One after
 * the queue's EOF entry also advances the thread's virtual time by _FTMB_EOF_TICK_NS, for
 * _FTMB_EOF_SPAN_NS (the time model in runtime.c).
 *
 * Transmit: the sender reads every thread's record count (V1) once per burst and stamps each
 * packet of the burst with that vector and its next output sequence number, then publishes the
 * packet on its own output ring after its own earlier records (ordered logging).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt.h"

void _ftmb_emit_rx(uint16_t queue, uint32_t entries, uint64_t first_seq);
uint32_t _ftmb_replay_rx(uint16_t queue, uint64_t *first_seq);
int _ftmb_replay_quiet(struct _ftmb_thread *t);
void _ftmb_emit_quiet(struct _ftmb_thread *t);
void _ftmb_tx_records(struct _ftmb_thread *t, unsigned npkts);

struct ftmb_pkt {
    struct ftmb_pkt *next;
    uint64_t in_time_ns;
    uint32_t len;
    uint32_t _pad;
    alignas(64) uint8_t data[FTMB_PKT_MAX];
};

#define RX_MAX_ENTRIES 0xffffu /* the record's entry count field is 16 bits */

static struct _ftmb_inq *queue_for(uint16_t queue, struct _ftmb_thread *t)
{
    if (queue >= _ftmb_rt.in->nqueues)
        _ftmb_fatal("receive on queue %u but the input logger of session %s serves %u queues", queue,
                    _ftmb_rt.session, _ftmb_rt.in->nqueues);
    struct _ftmb_inq *q = &_ftmb_rt.inq[queue];
    if (q->owner != t->index + 1) {
        if (q->owner)
            _ftmb_fatal("input queue %u is polled by threads %u and %u; a queue belongs to one thread", queue,
                        q->owner - 1, t->index);
        q->owner = t->index + 1;
        t->dwell_queues |= 1u << queue; /* a dwell of this thread watches it (runtime.c, _ftmb_dwell) */
    }
    return q;
}

static void take_time(struct _ftmb_thread *t, uint64_t ns)
{
    if (ns > t->vtime_ns)
        t->vtime_ns = ns;
}

/* A receive after the queue's EOF entry: time goes on by a tick, for a while (ftmb_internal.h). */
static void eof_tick(struct _ftmb_thread *t, const struct _ftmb_inq *q)
{
    if (t->vtime_ns < q->eof_time_ns + _FTMB_EOF_SPAN_NS) {
        t->vtime_ns += _FTMB_EOF_TICK_NS;
        t->quiet_time = 1;
    }
}

/* The verification replay: a thread waiting for a live logger (input served again, room in its
 * output ring) waits for a process a loaded machine runs late, not for a record nobody replays:
 * that is progress, not the replay's end (rt.h; a dead logger is found by _ftmb_check_peers).
 * Relaxed: a heuristic's counter. */
static void logger_wait_progress(void)
{
    if (_ftmb_rt.stop_at_end)
        atomic_fetch_add_explicit(&_ftmb_rt.replay_progress, 1, memory_order_relaxed);
}

/* Replay: wait until the input logger has re-served `count` entries of the queue. */
static void wait_entries(struct _ftmb_inq *q, uint64_t count, uint16_t queue)
{
    for (unsigned spins = 0; _ftmb_ring_refresh(&q->ring) < count; spins++) {
        if (atomic_load_explicit(&_ftmb_rt.in_dead, memory_order_relaxed))
            _ftmb_fatal("replay: the input logger died before serving queue %u again", queue);
        logger_wait_progress();
        _ftmb_check_peers();
        _ftmb_backoff(spins);
    }
}

int _ftmb_rx_begin(uint16_t queue, struct _ftmb_rx_view *views, uint16_t n)
{
    if (_ftmb_rt.standby) /* packet I/O is the master's: a program that polls from main waits here */
        _ftmb_standby_takeover();
    if (!_ftmb_rt.in)
        return -1;
    struct _ftmb_thread *t = _ftmb_me();
    /* A packet boundary: a checkpoint parks the thread here. Relaxed: a hint, re-read with
     * acquire in the park; a thread that sees it one poll late parks one poll late. */
    if (__builtin_expect(atomic_load_explicit(&_ftmb_ckpt.req, memory_order_relaxed) != t->ckpt_seen, 0) &&
        t->ckpt_receiver)
        _ftmb_ckpt_park(t);
    if (__builtin_expect(!t->ckpt_receiver, 0) && _ftmb_mode_now == FTMB_MODE_RECORD)
        _ftmb_ckpt_register(t);
    _ftmb_rec_fast_refresh(t); /* after the park: a snapshot that took over resumes here in replay */
    struct _ftmb_inq *q = queue_for(queue, t);
    q->pending = 0;
    if (atomic_load_explicit(&_ftmb_rt.in_dead, memory_order_relaxed)) {
        t->quiet++;
        return 0;
    }
    /* Before the end-of-input test: a thread whose log has ended is past it at any receive, also
     * one of a queue at its end (a program that only polls after its input ended, such as DPDK's
     * skeleton, does nothing else that is logged): the verification replay stops there, a backup
     * hands over there. */
    if (_ftmb_quiet_past_log(t)) {
        if (q->eof)
            eof_tick(t, q);
        return 0;
    }
    int replay = _ftmb_replaying(t);
    if (__builtin_expect(_ftmb_follow_mode, 0)) /* (after the wait for a record, which may end in a takeover) */
        _ftmb_follow_rx(queue, q); /* a follower's queue moves to the session's ring at its takeover */
    if (replay && _ftmb_replay_quiet(t)) { /* this receive got nothing in the record */
        if (q->eof)
            eof_tick(t, q);
        return 0;
    }
    if (q->eof) {
        /* After the end of its input a queue's receives are empty forever and the input logger sends
         * no more ticks: each one advances the thread's clock by a tick instead, so timers that
         * release what the program holds (a TX drain) still fire. It is a quiet operation, so the
         * log has the count and replay reads the same times. */
        if (replay)
            _ftmb_fatal("replay diverged: thread %u record %llu is a receive but queue %u has ended", t->index,
                        (unsigned long long)t->rpos, queue);
        t->quiet++;
        eof_tick(t, q);
        _ftmb_dwell(t); /* (nothing comes to this queue: the dwell runs out, unless the thread has other input) */
        return 0;
    }
    uint64_t avail, first_seq = 0;
    if (replay) {
        avail = _ftmb_replay_rx(queue, &first_seq);
        if (!q->replay_synced) { /* the log says where this queue's input resumes: start there */
            if (_ftmb_input_rewind(queue, first_seq) != 0)
                _ftmb_fatal("replay: the input logger died before serving queue %u again", queue);
            q->replay_synced = 1;
        } else if (first_seq != q->next_seq)
            _ftmb_fatal("replay diverged: thread %u record %llu receives queue %u from entry %llu, but the "
                        "queue is at entry %llu",
                        t->index, (unsigned long long)(t->rpos - 1), queue, (unsigned long long)first_seq,
                        (unsigned long long)q->next_seq);
        wait_entries(q, avail, queue);
    } else {
        avail = _ftmb_ring_refresh(&q->ring);
        if (avail == 0) {
            _ftmb_dwell(t); /* record mode: wait a little for input (runtime.c) */
            avail = _ftmb_ring_refresh(&q->ring);
        }
        if (avail == 0) {
            t->quiet++;
            if ((++q->empty_polls & 4095) == 0)
                _ftmb_check_peers();
            return 0;
        }
        if (avail > RX_MAX_ENTRIES)
            avail = RX_MAX_ENTRIES;
    }
    uint16_t npk = 0;
    uint64_t i = 0;
    for (; i < avail && (npk < n || replay); i++) {
        const struct _ftmb_in_entry *e = _ftmb_ring_peek(&q->ring, i);
        if (i == 0 && !replay)
            first_seq = e->seq;
        if (e->seq != first_seq + i)
            _ftmb_fatal("input queue %u: entry %llu carries sequence %llu, expected %llu", queue,
                        (unsigned long long)i, (unsigned long long)e->seq, (unsigned long long)(first_seq + i));
        take_time(t, e->time_ns);
        if (e->kind == _FTMB_IN_PKT) {
            if (npk == n)
                _ftmb_fatal("replay: a receive of queue %u asks for %u packets, fewer than recorded", queue, n);
            views[npk].data = e->data;
            views[npk].len = e->len;
            views[npk].time_ns = e->time_ns;
            npk++;
        } else if (e->kind == _FTMB_IN_EOF) {
            q->eof = 1;
            q->eof_time_ns = e->time_ns;
            i++;
            break;
        }
    }
    if (i == 0) { /* asked for no packet: nothing consumed (replay logs no such receive) */
        t->quiet++;
        return 0;
    }
    q->pending = i;
    q->next_seq = first_seq + i;
    if (!replay && _ftmb_mode_now == FTMB_MODE_RECORD) /* a failover backup is live once not replaying */
        _ftmb_emit_rx(queue, (uint32_t)i, first_seq);
    return npk;
}

void _ftmb_rx_finish(uint16_t queue)
{
    struct _ftmb_inq *q = &_ftmb_rt.inq[queue];
    if (q->pending) {
        _ftmb_ring_consume(&q->ring, q->pending);
        q->pending = 0;
    }
}

int ftmb_input_done(ftmb_u16 queue_id)
{
    if (!_ftmb_rt.in || queue_id >= _ftmb_rt.in->nqueues)
        return 1;
    if (atomic_load_explicit(&_ftmb_rt.in_dead, memory_order_relaxed))
        return 1;
    return _ftmb_rt.inq[queue_id].eof;
}

/* ---- transmit ---------------------------------------------------------------------------------- */

int _ftmb_tx_begin(uint16_t queue, unsigned npkts)
{
    (void)queue;
    if (_ftmb_rt.standby)
        _ftmb_standby_takeover();
    if (!_ftmb_rt.out || atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed))
        return 0;
    struct _ftmb_thread *t = _ftmb_me();
    t->nvec = 0;
    _ftmb_tx_records(t, npkts); /* (a backup past its log may go live there) */
    if (_ftmb_mode_now == FTMB_MODE_RECORD) {
        struct _ftmb_out_region *out = _ftmb_rt.out;
        /* Relaxed: a thread whose records we depend on was claimed before those records
         * happened-before this transmit, so coherence already shows us its index. */
        uint32_t n = atomic_load_explicit(&out->nthreads, memory_order_relaxed);
        for (uint32_t i = 0; i < n; i++)
            /* V1: relaxed. Any record this packet depends on was published (R1) before a release
             * (the program's unlock, or E1) that happened-before this read, so read-read coherence
             * gives a count at least that large; we dereference nothing through it. */
            t->vec[i] = atomic_load_explicit(&out->thread[i].rec.head, memory_order_relaxed);
        t->nvec = (uint16_t)n;
    }
    return 1;
}

__attribute__((noinline)) static struct _ftmb_out_slot *out_wait_space(struct _ftmb_thread *t)
{
    for (unsigned spins = 0;; spins++) {
        struct _ftmb_out_slot *s = _ftmb_ring_reserve(&t->out);
        if (s)
            return s;
        if (atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed))
            return NULL;
        logger_wait_progress(); /* (maybe inside an ordered region others wait to enter) */
        _ftmb_region_ring(&_ftmb_rt.out->hdr);
        _ftmb_check_peers();
        _ftmb_backoff(spins);
    }
}

void _ftmb_tx_put(uint16_t queue, const void *data, uint32_t len, uint64_t in_time_ns)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (__builtin_expect(_ftmb_follow_mode, 0) && _ftmb_follow_drop_output(t, queue, data, len, in_time_ns))
        return; /* a follower's regenerated output, counted */
    _ftmb_op_enter(t);
    struct _ftmb_out_slot *s = _ftmb_ring_reserve(&t->out);
    if (__builtin_expect(s == NULL, 0) && !(s = out_wait_space(t))) {
        _ftmb_op_leave(t);
        return; /* the output logger is gone: the packet is dropped (reported once) */
    }
    if (len > FTMB_PKT_MAX)
        len = FTMB_PKT_MAX;
    s->out_seq = ++t->out_seq;
    s->in_time_ns = in_time_ns;
    s->len = len;
    s->thread = (uint16_t)t->index;
    s->nvec = t->nvec;
    s->queue = queue;
    memcpy(s->vec, t->vec, (size_t)t->nvec * sizeof s->vec[0]);
    memcpy(s->data, data, len);
    /* P1 (inside): release, pairs with the output logger's C1; it also orders this thread's
     * earlier record publications (R1) before the packet. */
    _ftmb_ring_publish(&t->out, 1);
    t->tx_published = 1;
    _ftmb_op_leave(t);
}

/* After a burst's outputs: a relay asleep on the output region takes them and the records they
 * depend on (one look per burst, not per packet; none for a follower's dropped outputs). */
void _ftmb_tx_end(void)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (t->tx_published) {
        t->tx_published = 0;
        _ftmb_region_ring(&_ftmb_rt.out->hdr);
    }
}

/* ---- opaque packets ------------------------------------------------------------------------------ */

#define PKT_CHUNK 256

struct ftmb_pkt *ftmb_pkt_alloc(void)
{
    struct _ftmb_thread *t = _ftmb_me();
    if (!t->free_pkts) {
        /* Grows the thread's cache in chunks; steady state reuses freed packets. */
        struct ftmb_pkt *chunk = aligned_alloc(64, PKT_CHUNK * sizeof *chunk);
        if (!chunk)
            return NULL;
        for (int i = 0; i < PKT_CHUNK; i++) {
            chunk[i].next = t->free_pkts;
            t->free_pkts = &chunk[i];
        }
    }
    struct ftmb_pkt *p = t->free_pkts;
    t->free_pkts = p->next;
    p->len = 0;
    p->in_time_ns = 0;
    return p;
}

void ftmb_pkt_free(struct ftmb_pkt *p)
{
    if (!p)
        return;
    struct _ftmb_thread *t = _ftmb_me();
    p->next = t->free_pkts;
    t->free_pkts = p;
}

void *ftmb_pkt_data(struct ftmb_pkt *p) { return p->data; }
ftmb_u32 ftmb_pkt_len(const struct ftmb_pkt *p) { return p->len; }
void ftmb_pkt_set_len(struct ftmb_pkt *p, ftmb_u32 len) { p->len = len > FTMB_PKT_MAX ? FTMB_PKT_MAX : len; }

ftmb_u16 ftmb_pkt_rx_burst(ftmb_u16 queue_id, struct ftmb_pkt **pkts, ftmb_u16 nb_pkts)
{
    struct _ftmb_rx_view views[64];
    uint16_t want = nb_pkts < 64 ? nb_pkts : 64;
    int n = _ftmb_rx_begin(queue_id, views, want);
    if (n < 0)
        return 0;
    int got = 0; /* n may be 0 with entries consumed (ticks, EOF): finish releases them too */
    for (; got < n; got++) {
        struct ftmb_pkt *p = ftmb_pkt_alloc();
        if (!p)
            _ftmb_fatal("out of memory for packet buffers");
        memcpy(p->data, views[got].data, views[got].len);
        p->len = views[got].len;
        p->in_time_ns = views[got].time_ns;
        pkts[got] = p;
    }
    _ftmb_rx_finish(queue_id);
    return (uint16_t)got;
}

ftmb_u16 ftmb_pkt_tx_burst(ftmb_u16 queue_id, struct ftmb_pkt **pkts, ftmb_u16 nb_pkts)
{
    if (_ftmb_tx_begin(queue_id, nb_pkts)) {
        for (uint16_t i = 0; i < nb_pkts; i++)
            _ftmb_tx_put(queue_id, pkts[i]->data, pkts[i]->len, pkts[i]->in_time_ns);
        _ftmb_tx_end();
    }
    for (uint16_t i = 0; i < nb_pkts; i++)
        ftmb_pkt_free(pkts[i]);
    return nb_pkts;
}

/* ---- serving input again (replay) ------------------------------------------------------------ */

/*
 * Ask the input logger to serve `queue` again from entry sequence `pos` (which it must still
 * retain). Entries in the ring that were not received yet are dropped by the logger. Called by the
 * thread that owns the queue, or before any thread polls it. Returns 0, or -1 if the logger died.
 * In two steps for a caller with several queues (a snapshot taking over): every request first,
 * then every wait, so it waits for one pass of the logger, not one per queue.
 */
void _ftmb_input_rewind_request(uint16_t queue, uint64_t pos)
{
    struct _ftmb_in_queue *iq = &_ftmb_rt.in->queue[queue];
    /* Relaxed: only this thread writes rewind_req. */
    uint64_t req = atomic_load_explicit(&iq->rewind_req, memory_order_relaxed) + 1;
    atomic_store_explicit(&iq->rewind_pos, pos, memory_order_relaxed);
    /* Release: rewind_pos is visible before the request; pairs with the logger's acquire. */
    atomic_store_explicit(&iq->rewind_req, req, memory_order_release);
    _ftmb_region_ring(&_ftmb_rt.in->hdr);
}

int _ftmb_input_rewind_wait(uint16_t queue)
{
    struct _ftmb_in_queue *iq = &_ftmb_rt.in->queue[queue];
    struct _ftmb_inq *q = &_ftmb_rt.inq[queue];
    /* Relaxed: only this thread writes rewind_req. */
    uint64_t req = atomic_load_explicit(&iq->rewind_req, memory_order_relaxed);
    /* Acquire pairs with the logger's release of rewind_ack: its emptied ring is visible. */
    for (unsigned spins = 0; atomic_load_explicit(&iq->rewind_ack, memory_order_acquire) != req; spins++) {
        if (atomic_load_explicit(&_ftmb_rt.in_dead, memory_order_relaxed))
            return -1;
        logger_wait_progress();
        _ftmb_check_peers();
        _ftmb_backoff(spins);
    }
    q->ring.cache = q->ring.local;
    q->eof = 0;
    q->pending = 0;
    return 0;
}

int _ftmb_input_rewind(uint16_t queue, uint64_t pos)
{
    if (!_ftmb_rt.in || queue >= _ftmb_rt.in->nqueues)
        return -1;
    _ftmb_input_rewind_request(queue, pos);
    return _ftmb_input_rewind_wait(queue);
}

/* Checkpoints call this: entries of `queue` before `seq` will not be needed again. */
void _ftmb_input_retain_from(uint16_t queue, uint64_t seq)
{
    if (_ftmb_rt.in && queue < _ftmb_rt.in->nqueues)
        /* Relaxed: a hint; the logger trims lazily and never past what it served. */
        atomic_store_explicit(&_ftmb_rt.in->queue[queue].retain_from, seq, memory_order_relaxed);
}

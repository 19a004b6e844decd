/*
 * libftmb_pcap: the libpcap side of the ABI. Compiled only where libpcap is installed and linked
 * only into programs that link -lpcap; the core runtime knows nothing of pcap_t.
 *
 * Inside a session (FTMB_SESSION set when the handle is opened) a handle is not a device or a file
 * but the next session input queue, in open order (pcap_open_live, pcap_open_offline, pcap_create;
 * deterministic: a program opens its handles before its workers run, or in one thread):
 *   - pcap_open_live/pcap_open_offline return a pcap_open_dead handle (Ethernet), pcap_create the
 *     real created handle (its pcap_set_* calls work) that pcap_activate leaves unactivated;
 *   - pcap_next, pcap_next_ex, pcap_dispatch and pcap_loop receive from the input logger: one
 *     receive takes a burst of up to 64 entries (its composition logged as any receive), the
 *     packets wait in the handle until the program asks for them, each header's ts is the entry's
 *     arrival time (the time model's clock) and caplen the handle's snaplen at most; the handlers
 *     of pcap_loop/pcap_dispatch run in the calling thread;
 *   - pcap_inject/pcap_sendpacket hand the packet to the output logger (held by the release rule);
 *   - a receive that has nothing to return waits as a live capture does: until a packet, the
 *     handle's timeout (pcap_open_live's to_ms; pcap_next_ex and pcap_dispatch return 0, pcap_loop
 *     waits on), pcap_setnonblock (at once) or pcap_breakloop; an offline handle ends with its
 *     queue's input. How such a wait ended is logged in the receiving thread's stream (the break
 *     flag as a value only a signal handler writes), so a replay ends the same waits the same way;
 *   - pcap_stats counts the packets the handle delivered (none dropped), pcap_fileno and
 *     pcap_get_selectable_fd give an eventfd that is always readable (a poll/select on it returns at
 *     once, and the receive that follows waits as above), pcap_datalink says Ethernet.
 * Without a session every call goes to libpcap itself (passthrough on real interfaces and files).
 * Not covered in a session: BPF filters (pcap_setfilter is libpcap's own: it fails on a dead handle
 * and filters nothing in a created one), pcap_dump (a file, not an output of the middlebox).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rt.h"

#define BURST 64

struct held {
    uint32_t len;
    uint64_t time_ns;
    uint8_t data[FTMB_PKT_MAX];
};

struct session_handle {
    pcap_t *p;
    uint16_t queue;
    int offline;                   /* opened as a file: the end of the queue's input ends it */
    int nonblock;
    int to_ms;                     /* pcap_open_live's packet buffer timeout; 0: none */
    int snaplen;
    volatile sig_atomic_t breakloop; /* pcap_breakloop from another thread or a signal handler */
    int break_self;                /* pcap_breakloop from a handler of this handle's own loop */
    _Atomic pid_t loop_tid;        /* the thread inside a receive of this handle */
    int efd;
    uint64_t delivered;
    struct held *held;             /* received, not yet delivered: held[next .. count) */
    unsigned next, count;
    struct pcap_pkthdr hdr;        /* pcap_next/pcap_next_ex's header and data */
    uint8_t buf[FTMB_PKT_MAX];
};

/* Appended by the thread that opens a handle (release: the entry is complete before it counts);
 * looked up by any thread, a signal handler included (acquire, no lock). */
static struct session_handle handles[FTMB_MAX_QUEUES];
static _Atomic unsigned nhandles;
static _Atomic uint64_t last_in_time; /* the newest arrival delivered: the in-time of an inject */

static int in_session(void)
{
    const char *s = getenv("FTMB_SESSION");
    return s && *s;
}

static struct session_handle *session_handle(pcap_t *p)
{
    unsigned n = atomic_load_explicit(&nhandles, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (handles[i].p == p)
            return &handles[i];
    return NULL;
}

static pcap_t *add_handle(pcap_t *p, int offline, int snaplen, int to_ms, char *errbuf)
{
    if (!p)
        return NULL;
    unsigned n = atomic_load_explicit(&nhandles, memory_order_relaxed); /* opens are not concurrent */
    if (n == FTMB_MAX_QUEUES) {
        if (errbuf)
            snprintf(errbuf, PCAP_ERRBUF_SIZE, "ftmb: more than %d pcap handles in a session", FTMB_MAX_QUEUES);
        pcap_close(p);
        return NULL;
    }
    struct held *held = calloc(BURST, sizeof *held);
    if (!held) {
        if (errbuf)
            snprintf(errbuf, PCAP_ERRBUF_SIZE, "ftmb: out of memory");
        pcap_close(p);
        return NULL;
    }
    handles[n] = (struct session_handle){.p = p, .queue = (uint16_t)n, .offline = offline, .to_ms = to_ms,
                                         .snaplen = snaplen > 0 ? snaplen : 262144, .efd = -1, .held = held};
    atomic_store_explicit(&nhandles, n + 1, memory_order_release);
    return p;
}

pcap_t *ftmb_pcap_open_live(const char *device, int snaplen, int promisc, int to_ms, char *errbuf)
{
    if (!in_session())
        return pcap_open_live(device, snaplen, promisc, to_ms, errbuf);
    return add_handle(pcap_open_dead(DLT_EN10MB, snaplen > 0 ? snaplen : 262144), 0, snaplen, to_ms, errbuf);
}

pcap_t *ftmb_pcap_open_offline(const char *fname, char *errbuf)
{
    if (!in_session())
        return pcap_open_offline(fname, errbuf);
    return add_handle(pcap_open_dead(DLT_EN10MB, 262144), 1, 262144, 0, errbuf);
}

pcap_t *ftmb_pcap_create(const char *source, char *errbuf)
{
    if (!in_session())
        return pcap_create(source, errbuf);
    return add_handle(pcap_create(source ? source : "any", errbuf), 0, 0, 0, errbuf);
}

int ftmb_pcap_activate(pcap_t *p)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_activate(p);
    int snap = pcap_snapshot(p); /* an unactivated handle answers PCAP_ERROR_NOT_ACTIVATED */
    if (snap > 0)
        h->snaplen = snap;
    return 0;
}

int ftmb_pcap_datalink(pcap_t *p)
{
    return session_handle(p) ? DLT_EN10MB : pcap_datalink(p);
}

int ftmb_pcap_setnonblock(pcap_t *p, int nonblock, char *errbuf)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_setnonblock(p, nonblock, errbuf);
    h->nonblock = nonblock != 0;
    return 0;
}

/* The break flag as this thread saw it when a wait ended: logged like a value only a signal
 * handler writes, so a replay ends the same wait the same way (no signal comes in a replay). */
static int break_seen(struct session_handle *h)
{
    int v = (int)_ftmb_logged_value((uint64_t)h->breakloop);
    if (v)
        h->breakloop = 0;
    return v;
}

#define RECV_END (-100) /* an offline handle's input ended */

/*
 * Make h hold packets: > 0 the number held, 0 the wait ended without one (timeout or nonblocking;
 * only with may_time_out), PCAP_ERROR_BREAK, or RECV_END.
 *
 * Which waits end how is what a replay must repeat. Record: a receive that consumed entries is
 * logged (also one of ticks only); a wait ends with one logged break_seen (at a timeout, or once
 * the flag is up), after a poll that consumed nothing. Replay: a poll consumes nothing exactly when
 * the thread's next record is not a receive of this queue, i.e. when the record ended the wait
 * there, so the replay reads the logged flag at that poll and ends the wait the same way.
 */
static int session_recv(struct session_handle *h, int may_time_out)
{
    if (h->next < h->count)
        return (int)(h->count - h->next);
    uint64_t deadline = 0;
    for (unsigned spins = 0;; spins++) {
        if (h->break_self) {
            h->break_self = 0;
            return PCAP_ERROR_BREAK;
        }
        /* Ended without another receive: a receive past the end of the thread's log ends a
         * verification replay there, while the thread (a capture thread main joins) has more to do. */
        if (h->offline && _ftmb_rt.in && _ftmb_rt.inq[h->queue].eof)
            return RECV_END;
        struct _ftmb_rx_view views[BURST];
        int n = _ftmb_rx_begin(h->queue, views, BURST);
        if (n < 0)
            return RECV_END; /* no session region: nothing will come */
        uint64_t consumed = _ftmb_rt.inq[h->queue].pending;
        for (int i = 0; i < n; i++) {
            uint32_t len = views[i].len < FTMB_PKT_MAX ? views[i].len : FTMB_PKT_MAX;
            h->held[i].len = len;
            h->held[i].time_ns = views[i].time_ns;
            memcpy(h->held[i].data, views[i].data, len);
        }
        _ftmb_rx_finish(h->queue);
        if (n > 0) {
            h->next = 0;
            h->count = (unsigned)n;
            return n;
        }
        if (consumed)
            continue; /* ticks: time moved, nothing to deliver */
        if (h->offline && ftmb_input_done(h->queue))
            return RECV_END;
        if (_ftmb_mode_now == FTMB_MODE_REPLAY) {
            /* The record ended its wait after exactly as many empty polls as the log counts. */
            if (_ftmb_replay_at_logged_value()) {
                if (break_seen(h))
                    return PCAP_ERROR_BREAK;
                if (may_time_out)
                    return 0;
            }
            continue;
        }
        int timed_out = 0;
        if (may_time_out && (h->nonblock || h->to_ms > 0)) {
            uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
            if (!deadline)
                deadline = now + (uint64_t)h->to_ms * 1000000u;
            timed_out = h->nonblock || now >= deadline;
        }
        if (h->breakloop || timed_out) {
            if (break_seen(h))
                return PCAP_ERROR_BREAK;
            if (timed_out)
                return 0;
        }
        _ftmb_backoff(spins);
    }
}

/* The next held packet into hdr; its data. */
static const uint8_t *deliver(struct session_handle *h, struct pcap_pkthdr *hdr)
{
    const struct held *k = &h->held[h->next++];
    hdr->ts.tv_sec = (time_t)(k->time_ns / 1000000000u);
    hdr->ts.tv_usec = (suseconds_t)(k->time_ns % 1000000000u / 1000u);
    hdr->len = k->len;
    hdr->caplen = k->len < (uint32_t)h->snaplen ? k->len : (uint32_t)h->snaplen;
    h->delivered++;
    atomic_store_explicit(&last_in_time, k->time_ns, memory_order_relaxed); /* relaxed: statistics */
    return k->data;
}

static void enter(struct session_handle *h) { atomic_store_explicit(&h->loop_tid, gettid(), memory_order_relaxed); }
static void leave(struct session_handle *h) { atomic_store_explicit(&h->loop_tid, 0, memory_order_relaxed); }

int ftmb_pcap_next_ex(pcap_t *p, struct pcap_pkthdr **pkt_header, const u_char **pkt_data)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_next_ex(p, pkt_header, pkt_data);
    enter(h);
    int n = session_recv(h, 1);
    leave(h);
    if (n == RECV_END)
        return PCAP_ERROR_BREAK; /* a savefile's end */
    if (n <= 0)
        return n; /* 0: timeout; PCAP_ERROR_BREAK */
    const uint8_t *data = deliver(h, &h->hdr);
    memcpy(h->buf, data, h->hdr.caplen);
    *pkt_header = &h->hdr;
    *pkt_data = h->buf;
    return 1;
}

const u_char *ftmb_pcap_next(pcap_t *p, struct pcap_pkthdr *hdr)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_next(p, hdr);
    struct pcap_pkthdr *ph;
    const u_char *data;
    if (ftmb_pcap_next_ex(p, &ph, &data) != 1)
        return NULL;
    *hdr = *ph;
    return data;
}

/* Deliver up to cnt (<= 0: all held) packets to callback; the count, or PCAP_ERROR_BREAK when a
 * handler broke the loop before any... after the packets delivered so far (libpcap's rule). */
static int run_handlers(struct session_handle *h, int cnt, pcap_handler callback, u_char *user, int *broke)
{
    int done = 0;
    while (h->next < h->count && (cnt <= 0 || done < cnt)) {
        struct pcap_pkthdr hdr;
        const uint8_t *data = deliver(h, &hdr);
        callback(user, &hdr, data);
        done++;
        if (h->break_self) {
            h->break_self = 0;
            *broke = 1;
            break;
        }
    }
    return done;
}

int ftmb_pcap_dispatch(pcap_t *p, int cnt, pcap_handler callback, u_char *user)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_dispatch(p, cnt, callback, user);
    enter(h);
    int n = session_recv(h, 1);
    int broke = 0, done = 0;
    if (n > 0)
        done = run_handlers(h, cnt, callback, user, &broke);
    leave(h);
    if (n == RECV_END)
        return 0;
    if (n < 0 || (broke && done == 0))
        return PCAP_ERROR_BREAK;
    return done;
}

int ftmb_pcap_loop(pcap_t *p, int cnt, pcap_handler callback, u_char *user)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_loop(p, cnt, callback, user);
    enter(h);
    int total = 0, rc = 0;
    while (cnt <= 0 || total < cnt) {
        int n = session_recv(h, 0);
        if (n == RECV_END)
            break;
        if (n < 0) {
            rc = PCAP_ERROR_BREAK;
            break;
        }
        int broke = 0;
        total += run_handlers(h, cnt <= 0 ? 0 : cnt - total, callback, user, &broke);
        if (broke) {
            rc = PCAP_ERROR_BREAK;
            break;
        }
    }
    leave(h);
    return rc;
}

void ftmb_pcap_breakloop(pcap_t *p)
{
    struct session_handle *h = session_handle(p);
    if (!h) {
        pcap_breakloop(p);
        return;
    }
    /* A handler of the handle's own loop breaks it deterministically; anyone else (another thread,
     * a signal handler) is an outside event, which the receive logs when it sees it. */
    if (atomic_load_explicit(&h->loop_tid, memory_order_relaxed) == gettid())
        h->break_self = 1;
    else
        h->breakloop = 1;
}

static int session_send(struct session_handle *h, const void *buf, size_t size)
{
    if (size > FTMB_PKT_MAX)
        size = FTMB_PKT_MAX; /* the session carries at most FTMB_PKT_MAX bytes, as the input logger */
    if (_ftmb_tx_begin(h->queue, 1)) {
        struct _ftmb_thread *t = _ftmb_me();
        uint64_t in = t->vtime_ns ? t->vtime_ns : atomic_load_explicit(&last_in_time, memory_order_relaxed);
        _ftmb_tx_put(h->queue, buf, (uint32_t)size, in);
        _ftmb_tx_end();
    }
    return (int)size;
}

int ftmb_pcap_inject(pcap_t *p, const void *buf, size_t size)
{
    struct session_handle *h = session_handle(p);
    return h ? session_send(h, buf, size) : pcap_inject(p, buf, size);
}

int ftmb_pcap_sendpacket(pcap_t *p, const u_char *buf, int size)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_sendpacket(p, buf, size);
    if (size < 0)
        return PCAP_ERROR;
    session_send(h, buf, (size_t)size);
    return 0;
}

int ftmb_pcap_stats(pcap_t *p, struct pcap_stat *ps)
{
    struct session_handle *h = session_handle(p);
    if (!h)
        return pcap_stats(p, ps);
    *ps = (struct pcap_stat){.ps_recv = (u_int)h->delivered};
    return 0;
}

static int selectable_fd(struct session_handle *h)
{
    if (h->efd < 0)
        h->efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    return h->efd;
}

int ftmb_pcap_fileno(pcap_t *p)
{
    struct session_handle *h = session_handle(p);
    return h ? selectable_fd(h) : pcap_fileno(p);
}

int ftmb_pcap_get_selectable_fd(pcap_t *p)
{
    struct session_handle *h = session_handle(p);
    return h ? selectable_fd(h) : pcap_get_selectable_fd(p);
}

void ftmb_pcap_close(pcap_t *p)
{
    struct session_handle *h = session_handle(p);
    if (h) {
        /* The queue stays the handle's (queues are numbered in open order); the handle is gone. */
        if (h->efd >= 0)
            close(h->efd);
        h->efd = -1;
        h->p = NULL;
    }
    pcap_close(p);
}

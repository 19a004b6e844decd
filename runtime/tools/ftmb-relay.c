/*
 * ftmb-relay: one session region (in or out) carried over TCP between two hosts, so the master, the
 * loggers and the runtime keep their shared-memory code paths unchanged.
 *
 *   export (the logger's host): --listen ADDR. Attaches to the logger's real region as the master
 *     would and, for each connection in turn, forks a child that stands in for the remote master:
 *     its pid is the master pid the logger sees, so a lost connection (the child exits) is a master
 *     that died, and the output logger writes the log.
 *   import (the master's host): --connect ADDR. Receives the region's geometry, creates a local
 *     region of the same layout (its owner pid is this process: a lost connection ends it, and the
 *     master sees its logger gone) and mirrors it: entries into the local rings (in), records and
 *     outputs out of them (out), the master's state, rewinds and marks back.
 *
 * Frames: {u32 type, u32 len, payload}; TCP_NODELAY; a ping every timeout/4 on an idle link; a link
 * with nothing readable for --timeout-ms is lost (reported by role, exit 3). The out export
 * publishes records in an order closed under each object's sequence (a record with sequence s on
 * object o only once s-1 was published), so whatever prefix of the stream arrived before a loss is
 * a log a backup can replay. With --log FILE an out import first receives the output logger's log
 * (written when the previous master died) and stores it in FILE: the cold backup's log.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"
#include "follow.h"
#include "tool_util.h"

enum {
    F_PING = 1,
    F_HELLO_IN = 2,  /* export -> import: nqueues, capacity, tsc_hz, tick_ns */
    F_HELLO_OUT = 3, /* export -> import: max_threads, capacities, nthreads, heads */
    F_ENTRY = 4,     /* export -> import: one input entry (32 bytes + data) */
    F_REWIND = 5,    /* import -> export: queue, req, pos */
    F_REWIND_ACK = 6,/* export -> import: queue, req (entries after it are served from pos) */
    F_RETAIN = 7,    /* import -> export: queue or thread, mark */
    F_STATE = 8,     /* import -> export: master state, mode, tsc_hz */
    F_NTHREADS = 9,  /* import -> export */
    F_RECS = 10,     /* import -> export: thread, records */
    F_OUTPUT = 11,   /* import -> export: one output slot (header, vector, data) */
    F_WANT_LOG = 12, /* import -> export parent: send me the log first (0 or 1) */
    F_LOG = 13,      /* export -> import: a chunk of the log file */
    F_LOG_END = 14,
    F_FREED = 15,    /* import -> export: queue (or thread), entries (records) that left the import side */
    /* The follow links (a follower on its own host): */
    F_HELLO_FOL = 16,   /* export -> import: fol max_threads, capacity; out max_threads, capacities */
    F_HELLO_INFOL = 17, /* export -> import: infol nqueues, capacity; in nqueues, capacity, tsc_hz, tick_ns */
    F_FRECS = 18,       /* export -> import: thread, records of its follow ring */
    F_FENTRY = 19,      /* export -> import: queue, one entry of its follow ring */
    F_FINAL = 20,       /* export -> import: final (died or finished), each thread's final count */
    F_APPLIED = 21,     /* import -> export: thread, records the follower applied */
    F_FOLLOWER = 22,    /* import -> export: a follower attached */
    F_FOL_TAKEOVER = 23,/* import -> export (in, the session link): the master to come is a follower that
                         * takes over; each queue is served again from the follower's position */
};

#define MAX_FRAME (64 * 1024)
/* Frames handled per pass of a loop: the pass also beats the heartbeat, pings and sends. */
#define FRAMES_PER_PASS 64
#define OUT_HDR 32

static const char *me = "ftmb-relay";
static const char *role = "";     /* "in" or "out" */
static const char *peer_addr = "";
static uint64_t timeout_ns = 1000000000ull;      /* the link */
static uint64_t peer_timeout_ns = 10000000000ull; /* the logger on this host (export) */
static uint64_t connect_wait_ns = 10000000000ull; /* (import) to connect, and to be served */
/* The logger on this host (export): its heartbeat as this relay sees it. */
static struct _ftmb_peer_watch logger_watch;
static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { (void)sig; stop_signal = 1; }

#define LINK_BUF (256 * 1024)

/* A link batches: frames are appended to `obuf` and written when it fills or the loop is about to
 * wait (link_flush: ping_if_idle, idle_wait, and before any blocking wait); frames are read in
 * chunks into `ibuf` and taken from there. One send and one recv per pass instead of three
 * syscalls per frame (an entry per frame on the in link). */
struct link {
    int fd;
    const char *peer, *addr; /* who is at the other end, and where: for the report of its loss */
    uint64_t last_rx, last_tx;
    /* The peer's silence is counted in the time this relay looked at the link (link_look), not in
     * wall time: a relay (or a whole machine) that was not scheduled for a while must not blame its
     * peer for the time it did not watch, nor before the peer, paused with it, had its turn. */
    uint64_t last_look, silent;
    int waiting; /* for its turn (await_first, a follower's session link): silence says nothing yet */
    uint8_t buf[MAX_FRAME + 8];
    uint32_t type, len; /* the frame read and not yet handled (pending) */
    int pending;
    uint8_t obuf[LINK_BUF], ibuf[LINK_BUF];
    size_t on, ihead, itail;
};

#define NO_ANSWER "no word within the timeout (its host acknowledged nothing: the host or the link is down)"

static _Noreturn void link_lost(const struct link *l, const char *why)
{
    fprintf(stderr, "%s %s: %s %s: %s\n", me, role, l->peer, l->addr, why);
    exit(3);
}

static _Noreturn void lost(const char *why)
{
    int follow = !strcmp(role, "fol") || !strcmp(role, "infol");
    const char *other = strcmp(me, "ftmb-relay import") == 0
                            ? (strcmp(role, "in") == 0 ? "the input logger's host" : "the output logger's host")
                            : follow ? "the follower's host" : "the master's host";
    fprintf(stderr, "%s %s: %s %s: %s\n", me, role, other, peer_addr, why);
    exit(3);
}

static void send_all(struct link *l, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t start = _ftmb_now_ns(CLOCK_MONOTONIC);
    for (;;) {
        if (!n) {
            uint64_t took = _ftmb_now_ns(CLOCK_MONOTONIC) - start;
            if (took > timeout_ns / 4) /* (the peer, or its kernel, took nothing meanwhile: it may report us silent) */
                fprintf(stderr, "%s %s: a send to %s %s blocked for %llu ms\n", me, role, l->peer, l->addr,
                        (unsigned long long)(took / 1000000));
            return;
        }
        ssize_t w = send(l->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            link_lost(l, "the connection is stuck (nothing sent within the timeout)");
        if (w < 0 && errno == ETIMEDOUT)
            link_lost(l, NO_ANSWER);
        if (w <= 0)
            link_lost(l, "the connection was lost");
        b += w;
        n -= (size_t)w;
    }
}

static void link_flush(struct link *l)
{
    if (l->on) {
        send_all(l, l->obuf, l->on);
        l->on = 0;
    }
}

static void send_frame(struct link *l, uint32_t type, const void *p, uint32_t len)
{
    uint32_t h[2] = {type, len};
    if (l->on + 8 + len > sizeof l->obuf)
        link_flush(l);
    memcpy(l->obuf + l->on, h, 8);
    if (len)
        memcpy(l->obuf + l->on + 8, p, len);
    l->on += 8 + len;
    l->last_tx = _ftmb_now_ns(CLOCK_MONOTONIC);
}

/* A peer's host that acknowledges nothing for --timeout-ms ends the link in the kernel
 * (TCP_USER_TIMEOUT, setup_socket): a lost host or link. A peer process that is there (its host
 * acknowledges) but says nothing is hung after HUNG_TIMEOUTS timeouts of watching: a starved one,
 * on a loaded machine, gets that much longer to run once before it is given up. */
#define HUNG_TIMEOUTS 2

/* This relay looked at the link at `now` after waiting up to `waited` ns in poll for a word, and
 * heard one or not. Silence counts the time between two looks only up to a ping period past the
 * wait: a longer gap is time this relay was not running (starved, stopped, or the machine paused),
 * in which the peer, likely paused too, owed it nothing. So a peer process is lost after
 * HUNG_TIMEOUTS x `--timeout-ms` of watching without a word: at once-a-pass looks that is the
 * time itself; a relay that a loaded machine schedules rarely takes longer in wall time to decide,
 * and never blames a peer that answers within its own watching time after a pause. */
static void link_look(struct link *l, uint64_t now, uint64_t waited, int heard)
{
    uint64_t gap = now - l->last_look, credit = waited + timeout_ns / 4;
    l->last_look = now;
    if (gap > credit + timeout_ns / 4 && !l->waiting) /* (why a peer may have declared this relay lost) */
        fprintf(stderr, "%s %s: did not look at its link to %s %s for %llu ms (not scheduled, or blocked)\n", me,
                role, l->peer, l->addr, (unsigned long long)(gap / 1000000));
    if (heard) {
        l->last_rx = now;
        l->silent = 0;
        return;
    }
    if (l->waiting)
        return;
    l->silent += gap < credit ? gap : credit;
    if (l->silent > HUNG_TIMEOUTS * timeout_ns) {
        char why[160];
        snprintf(why, sizeof why, "no word from its process (%llu ms watched; %llu ms since the last word)",
                 (unsigned long long)(l->silent / 1000000), (unsigned long long)((now - l->last_rx) / 1000000));
        link_lost(l, why);
    }
}

/* A whole frame from ibuf into l->buf; 1 if there was one. */
static int take_frame(struct link *l)
{
    size_t have = l->itail - l->ihead;
    if (have < 8)
        return 0;
    uint32_t h[2];
    memcpy(h, l->ibuf + l->ihead, 8);
    if (h[1] > MAX_FRAME)
        link_lost(l, "a frame over the size limit (not an ftmb-relay peer?)");
    if (have < 8 + (size_t)h[1])
        return 0;
    memcpy(l->buf, l->ibuf + l->ihead + 8, h[1]);
    l->ihead += 8 + h[1];
    l->type = h[0];
    l->len = h[1];
    l->pending = 1;
    return 1;
}

/* Read one frame if one is readable now (or wait up to wait_ms for it); 1 if l holds a frame. A
 * look without a wait is one recv (a pass of an idle relay makes one system call per link); its
 * silence is accounted by ping_if_idle's looks. */
static int poll_frame(struct link *l, int wait_ms)
{
    if (l->pending || take_frame(l))
        return 1;
    uint64_t start = _ftmb_now_ns(CLOCK_MONOTONIC);
    for (;;) {
        link_flush(l); /* (about to wait: what we owe the peer goes first) */
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        int left = wait_ms - (int)((now - start) / 1000000);
        if (left > 0) {
            struct pollfd pf = {l->fd, POLLIN, 0};
            int n = poll(&pf, 1, left);
            now = _ftmb_now_ns(CLOCK_MONOTONIC);
            link_look(l, now, (uint64_t)left * 1000000ull, n > 0);
            if (n <= 0)
                return 0;
        }
        if (l->ihead == l->itail)
            l->ihead = l->itail = 0;
        else if (l->itail == sizeof l->ibuf) { /* compact: a partial frame at the end */
            memmove(l->ibuf, l->ibuf + l->ihead, l->itail - l->ihead);
            l->itail -= l->ihead;
            l->ihead = 0;
        }
        ssize_t r = recv(l->fd, l->ibuf + l->itail, sizeof l->ibuf - l->itail, MSG_DONTWAIT);
        int err = errno, again = r < 0 && (err == EINTR || err == EAGAIN || err == EWOULDBLOCK);
        if (again && left <= 0)
            return 0; /* (nothing readable: not a look; ping_if_idle's count the silence) */
        if (!again && left <= 0) /* a frame, an end or an error is a look (it says if this relay did not
                                  * look for long, before an end is reported) */
            link_look(l, _ftmb_now_ns(CLOCK_MONOTONIC), 0, 1);
        if (again)
            r = -2;
        else if (r == 0)
            link_lost(l, "the connection was closed");
        else if (r < 0 && err == ETIMEDOUT)
            link_lost(l, NO_ANSWER);
        else if (r < 0)
            link_lost(l, "the connection was lost");
        if (r > 0)
            l->itail += (size_t)r;
        if (take_frame(l))
            return 1;
        if (wait_ms <= 0 || _ftmb_now_ns(CLOCK_MONOTONIC) - start >= (uint64_t)wait_ms * 1000000ull)
            return 0;
    }
}

/* Looks at a link's silence at most this often (a frame read is a look too). */
#define LOOK_EVERY_NS 1000000ull

static void ping_if_idle(struct link *l)
{
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    if (now - l->last_tx > timeout_ns / 4)
        send_frame(l, F_PING, NULL, 0);
    link_flush(l);
    if (now - l->last_look < LOOK_EVERY_NS)
        return;
    /* Data waiting to be read is a sign of life even when we do not read it yet (a full ring). */
    struct pollfd pf = {l->fd, POLLIN, 0};
    link_look(l, now, 0, poll(&pf, 1, 0) > 0 || l->itail != l->ihead || l->pending);
}

/* An import's first frame on a link (l->pending): an export serves one importer at a time, so a
 * new link waits for its turn, which comes when the link before it ends (a master that finished,
 * or one whose loss its export is still finding out, up to --timeout-ms). That wait is bounded by
 * --connect-wait-ms, not judged by silence: one timeout for two things made a verification
 * replay's import give up while the export still served the follower's link. Pings are skipped. */
static void await_first(struct link *l)
{
    uint64_t deadline = _ftmb_now_ns(CLOCK_MONOTONIC) + connect_wait_ns;
    l->waiting = 1;
    for (;;) {
        if (poll_frame(l, 100)) {
            if (l->type != F_PING)
                break;
            l->pending = 0;
        } else if (_ftmb_now_ns(CLOCK_MONOTONIC) > deadline) {
            link_lost(l, "not served within --connect-wait-ms (does another master's link still hold it?)");
        }
    }
    l->waiting = 0;
    l->silent = 0;
}

static void setup_socket(struct link *l, int fd, const char *peer, const char *addr)
{
    l->peer = peer;
    l->addr = addr;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* The peer's host must acknowledge what we send (a ping each timeout/4 at the least) within the
     * timeout, or the kernel ends the link (ETIMEDOUT): a lost host or link is found by its kernel's
     * silence, which a starved peer process does not cause. */
    unsigned user_timeout_ms = (unsigned)(timeout_ns / 1000000);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
    struct timeval tv = {(time_t)(timeout_ns / 1000000000ull), (suseconds_t)(timeout_ns % 1000000000ull / 1000)};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    l->fd = fd;
    l->last_rx = l->last_tx = l->last_look = _ftmb_now_ns(CLOCK_MONOTONIC);
    l->silent = 0;
    l->waiting = l->pending = 0;
    l->on = l->ihead = l->itail = 0;
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/*
 * An idle relay sleeps until there is something to do: in poll() on its links, from which a frame
 * from the peer wakes it, and on the regions it carries, whose producers wake it with SIGURG
 * (_ftmb_region_ring: the input logger on publishing entries, the master on a burst's outputs, a
 * rewind request or a change of state, the output logger on the follow ring's records and the
 * master's end, the follower on its applied count). SIGURG is blocked except inside that poll, so
 * a wake that comes before it ends the poll at once. Before it sleeps the relay stores its pid in
 * each region's `sleeper` and makes one more pass: whatever a producer published before it looked
 * at `sleeper` that pass sees (the fences of _ftmb_region_ring and set_sleeper). What no producer rings
 * for (a consumer's progress that only flow control and marks wait for, pings, the peer checks) is
 * looked at within ARMED_SLEEP_NS. A relay that polled every 50 µs instead (up to session 16) took,
 * eight of them, half of a 2-CPU machine (bench/RESULTS.md).
 */
#define IDLE_SPINS 0               /* passes that find nothing before the relay prepares to sleep */
#define ARMED_SLEEP_NS 1000000ull  /* the longest sleep */
#define HELD_NAP_NS 50000ull       /* a nap while data waits for room in a ring (nobody rings for room) */
static struct _ftmb_region_hdr *bells[2]; /* the regions whose producers wake this relay */
static int armed;                         /* the relay's pid is in their `sleeper` */
static int held_back;                     /* data waits for room: in a ring of this host (export out), or
                                           * in the socket (export in: no POLLOUT) */
static sigset_t sleep_mask;               /* the signal mask inside the sleep: SIGURG unblocked */

static void on_wake(int sig) { (void)sig; }

static void wake_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake; /* (not SIG_IGN: an ignored signal would not end the poll) */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGURG, &sa, NULL);
    sigset_t urg;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    sigprocmask(SIG_BLOCK, &urg, &sleep_mask);
    sigdelset(&sleep_mask, SIGURG);
}

static void sleep_on(struct _ftmb_region_hdr *a, struct _ftmb_region_hdr *b)
{
    bells[0] = a;
    bells[1] = b;
}

static void set_sleeper(int32_t pid)
{
    for (int i = 0; i < 2; i++)
        if (bells[i]) /* Relaxed: ordered by the fence after it (arm) or irrelevant (a spurious wake). */
            atomic_store_explicit(&bells[i]->sleeper, pid, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* pairs with _ftmb_region_ring's */
    armed = pid != 0;
}

static int link_held(const struct link *l)
{
    return l && (l->pending || l->itail != l->ihead); /* (a frame held back, or more read already) */
}

/* A pass found nothing to do (`l2`: a second link the relay serves, or NULL). */
static void idle_wait(struct link *l, struct link *l2, unsigned *idle)
{
    link_flush(l);
    if (l2)
        link_flush(l2);
    if (++*idle <= IDLE_SPINS)
        return;
    if (held_back || link_held(l) || link_held(l2)) {
        struct timespec d = {0, HELD_NAP_NS};
        nanosleep(&d, NULL);
        return;
    }
    if (!armed) { /* one more pass, which sees whatever was published before a producer looked */
        set_sleeper((int32_t)getpid());
        return;
    }
    struct pollfd pf[2] = {{l->fd, POLLIN, 0}, {l2 ? l2->fd : -1, POLLIN, 0}};
    struct timespec d = {0, ARMED_SLEEP_NS};
    ppoll(pf, l2 ? 2 : 1, &d, &sleep_mask);
    set_sleeper(0);
}

/* ---- export: the logger's host ------------------------------------------------------------------ */

struct u64s {
    uint64_t *v;
    uint64_t n, cap, at;
};

/* Have the input logger serve queue q again from entry pos (it empties the ring first). */
static void logger_rewind(struct link *l, struct _ftmb_in_region *r, struct _ftmb_ring *rg, uint32_t q, uint64_t pos)
{
    /* The logger's own request count goes on across masters (an importer's starts at 1 with each). */
    struct _ftmb_in_queue *iq = &r->queue[q];
    uint64_t req = atomic_load_explicit(&iq->rewind_req, memory_order_relaxed) + 1;
    atomic_store_explicit(&iq->rewind_pos, pos, memory_order_relaxed);
    atomic_store_explicit(&iq->rewind_req, req, memory_order_release);
    while (atomic_load_explicit(&iq->rewind_ack, memory_order_acquire) != req) {
        if (!_ftmb_peer_watch_alive(&logger_watch, &r->hdr, peer_timeout_ns))
            lost("the input logger is gone");
        ping_if_idle(l);
        usleep(50);
    }
    rg->cache = rg->local; /* the logger emptied the ring: head = tail = our local */
}

/* Where a takeover master is served each queue again from: the start of the logger's log (0), or,
 * for a follower that takes over (F_FOL_TAKEOVER), its position in the queue: the tail of the input
 * logger's follow ring (what the follower took, F_FREED). A logger with --follow-forget forgets
 * only entries before that tail, and the tail only grows, so the position read now is still
 * retained; the follower asks again from its exact position (at or after it) at its next receive. */
static uint64_t takeover_pos(const struct _ftmb_infol_region *fol, uint32_t q, int follower)
{
    if (!follower || !fol || q >= fol->nqueues)
        return 0;
    /* Acquire pairs with the follow export's consume (release): a position the logger may trim to. */
    return atomic_load_explicit(&fol->queue[q].tail, memory_order_acquire);
}

/* `fol`: the input logger's follow region (its --follow), or NULL. */
static void export_in(struct link *l, struct _ftmb_in_region *r, const struct _ftmb_infol_region *fol)
{
    struct _ftmb_ring rings[FTMB_MAX_QUEUES];
    uint32_t hello[2] = {r->nqueues, r->capacity};
    uint64_t hello2[2] = {r->tsc_hz, r->tick_ns};
    uint8_t h[24];
    memcpy(h, hello, 8);
    memcpy(h + 8, hello2, 16);
    send_frame(l, F_HELLO_IN, h, sizeof h);
    /* Credit: at most `capacity` entries of a queue are on their way or in the import's ring, so an
     * entry always fits there and one queue whose thread does not receive never stalls another. */
    uint64_t sent[FTMB_MAX_QUEUES] = {0}, freed[FTMB_MAX_QUEUES] = {0};
    /* A master before this one (it died, or finished) took entries through its link that died with
     * its host: a takeover is served every queue again from the start of the logger's log (a replay
     * asks again from where its log starts; a queue its log never received from starts there), a
     * follower's from its position (takeover_pos). Nothing is sent before the master attached, so
     * no entry of the old stream reaches the new one. */
    int takeover = atomic_load_explicit(&r->hdr.master_pid, memory_order_relaxed) != 0, serving = 0;
    int follower = 0;
    /* The input logger paces --rate from the master's first take: its ring's tail moving. Here the
     * take is the remote master's, which may come a second after its attach (a DPDK program
     * attaches before rte_eal_init). So until the import says its master took an entry (F_FREED),
     * each queue's first entry is sent but left in the logger's ring (held); a takeover master's
     * logger is pacing already. */
    int took = takeover;
    uint64_t held[FTMB_MAX_QUEUES] = {0};
    for (uint32_t q = 0; q < r->nqueues; q++)
        _ftmb_ring_attach(&rings[q], r, &r->queue[q].ring, 0);
    sleep_on(&r->hdr, NULL); /* (the input logger's entries and rewind acks) */
    unsigned idle = 0;
    uint64_t last_check = 0;
    for (;;) {
        int work = 0;
        for (int f = 0; f < FRAMES_PER_PASS && poll_frame(l, 0); f++) {
            l->pending = 0;
            work = 1;
            uint64_t *a = (uint64_t *)l->buf;
            if (l->type == F_STATE) {
                atomic_store_explicit(&r->hdr.master_pid, (int32_t)getpid(), memory_order_relaxed);
                atomic_store_explicit(&r->hdr.master_mode, (uint32_t)a[1], memory_order_relaxed);
                /* Release: pairs with the logger's acquire load of master_state. */
                atomic_store_explicit(&r->hdr.master_state, (uint32_t)a[0], memory_order_release);
                if (a[0] == _FTMB_MASTER_DONE || a[0] == _FTMB_MASTER_STOPPED) {
                    fprintf(stderr, "%s %s: the master %s\n", me, role,
                            a[0] == _FTMB_MASTER_DONE ? "finished" : "was stopped by a signal");
                    exit(0);
                }
                if (a[0] == _FTMB_MASTER_ATTACHED && !serving) {
                    for (uint32_t q = 0; takeover && q < r->nqueues; q++)
                        logger_rewind(l, r, &rings[q], q, takeover_pos(fol, q, follower));
                    serving = 1;
                }
            } else if (l->type == F_REWIND && a[0] < r->nqueues) {
                logger_rewind(l, r, &rings[a[0]], (uint32_t)a[0], a[2]);
                held[a[0]] = 0; /* (the logger emptied its ring) */
                uint64_t ack[2] = {a[0], a[1]};
                send_frame(l, F_REWIND_ACK, ack, sizeof ack);
            } else if (l->type == F_RETAIN && a[0] < r->nqueues) {
                atomic_store_explicit(&r->queue[a[0]].retain_from, a[1], memory_order_relaxed);
            } else if (l->type == F_FREED && a[0] < r->nqueues) {
                freed[a[0]] = a[1];
                if (!took && a[1] > 0) { /* the master's first take: the logger's pacing starts now */
                    took = 1;
                    for (uint32_t q = 0; q < r->nqueues; q++) {
                        _ftmb_ring_consume(&rings[q], held[q]);
                        held[q] = 0;
                    }
                }
            } else if (l->type == F_FOL_TAKEOVER) {
                follower = 1;
            }
        }
        int ready = 0;
        for (uint32_t q = 0; q < r->nqueues && !ready; q++)
            ready = _ftmb_ring_ready(&rings[q]) != 0;
        struct pollfd pf = {l->fd, POLLOUT, 0};
        held_back = serving && ready && poll(&pf, 1, 0) <= 0;
        if (serving && ready && !held_back) {
            for (uint32_t q = 0; q < r->nqueues; q++) {
                for (int k = 0; k < 32 && sent[q] - freed[q] < r->capacity && (took || !held[q]) &&
                                _ftmb_ring_ready(&rings[q]);
                     k++) {
                    const struct _ftmb_in_entry *e = _ftmb_ring_peek(&rings[q], 0);
                    send_frame(l, F_ENTRY, e, 32 + (e->len <= FTMB_PKT_MAX ? e->len : 0));
                    if (took)
                        _ftmb_ring_consume(&rings[q], 1);
                    else
                        held[q]++;
                    sent[q]++;
                    work = 1;
                }
            }
        }
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (now - last_check > 10000000ull) { /* every 10 ms: a /proc read */
            last_check = now;
            if (!_ftmb_peer_watch_alive(&logger_watch, &r->hdr, peer_timeout_ns))
                lost("the input logger is gone");
        }
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
}

/* Records waiting for their object's predecessor (per thread, in stream order). */
static struct u64s pend[FTMB_MAX_THREADS];
static uint64_t obj_next[FTMB_MAX_OBJECTS];
static uint8_t obj_known[FTMB_MAX_OBJECTS];

/* An ordered record: its object and sequence (an ORD record's value also holds a run mark). */
static int rec_ordered(uint64_t head, uint64_t value, uint32_t *obj, uint64_t *seq)
{
    unsigned k = _ftmb_rec_kind(head);
    *obj = _ftmb_rec_obj(head);
    *seq = k == _FTMB_REC_ORDERED ? value & _FTMB_ORD_SEQ_MASK : value;
    return (k == _FTMB_REC_LOCK || k == _FTMB_REC_ORDERED || k == _FTMB_REC_HELD || k == _FTMB_REC_ORDQ) &&
           *obj < FTMB_MAX_OBJECTS;
}

/* Publish every pending record whose predecessors are published; returns how many. */
static uint64_t publish_closed(struct _ftmb_out_region *r, struct _ftmb_ring *rec, uint32_t nthreads)
{
    uint64_t total = 0, progress;
    do {
        progress = 0;
        for (uint32_t t = 0; t < nthreads; t++) {
            struct u64s *p = &pend[t];
            uint64_t n = 0;
            while (p->at + 2 * n < p->n) {
                uint64_t head = p->v[p->at + 2 * n], value = p->v[p->at + 2 * n + 1];
                uint32_t obj;
                uint64_t seq;
                int claimed = 0, ordered = rec_ordered(head, value, &obj, &seq);
                if (ordered) {
                    if (!obj_known[obj]) { /* a takeover master's object: its predecessors are logged */
                        obj_known[obj] = 1;
                        obj_next[obj] = seq;
                    }
                    if (seq > obj_next[obj]) /* its predecessor has not come yet */
                        break;
                    /* below: an object first seen here at a later sequence (a takeover) */
                    claimed = seq == obj_next[obj];
                    obj_next[obj] += claimed;
                }
                struct _ftmb_record *slot = _ftmb_ring_reserve(&rec[t]);
                if (!slot) { /* undo the claim: the logger is behind */
                    if (ordered)
                        obj_next[obj] -= claimed;
                    break;
                }
                slot->head = head;
                slot->value = value;
                _ftmb_ring_publish(&rec[t], 1);
                n++;
            }
            p->at += 2 * n;
            if (p->at == p->n)
                p->at = p->n = 0;
            progress += n;
        }
        total += progress;
    } while (progress);
    (void)r;
    return total;
}

/* Outputs waiting for room in the logger's ring (it keeps a packet there until its records are
 * stored): buffered here, so a held output never stops the records behind it on the stream. */
struct bytes {
    uint8_t *v;
    size_t n, cap, at;
};
static struct bytes outq[FTMB_MAX_THREADS];

static void push_bytes(struct bytes *b, const void *p, uint32_t len)
{
    if (b->n + 4 + len > b->cap) {
        b->cap = (b->n + 4 + len) * 2;
        b->v = realloc(b->v, b->cap);
        if (!b->v) {
            fprintf(stderr, "%s: out of memory\n", me);
            exit(1);
        }
    }
    memcpy(b->v + b->n, &len, 4);
    memcpy(b->v + b->n + 4, p, len);
    b->n += 4 + len;
}

static uint64_t publish_outputs(struct _ftmb_ring *out, uint32_t nthreads)
{
    uint64_t total = 0;
    for (uint32_t t = 0; t < nthreads; t++) {
        struct bytes *b = &outq[t];
        while (b->at < b->n) {
            struct _ftmb_out_slot *d = _ftmb_ring_reserve(&out[t]);
            if (!d)
                break;
            const struct _ftmb_out_slot *s = (const void *)(b->v + b->at + 4);
            memcpy(d, s, OUT_HDR + 8 * (size_t)s->nvec);
            memcpy(d->data, (const uint8_t *)s + OUT_HDR + 8 * (size_t)s->nvec, s->len);
            _ftmb_ring_publish(&out[t], 1);
            uint32_t len;
            memcpy(&len, b->v + b->at, 4);
            b->at += 4 + len;
            total++;
        }
        if (b->at == b->n)
            b->at = b->n = 0;
    }
    return total;
}

static void export_out(struct link *l, struct _ftmb_out_region *r)
{
    struct _ftmb_ring rec[FTMB_MAX_THREADS], out[FTMB_MAX_THREADS];
    uint32_t nthreads = atomic_load_explicit(&r->nthreads, memory_order_acquire);
    int fresh = nthreads == 0; /* the session's first master: every object starts at sequence 0 */
    for (uint32_t o = 0; o < FTMB_MAX_OBJECTS; o++) {
        obj_known[o] = (uint8_t)fresh;
        obj_next[o] = 0;
    }
    uint64_t hello[4 + 2 * FTMB_MAX_THREADS];
    hello[0] = r->max_threads;
    hello[1] = r->rec_capacity;
    hello[2] = r->out_capacity;
    hello[3] = nthreads;
    for (uint32_t t = 0; t < r->max_threads; t++) {
        _ftmb_ring_attach(&rec[t], r, &r->thread[t].rec, 1);
        _ftmb_ring_attach(&out[t], r, &r->thread[t].out, 1);
        hello[4 + 2 * t] = rec[t].local;
        hello[5 + 2 * t] = out[t].local;
    }
    send_frame(l, F_HELLO_OUT, hello, (uint32_t)(8 * (4 + 2 * r->max_threads)));
    sleep_on(NULL, NULL); /* (its links only: what waits here waits for room, held_back) */
    unsigned idle = 0;
    uint64_t last_check = 0;
    for (;;) {
        int work = (publish_closed(r, rec, nthreads) | publish_outputs(out, nthreads)) != 0;
        held_back = 0;
        for (uint32_t t = 0; t < nthreads && !held_back; t++)
            held_back = pend[t].n != 0 || outq[t].n != 0;
        for (int f = 0; f < FRAMES_PER_PASS && poll_frame(l, 0); f++) {
            uint64_t *a = (uint64_t *)l->buf;
            if (l->type == F_RECS) {
                uint32_t t = (uint32_t)a[0];
                uint64_t n = (l->len - 8) / 8;
                if (t >= nthreads)
                    lost("records of a thread the master did not announce");
                struct u64s *p = &pend[t];
                if (p->n + n > p->cap) {
                    p->cap = (p->n + n) * 2;
                    p->v = realloc(p->v, p->cap * 8);
                    if (!p->v) {
                        fprintf(stderr, "%s: out of memory\n", me);
                        exit(1);
                    }
                }
                memcpy(p->v + p->n, a + 1, n * 8);
                p->n += n;
                publish_closed(r, rec, nthreads);
            } else if (l->type == F_OUTPUT) {
                const struct _ftmb_out_slot *s = (const void *)l->buf;
                if (s->thread >= nthreads)
                    lost("an output of a thread the master did not announce");
                push_bytes(&outq[s->thread], s, l->len);
                publish_outputs(out, nthreads);
            } else if (l->type == F_NTHREADS) {
                if (a[0] > r->max_threads)
                    lost("more threads than the output logger made rings for");
                nthreads = (uint32_t)a[0];
                /* Release: pairs with the logger's acquire load; before the thread's records. */
                atomic_store_explicit(&r->nthreads, nthreads, memory_order_release);
            } else if (l->type == F_STATE) {
                atomic_store_explicit(&r->hdr.master_pid, (int32_t)getpid(), memory_order_relaxed);
                r->tsc_hz = a[2];
                atomic_store_explicit(&r->hdr.master_mode, (uint32_t)a[1], memory_order_relaxed);
                if (a[0] == _FTMB_MASTER_DONE || a[0] == _FTMB_MASTER_STOPPED) {
                    /* Everything the master published came before: store it all first. */
                    while (publish_closed(r, rec, nthreads) || 1) {
                        int left = 0;
                        publish_outputs(out, nthreads);
                        for (uint32_t t = 0; t < nthreads; t++)
                            left |= pend[t].n != 0 || outq[t].n != 0;
                        if (!left)
                            break;
                        if (!_ftmb_peer_watch_alive(&logger_watch, &r->hdr, peer_timeout_ns))
                            lost("the output logger is gone");
                        usleep(50);
                    }
                }
                /* Release: pairs with the logger's acquire load of master_state. */
                atomic_store_explicit(&r->hdr.master_state, (uint32_t)a[0], memory_order_release);
                if (a[0] == _FTMB_MASTER_DONE || a[0] == _FTMB_MASTER_STOPPED) {
                    fprintf(stderr, "%s %s: the master %s\n", me, role,
                            a[0] == _FTMB_MASTER_DONE ? "finished" : "was stopped by a signal");
                    exit(0);
                }
            } else if (l->type == F_RETAIN && a[0] < r->max_threads) {
                atomic_store_explicit(&r->thread[a[0]].retain_from, a[1], memory_order_relaxed);
            }
            l->pending = 0;
            work = 1;
        }
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (now - last_check > 10000000ull) { /* every 10 ms: a /proc read */
            last_check = now;
            if (!_ftmb_peer_watch_alive(&logger_watch, &r->hdr, peer_timeout_ns))
                lost("the output logger is gone");
        }
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
}

/* ---- the follow links: a follower on its own host ---------------------------------------------
 * export --region fol (the output logger's host, its --follow region S.fol) and --region infol (the
 * input logger's, S.infol) send each ring's records or entries to the follower's host; the import
 * there (import --region out|in --follow ADDR) fills local rings of the same layout, which the
 * follower consumes as on one host. A slot of the logger's ring is consumed only once the import
 * says the follower took it (F_FREED): the ring's tail is the follower's position, as on one host,
 * and at most a ring's capacity is on its way. The follower's applied counts go back (the output
 * logger forgets with --follow-forget), and the export stands in for the follower: its pid is the
 * follower_pid the output logger watches, so a lost link is a follower that died. The input logger
 * with --follow-forget forgets the entries before its follow ring's tail (what the follower took),
 * so a follower's takeover is served each queue again from there, not from entry 0 (F_FOL_TAKEOVER,
 * takeover_pos). */

static void export_fol(struct link *l, struct _ftmb_fol_region *f, struct _ftmb_out_region *o)
{
    uint64_t hello[5] = {f->max_threads, f->capacity, o->max_threads, o->rec_capacity, o->out_capacity};
    send_frame(l, F_HELLO_FOL, hello, sizeof hello);
    static struct _ftmb_ring rings[FTMB_MAX_THREADS];
    static uint64_t sent[FTMB_MAX_THREADS], done[FTMB_MAX_THREADS], batch[1 + 512];
    for (uint32_t t = 0; t < f->max_threads; t++)
        _ftmb_ring_attach(&rings[t], f, &f->thread[t].rec, 0);
    sleep_on(&f->hdr, NULL); /* (the output logger's records and final) */
    int attached = 0, final_sent = 0;
    unsigned idle = 0;
    uint64_t last_check = 0;
    for (;;) {
        int work = 0;
        for (int k = 0; k < FRAMES_PER_PASS && poll_frame(l, 0); k++) {
            uint64_t *a = (uint64_t *)l->buf;
            if (l->type == F_FREED && a[0] < f->max_threads && a[1] > done[a[0]] && a[1] <= sent[a[0]]) {
                _ftmb_ring_consume(&rings[a[0]], a[1] - done[a[0]]);
                done[a[0]] = a[1];
            } else if (l->type == F_APPLIED && a[0] < f->max_threads) {
                /* Relaxed: a mark the output logger reads, as the follower's own store. */
                atomic_store_explicit(&f->thread[a[0]].applied, a[1], memory_order_relaxed);
            } else if (l->type == F_FOLLOWER && !attached) {
                attached = 1;
                atomic_store_explicit(&f->follower_pid, (int32_t)getpid(), memory_order_relaxed);
                fprintf(stderr, "%s fol: a follower attached (on %s)\n", me, peer_addr);
            }
            l->pending = 0;
            work = 1;
        }
        for (uint32_t t = 0; t < f->max_threads; t++) {
            uint64_t avail = _ftmb_ring_refresh(&rings[t]), out = sent[t] - done[t];
            uint64_t k = avail - out;
            if (k > f->capacity - out)
                k = f->capacity - out;
            if (k > 512 / 2)
                k = 512 / 2;
            if (!k)
                continue;
            batch[0] = t;
            for (uint64_t i = 0; i < k; i++)
                memcpy(&batch[1 + 2 * i], _ftmb_ring_peek(&rings[t], out + i), 16);
            send_frame(l, F_FRECS, batch, (uint32_t)(8 + 16 * k));
            sent[t] += k;
            work = 1;
        }
        /* Acquire pairs with the output logger's release store of final: the counts are visible. */
        uint32_t fin = atomic_load_explicit(&f->final, memory_order_acquire);
        if (fin != _FTMB_FOL_FOLLOWING && !final_sent) {
            uint64_t a[1 + FTMB_MAX_THREADS];
            a[0] = fin;
            for (uint32_t t = 0; t < f->max_threads; t++)
                a[1 + t] = atomic_load_explicit(&f->thread[t].final_count, memory_order_relaxed);
            send_frame(l, F_FINAL, a, 8 * (1 + f->max_threads));
            final_sent = 1;
            work = 1;
        }
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (attached) /* Relaxed: a clock value. */
            atomic_store_explicit(&f->follower_heartbeat_ns, now, memory_order_relaxed);
        if (now - last_check > 10000000ull) {
            last_check = now;
            if (!_ftmb_peer_watch_alive(&logger_watch, &f->hdr, peer_timeout_ns))
                lost("the output logger is gone");
        }
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
}

static void export_infol(struct link *l, struct _ftmb_infol_region *f, struct _ftmb_in_region *in)
{
    uint32_t h32[4] = {f->nqueues, f->capacity, in->nqueues, in->capacity};
    uint64_t h64[2] = {in->tsc_hz, in->tick_ns};
    uint8_t hello[32];
    memcpy(hello, h32, 16);
    memcpy(hello + 16, h64, 16);
    send_frame(l, F_HELLO_INFOL, hello, sizeof hello);
    static struct _ftmb_ring rings[FTMB_MAX_QUEUES];
    static uint64_t sent[FTMB_MAX_QUEUES], done[FTMB_MAX_QUEUES];
    static uint8_t frame[8 + _FTMB_IN_SLOT_SIZE];
    for (uint32_t q = 0; q < f->nqueues; q++)
        _ftmb_ring_attach(&rings[q], f, &f->queue[q], 0);
    sleep_on(&f->hdr, NULL); /* (the input logger's entries) */
    unsigned idle = 0;
    uint64_t last_check = 0;
    for (;;) {
        int work = 0;
        for (int k = 0; k < FRAMES_PER_PASS && poll_frame(l, 0); k++) {
            uint64_t *a = (uint64_t *)l->buf;
            if (l->type == F_FREED && a[0] < f->nqueues && a[1] > done[a[0]] && a[1] <= sent[a[0]]) {
                _ftmb_ring_consume(&rings[a[0]], a[1] - done[a[0]]);
                done[a[0]] = a[1];
            }
            l->pending = 0;
            work = 1;
        }
        for (uint32_t q = 0; q < f->nqueues; q++) {
            uint64_t avail = _ftmb_ring_refresh(&rings[q]);
            for (int k = 0; k < 32 && sent[q] - done[q] < avail && sent[q] - done[q] < f->capacity; k++) {
                const struct _ftmb_in_entry *e = _ftmb_ring_peek(&rings[q], sent[q] - done[q]);
                uint32_t len = 32 + (e->len <= FTMB_PKT_MAX ? e->len : 0);
                uint64_t qq = q;
                memcpy(frame, &qq, 8);
                memcpy(frame + 8, e, len);
                send_frame(l, F_FENTRY, frame, 8 + len);
                sent[q]++;
                work = 1;
            }
        }
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        if (now - last_check > 10000000ull) {
            last_check = now;
            if (!_ftmb_peer_watch_alive(&logger_watch, &f->hdr, peer_timeout_ns))
                lost("the input logger is gone");
        }
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
}

static void send_log(struct link *l, const char *path)
{
    if (!path) { /* no master ever attached: an empty log */
        send_frame(l, F_LOG_END, NULL, 0);
        return;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s out: %s: cannot read the log: %s\n", me, path, strerror(errno));
        exit(1);
    }
    static uint8_t chunk[60000];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        send_frame(l, F_LOG, chunk, (uint32_t)n);
    fclose(f);
    send_frame(l, F_LOG_END, NULL, 0);
}

static ino_t file_ino(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 ? st.st_ino : 0;
}

/* The logs the output logger wrote: one each time a master ends (a new file renamed into place). */
struct logs_seen {
    ino_t last;
    unsigned n;
};

static void note_log(struct logs_seen *ls, const char *path)
{
    ino_t i = file_ino(path);
    if (i && i != ls->last) {
        ls->last = i;
        ls->n++;
    }
}

static int run_export(const char *session, const char *listen_addr, const char *log_path)
{
    struct sockaddr_in sa;
    if (parse_addr(listen_addr, &sa)) {
        fprintf(stderr, "%s: --listen %s: expected IPV4:PORT\n", me, listen_addr);
        return 1;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 4)) {
        fprintf(stderr, "%s: --listen %s: %s\n", me, listen_addr, strerror(errno));
        return 1;
    }
    int is_in = strcmp(role, "in") == 0, is_out = strcmp(role, "out") == 0, is_fol = strcmp(role, "fol") == 0;
    uint64_t magic = is_in ? _FTMB_IN_MAGIC : is_out ? _FTMB_OUT_MAGIC : is_fol ? _FTMB_FOL_MAGIC : _FTMB_INFOL_MAGIC;
    size_t size;
    void *region = _ftmb_region_attach(session, role, magic, 30000, &size), *session_region = NULL;
    if (region && !is_in && !is_out) /* a follow region: the session's, for its layout */
        session_region = _ftmb_region_attach(session, is_fol ? "out" : "in", is_fol ? _FTMB_OUT_MAGIC : _FTMB_IN_MAGIC,
                                             30000, &size);
    if (region && is_in) /* the input logger's follow region, if it has one (ready before the session's) */
        session_region = _ftmb_region_attach(session, "infol", _FTMB_INFOL_MAGIC, 0, &size);
    if (!region || (!is_in && !is_out && !session_region)) {
        fprintf(stderr, "%s: no ready region /dev/shm/ftmb-%s.%s (start its logger first%s)\n", me, session, role,
                is_in || is_out ? "" : ", with --follow");
        return 1;
    }
    fprintf(stderr, "%s %s: serving /dev/shm/ftmb-%s.%s on %s\n", me, role, session, role, listen_addr);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* An importer that asks for the log gets the one written after the last master ended: each
     * master that attached through this export (its child) ends in a log. */
    struct logs_seen logs = {file_ino(log_path), 0};
    unsigned masters_ended = 0;
    while (!stop_signal) {
        note_log(&logs, log_path);
        struct pollfd pf = {ls, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        static struct link l;
        static char from[INET_ADDRSTRLEN + 8];
        struct sockaddr_in pa;
        socklen_t pl = sizeof pa;
        char ip[INET_ADDRSTRLEN] = "?";
        if (getpeername(fd, (struct sockaddr *)&pa, &pl) == 0)
            inet_ntop(AF_INET, &pa.sin_addr, ip, sizeof ip);
        snprintf(from, sizeof from, "%s", ip); /* (the peer's host; its port says nothing) */
        setup_socket(&l, fd, is_in || is_out ? "the master's host" : "the follower's host", from);
        uint64_t want_log = 0;
        const char *log_path_now = log_path;
        if (is_out) { /* the importer says first whether it wants the log */
            struct pollfd pr = {fd, POLLIN, 0};
            if (poll(&pr, 1, (int)(timeout_ns / 1000000)) <= 0) {
                close(fd);
                continue;
            }
            uint32_t h[2];
            if (recv(fd, h, 8, MSG_WAITALL) != 8 || h[0] != F_WANT_LOG || h[1] != 8 ||
                recv(fd, &want_log, 8, MSG_WAITALL) != 8) {
                close(fd);
                continue;
            }
            if (want_log) {
                if (!log_path) {
                    fprintf(stderr, "%s export out: an importer asks for the log; start with --log\n", me);
                    close(fd);
                    continue;
                }
                /* The output logger writes the log once it saw the previous master end; wait for it. */
                const struct _ftmb_region_hdr *rh = region;
                uint64_t deadline = _ftmb_now_ns(CLOCK_MONOTONIC) + 10000000000ull;
                for (note_log(&logs, log_path); logs.n < masters_ended || !file_ino(log_path); note_log(&logs, log_path)) {
                    /* A master that died before it attached leaves no log: the backup starts afresh. */
                    if (atomic_load_explicit(&rh->master_state, memory_order_acquire) == _FTMB_MASTER_NONE ||
                        _ftmb_now_ns(CLOCK_MONOTONIC) > deadline) {
                        log_path_now = file_ino(log_path) ? log_path : NULL;
                        break;
                    }
                    if (_ftmb_now_ns(CLOCK_MONOTONIC) - l.last_tx > timeout_ns / 4) {
                        send_frame(&l, F_PING, NULL, 0); /* the importer waits: keep the link alive */
                        link_flush(&l);
                    }
                    usleep(1000);
                }
            }
        }
        l.last_look = _ftmb_now_ns(CLOCK_MONOTONIC); /* (unwatched while the log was awaited: it pinged) */
        pid_t child = fork();
        if (child == 0) {
            close(ls);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            me = "ftmb-relay export";
            if (want_log)
                send_log(&l, log_path_now);
            if (is_in)
                export_in(&l, region, session_region);
            else if (is_out)
                export_out(&l, region);
            else if (is_fol)
                export_fol(&l, region, session_region);
            else
                export_infol(&l, region, session_region);
            _exit(0);
        }
        close(fd);
        int st;
        /* Readable once the child exits: the next importer (a follower taking over) is served at
         * the child's end, not at this loop's next look, which a busy machine may hold back by ms. */
        int pfd = (int)syscall(SYS_pidfd_open, child, 0);
        for (;;) { /* (watching the log meanwhile: a master's log may come while the next one is served) */
            pid_t w = waitpid(child, &st, WNOHANG);
            if (w == child || (w < 0 && errno != EINTR))
                break;
            if (stop_signal)
                kill(child, SIGTERM);
            note_log(&logs, log_path);
            struct pollfd pp = {pfd, POLLIN, 0};
            if (pfd < 0 || poll(&pp, 1, 1) < 0)
                usleep(1000);
        }
        if (pfd >= 0)
            close(pfd);
        /* Relaxed: the child wrote it before it exited (waitpid orders it). */
        if (is_out && atomic_load_explicit(&((struct _ftmb_region_hdr *)region)->master_pid, memory_order_relaxed) == child)
            masters_ended++;
    }
    close(ls);
    return 0;
}

/* ---- import: the master's host ----------------------------------------------------------------- */

static int connect_to(const char *addr, uint64_t wait_ns)
{
    struct sockaddr_in sa;
    if (parse_addr(addr, &sa)) {
        fprintf(stderr, "%s: --connect %s: expected IPV4:PORT\n", me, addr);
        exit(1);
    }
    uint64_t deadline = _ftmb_now_ns(CLOCK_MONOTONIC) + wait_ns;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        int err = errno;
        close(fd);
        if (_ftmb_now_ns(CLOCK_MONOTONIC) > deadline) {
            fprintf(stderr, "%s %s: cannot connect to %s: %s\n", me, role, addr, strerror(err));
            exit(3);
        }
        usleep(20000);
    }
}

/* The master's side of an in link, once its region exists: one pass of the loop. */
struct in_imp {
    struct _ftmb_in_region *r;
    uint32_t nq, cap;
    struct _ftmb_ring rings[FTMB_MAX_QUEUES];
    uint64_t rewind_sent[FTMB_MAX_QUEUES], retain_sent[FTMB_MAX_QUEUES];
    uint64_t freed[FTMB_MAX_QUEUES], freed_sent[FTMB_MAX_QUEUES], tail_seen[FTMB_MAX_QUEUES];
    uint32_t state_sent;
    uint64_t last_check;
};

static void in_imp_create(struct in_imp *st, const char *session, uint32_t nq, uint32_t cap, uint64_t tsc,
                          uint64_t tick)
{
    memset(st, 0, sizeof *st);
    size_t size = _ftmb_in_region_size(nq, cap);
    struct _ftmb_in_region *r = _ftmb_region_create(session, "in", size);
    if (!r)
        exit(1);
    _ftmb_in_region_init(r, size, nq, cap, tsc, tick);
    _ftmb_region_populate(r, 0, size);
    for (uint32_t q = 0; q < nq; q++)
        _ftmb_ring_attach(&st->rings[q], r, &r->queue[q].ring, 1);
    st->r = r;
    st->nq = nq;
    st->cap = cap;
}

/* Returns whether it did anything; *end once the link is to close (the master ended or died). */
static int in_imp_pass(struct link *l, struct in_imp *st, int *end)
{
    struct _ftmb_in_region *r = st->r;
    int work = 0;
    uint32_t state = atomic_load_explicit(&r->hdr.master_state, memory_order_acquire);
    int32_t mpid = atomic_load_explicit(&r->hdr.master_pid, memory_order_relaxed);
    if (state != st->state_sent) {
        uint64_t s[2] = {state, atomic_load_explicit(&r->hdr.master_mode, memory_order_relaxed)};
        send_frame(l, F_STATE, s, sizeof s);
        st->state_sent = state;
        if (state == _FTMB_MASTER_DONE || state == _FTMB_MASTER_STOPPED) {
            *end = 1;
            return 1;
        }
    }
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    int check = now - st->last_check > 10000000ull; /* every 10 ms: a /proc read */
    st->last_check = check ? now : st->last_check;
    if (check && state == _FTMB_MASTER_ATTACHED && _ftmb_master_died(&r->hdr, mpid)) {
        fprintf(stderr, "%s in: the master (pid %d) died; closing the link\n", me, (int)mpid);
        *end = 1;
        return 1;
    }
    for (uint32_t q = 0; q < st->nq; q++) {
        struct _ftmb_in_queue *iq = &r->queue[q];
        uint64_t req = atomic_load_explicit(&iq->rewind_req, memory_order_acquire);
        if (req != st->rewind_sent[q]) {
            uint64_t a[3] = {q, req, atomic_load_explicit(&iq->rewind_pos, memory_order_relaxed)};
            send_frame(l, F_REWIND, a, sizeof a);
            st->rewind_sent[q] = req;
            work = 1;
        }
        uint64_t keep = atomic_load_explicit(&iq->retain_from, memory_order_relaxed);
        if (keep != st->retain_sent[q]) {
            uint64_t a[2] = {q, keep};
            send_frame(l, F_RETAIN, a, sizeof a);
            st->retain_sent[q] = keep;
        }
        uint64_t tail = atomic_load_explicit(&iq->ring.tail, memory_order_relaxed);
        st->freed[q] += tail - st->tail_seen[q];
        st->tail_seen[q] = tail;
        if (st->freed[q] != st->freed_sent[q]) {
            uint64_t a[2] = {q, st->freed[q]};
            send_frame(l, F_FREED, a, sizeof a);
            st->freed_sent[q] = st->freed[q];
        }
    }
    for (int f = 0; f < FRAMES_PER_PASS && poll_frame(l, 0); f++) {
        work = 1;
        if (l->type == F_ENTRY) {
            struct _ftmb_in_entry *src = (void *)l->buf;
            uint16_t q = src->queue;
            if (q >= st->nq)
                lost("an entry of a queue the region does not have");
            uint64_t ack = atomic_load_explicit(&r->queue[q].rewind_ack, memory_order_relaxed);
            if (ack != st->rewind_sent[q]) { /* served before the rewind: dropped */
                st->freed[q]++;
                l->pending = 0;
                continue;
            }
            struct _ftmb_in_entry *e = _ftmb_ring_reserve(&st->rings[q]);
            if (!e)
                lost("an entry beyond the queue's credit (a bug)");
            memcpy(e, src, l->len);
            _ftmb_ring_publish(&st->rings[q], 1);
        } else if (l->type == F_REWIND_ACK) {
            uint64_t *a = (uint64_t *)l->buf;
            if (a[0] < st->nq && a[1] == st->rewind_sent[a[0]]) {
                /* The master waits for the ack and reads nothing meanwhile: empty the ring. */
                struct _ftmb_ring *rg = &st->rings[a[0]];
                uint64_t tail = atomic_load_explicit(&rg->ctl->tail, memory_order_acquire);
                st->freed[a[0]] += rg->local - tail + (tail - st->tail_seen[a[0]]);
                st->tail_seen[a[0]] = tail;
                rg->local = rg->cache = tail;
                _ftmb_ring_publish(rg, 0);
                atomic_store_explicit(&r->queue[a[0]].rewind_ack, a[1], memory_order_release);
            }
        }
        l->pending = 0;
    }
    return work;
}

static void import_in(struct link *l, const char *session)
{
    await_first(l);
    if (l->type != F_HELLO_IN)
        link_lost(l, "no greeting from the input relay");
    l->pending = 0;
    uint32_t nq, cap;
    uint64_t tsc, tick;
    memcpy(&nq, l->buf, 4);
    memcpy(&cap, l->buf + 4, 4);
    memcpy(&tsc, l->buf + 8, 8);
    memcpy(&tick, l->buf + 16, 8);
    static struct in_imp st;
    in_imp_create(&st, session, nq, cap, tsc, tick);
    _ftmb_region_set_ready(st.r);
    sleep_on(&st.r->hdr, NULL); /* (the master's rewind requests and state) */
    unsigned idle = 0;
    int end = 0;
    while (!stop_signal && !end) {
        _ftmb_region_heartbeat(st.r);
        int work = in_imp_pass(l, &st, &end);
        if (end)
            break;
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
    link_flush(l);
    _ftmb_region_unlink(session, "in");
}

static void recv_log(struct link *l, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "%s out: %s: cannot write the log: %s\n", me, tmp, strerror(errno));
        exit(1);
    }
    await_first(l); /* (the export's parent pings once it serves us and waits for the log) */
    for (;;) {
        if (!poll_frame(l, 100))
            continue;
        l->pending = 0;
        if (l->type == F_LOG_END)
            break;
        if (l->type == F_LOG && fwrite(l->buf, 1, l->len, f) != l->len) {
            fprintf(stderr, "%s out: %s: write failed\n", me, tmp);
            exit(1);
        }
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "%s out: %s: cannot write the log: %s\n", me, path, strerror(errno));
        unlink(tmp);
        exit(1);
    }
}

/* The master's side of an out link, once its region exists: one pass of the loop. */
struct out_imp {
    struct _ftmb_out_region *r;
    uint32_t maxt, rcap, ocap;
    struct _ftmb_ring rec[FTMB_MAX_THREADS], out[FTMB_MAX_THREADS];
    uint64_t retain_sent[FTMB_MAX_THREADS];
    uint32_t state_sent, nthreads_sent;
    uint32_t populated; /* threads 0..populated-1 have their rings' memory */
    uint64_t last_check;
};

static void out_imp_create(struct out_imp *st, const char *session, uint32_t maxt, uint32_t rcap, uint32_t ocap)
{
    memset(st, 0, sizeof *st);
    size_t size = _ftmb_out_region_size(maxt, rcap, ocap);
    struct _ftmb_out_region *r = _ftmb_region_create(session, "out", size);
    if (!r)
        exit(1);
    _ftmb_out_region_init(r, size, maxt, rcap, ocap);
    r->every_ordered = 1; /* the export publishes each object's records by consecutive sequence */
    st->r = r;
    st->maxt = maxt;
    st->rcap = rcap;
    st->ocap = ocap;
}

/* Give the rings of threads below `to` their memory (once: megabytes of page faults per thread). */
static void out_imp_populate(struct out_imp *st, uint32_t to)
{
    for (uint32_t t = st->populated; t < to && t < st->maxt; t++) {
        _ftmb_region_populate(st->r, st->r->thread[t].rec.buf_offset, (uint64_t)st->rcap * sizeof(struct _ftmb_record));
        _ftmb_region_populate(st->r, st->r->thread[t].out.buf_offset, (uint64_t)st->ocap * _FTMB_OUT_SLOT_SIZE);
        st->populated = t + 1;
    }
}

/* The local rings continue where the remote ones are (h: the greeting's head pairs); the count of
 * threads the remote side knows. Before anyone produces on the local rings. */
static void out_imp_adopt(struct out_imp *st, const uint64_t *h, uint32_t nthreads)
{
    struct _ftmb_out_region *r = st->r;
    for (uint32_t t = 0; t < st->maxt; t++) {
        atomic_store_explicit(&r->thread[t].rec.head, h[2 * t], memory_order_relaxed);
        atomic_store_explicit(&r->thread[t].rec.tail, h[2 * t], memory_order_relaxed);
        atomic_store_explicit(&r->thread[t].out.head, h[2 * t + 1], memory_order_relaxed);
        atomic_store_explicit(&r->thread[t].out.tail, h[2 * t + 1], memory_order_relaxed);
        _ftmb_ring_attach(&st->rec[t], r, &r->thread[t].rec, 0);
        _ftmb_ring_attach(&st->out[t], r, &r->thread[t].out, 0);
    }
    uint32_t cur = atomic_load_explicit(&r->nthreads, memory_order_relaxed);
    if (cur < nthreads)
        atomic_store_explicit(&r->nthreads, nthreads, memory_order_release);
    out_imp_populate(st, cur > nthreads ? cur : nthreads);
    st->nthreads_sent = nthreads;
}

static int out_imp_pass(struct link *l, struct out_imp *st, int *end)
{
    static uint64_t batch[1 + 512];
    static uint8_t slot[OUT_HDR + 8 * FTMB_MAX_THREADS + FTMB_PKT_MAX];
    struct _ftmb_out_region *r = st->r;
    int work = 0;
    uint32_t state = atomic_load_explicit(&r->hdr.master_state, memory_order_acquire);
    int32_t mpid = atomic_load_explicit(&r->hdr.master_pid, memory_order_relaxed);
    int finished = state == _FTMB_MASTER_DONE || state == _FTMB_MASTER_STOPPED;
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
    int check = now - st->last_check > 10000000ull; /* every 10 ms: a /proc read */
    st->last_check = check ? now : st->last_check;
    int died = check && state == _FTMB_MASTER_ATTACHED && _ftmb_master_died(&r->hdr, mpid);
    uint32_t n = atomic_load_explicit(&r->nthreads, memory_order_acquire);
    if (n != st->nthreads_sent) {
        uint64_t a = n;
        send_frame(l, F_NTHREADS, &a, 8);
        out_imp_populate(st, n);
        st->nthreads_sent = n;
    }
    for (uint32_t t = 0; t < n; t++) {
        uint64_t ready;
        for (int pass = 0; pass < 8 && (ready = _ftmb_ring_ready(&st->rec[t])) != 0; pass++) {
            uint64_t k = ready < 256 ? ready : 256;
            batch[0] = t;
            for (uint64_t i = 0; i < k; i++)
                memcpy(&batch[1 + 2 * i], _ftmb_ring_peek(&st->rec[t], i), 16);
            send_frame(l, F_RECS, batch, (uint32_t)(8 + 16 * k));
            _ftmb_ring_consume(&st->rec[t], k);
            work = 1;
        }
        for (int k = 0; k < 64 && _ftmb_ring_ready(&st->out[t]); k++) {
            const struct _ftmb_out_slot *s = _ftmb_ring_peek(&st->out[t], 0);
            uint32_t nvec = s->nvec <= FTMB_MAX_THREADS ? s->nvec : FTMB_MAX_THREADS;
            uint32_t len = s->len <= FTMB_PKT_MAX ? s->len : FTMB_PKT_MAX;
            memcpy(slot, s, OUT_HDR);
            ((struct _ftmb_out_slot *)slot)->nvec = (uint16_t)nvec;
            ((struct _ftmb_out_slot *)slot)->len = len;
            memcpy(slot + OUT_HDR, s->vec, 8 * (size_t)nvec);
            memcpy(slot + OUT_HDR + 8 * nvec, s->data, len);
            send_frame(l, F_OUTPUT, slot, OUT_HDR + 8 * nvec + len);
            _ftmb_ring_consume(&st->out[t], 1);
            work = 1;
        }
        uint64_t keep = atomic_load_explicit(&r->thread[t].retain_from, memory_order_relaxed);
        if (keep != st->retain_sent[t]) {
            uint64_t a[2] = {t, keep};
            send_frame(l, F_RETAIN, a, sizeof a);
            st->retain_sent[t] = keep;
        }
    }
    if (state != st->state_sent && (!finished || !work)) { /* an end only after everything before it */
        uint64_t s[3] = {state, atomic_load_explicit(&r->hdr.master_mode, memory_order_relaxed), r->tsc_hz};
        send_frame(l, F_STATE, s, sizeof s);
        st->state_sent = state;
        if (finished) {
            *end = 1;
            return 1;
        }
    }
    if (died && !work) {
        fprintf(stderr, "%s out: the master (pid %d) died; everything it published is sent; closing the link\n",
                me, (int)mpid);
        *end = 1;
        return 1;
    }
    for (int f = 0; f < FRAMES_PER_PASS && poll_frame(l, 0); f++)
        l->pending = 0; /* pings */
    return work;
}

static void import_out(struct link *l, const char *session, const char *log_path)
{
    uint64_t want = log_path != NULL;
    send_frame(l, F_WANT_LOG, &want, 8);
    if (log_path)
        recv_log(l, log_path);
    await_first(l);
    if (l->type != F_HELLO_OUT)
        link_lost(l, "no greeting from the output relay");
    l->pending = 0;
    uint64_t *h = (uint64_t *)l->buf;
    static struct out_imp st;
    out_imp_create(&st, session, (uint32_t)h[0], (uint32_t)h[1], (uint32_t)h[2]);
    out_imp_adopt(&st, h + 4, (uint32_t)h[3]);
    _ftmb_region_set_ready(st.r);
    sleep_on(&st.r->hdr, NULL); /* (the master's outputs and state) */
    unsigned idle = 0;
    int end = 0;
    while (!stop_signal) {
        _ftmb_region_heartbeat(st.r);
        int work = out_imp_pass(l, &st, &end);
        if (end)
            break;
        ping_if_idle(l);
        if (work)
            idle = 0;
        else
            idle_wait(l, NULL, &idle);
    }
    link_flush(l);
    _ftmb_region_unlink(session, "out");
}

/* ---- import for a follower on this host: the follow link and a session link in waiting ----------
 * import --region in|out --connect ADDR --follow FADDR: the follow link (FADDR, the follow export)
 * gives the follow region's and the session region's layouts; this process makes both regions here
 * (S.infol and S.in, or S.fol and S.out; it owns them: its heartbeat is the logger's, as for any
 * import) and fills the follow rings. The session link (ADDR) is opened at once and waits its turn:
 * the export serves one master at a time, so it answers once the master's link has ended (the
 * master died or finished). From then on this process relays the session region as a master's
 * import does, for the follower once it has taken over. On the out side the follower's takeover
 * waits for that turn: the master's death (F_FINAL, died) reaches the local follow region only
 * once the local rings continue where the remote ones ended. */

static int session_turn(struct link *sl, uint32_t type)
{
    struct pollfd pf = {sl->fd, POLLIN, 0};
    if (poll(&pf, 1, 0) <= 0)
        return 0;
    sl->last_rx = _ftmb_now_ns(CLOCK_MONOTONIC);
    while (poll_frame(sl, 0) && sl->type == F_PING)
        sl->pending = 0;
    if (!sl->pending)
        return 0;
    if (sl->type != type)
        lost("no greeting on the session link");
    sl->pending = 0;
    sl->last_rx = sl->last_tx = sl->last_look = _ftmb_now_ns(CLOCK_MONOTONIC); /* (watched from now on) */
    sl->silent = sl->waiting = 0;
    return 1;
}

/* The end of each pass of a follow import, the same on both sides: keep the session link alive once
 * its turn came (`active`) and the follow link always, nap when the pass moved nothing (`work`);
 * once the import is over (`end`: the session link ended, or a stop signal) flush both links and
 * remove the regions it made here, the session's (`side`: "in" or "out") and its follow region.
 * Returns whether the import goes on. */
static int follow_pass_end(struct link *sl, struct link *fl, const char *session, const char *side, int active,
                           int work, int end, unsigned *idle)
{
    if (active)
        ping_if_idle(sl);
    ping_if_idle(fl);
    if (end || stop_signal) {
        link_flush(sl);
        link_flush(fl);
        _ftmb_region_unlink(session, side);
        _ftmb_region_unlink(session, strcmp(side, "in") == 0 ? "infol" : "fol");
        return 0;
    }
    if (work)
        *idle = 0;
    else
        idle_wait(fl, sl, idle);
    return 1;
}

static void import_in_follow(struct link *sl, struct link *fl, const char *session)
{
    await_first(fl);
    if (fl->type != F_HELLO_INFOL)
        link_lost(fl, "no greeting from the input logger's follow relay");
    fl->pending = 0;
    uint32_t h32[4];
    uint64_t h64[2];
    memcpy(h32, fl->buf, 16);
    memcpy(h64, fl->buf + 16, 16);
    size_t fsize = _ftmb_infol_region_size(h32[0], h32[1]);
    struct _ftmb_infol_region *f = _ftmb_region_create(session, "infol", fsize);
    if (!f)
        exit(1);
    _ftmb_infol_region_init(f, fsize, h32[0], h32[1]);
    static struct _ftmb_ring rings[FTMB_MAX_QUEUES];
    uint64_t freed_sent[FTMB_MAX_QUEUES] = {0};
    for (uint32_t q = 0; q < h32[0]; q++)
        _ftmb_ring_attach(&rings[q], f, &f->queue[q], 1);
    static struct in_imp st;
    in_imp_create(&st, session, h32[2], h32[3], h64[0], h64[1]);
    _ftmb_region_set_ready(f); /* before the session's region: a follower that finds it finds both */
    _ftmb_region_set_ready(st.r);
    sleep_on(&st.r->hdr, NULL); /* (the follower's requests once it is the master) */
    int active = 0, end = 0;
    unsigned idle = 0;
    for (int more = 1; more;) {
        _ftmb_region_heartbeat(f);
        _ftmb_region_heartbeat(st.r);
        int work = 0;
        for (int k = 0; k < FRAMES_PER_PASS && poll_frame(fl, 0); k++) {
            if (fl->type == F_FENTRY) {
                uint64_t q;
                memcpy(&q, fl->buf, 8);
                if (q >= h32[0])
                    lost("an entry of a queue the follow region does not have");
                void *e = _ftmb_ring_reserve(&rings[q]);
                if (!e)
                    lost("an entry beyond the follow ring's credit (a bug)");
                memcpy(e, fl->buf + 8, fl->len - 8);
                _ftmb_ring_publish(&rings[q], 1);
            }
            fl->pending = 0;
            work = 1;
        }
        for (uint32_t q = 0; q < h32[0]; q++) {
            uint64_t tail = atomic_load_explicit(&f->queue[q].tail, memory_order_relaxed);
            if (tail != freed_sent[q]) {
                uint64_t a[2] = {q, tail};
                send_frame(fl, F_FREED, a, sizeof a);
                freed_sent[q] = tail;
            }
        }
        if (!active && session_turn(sl, F_HELLO_IN)) {
            uint32_t nq, cap;
            memcpy(&nq, sl->buf, 4);
            memcpy(&cap, sl->buf + 4, 4);
            if (nq != st.nq || cap != st.cap)
                lost("the session's input region differs from what the follow link said");
            active = 1;
            send_frame(sl, F_FOL_TAKEOVER, NULL, 0); /* (before the follower's attach: its F_STATE) */
            fprintf(stderr, "%s in: the session link's turn came; relaying for the follower\n", me);
        }
        if (active)
            work |= in_imp_pass(sl, &st, &end);
        more = follow_pass_end(sl, fl, session, "in", active, work, end, &idle);
    }
}

static void import_out_follow(struct link *sl, struct link *fl, const char *session)
{
    uint64_t want = 0;
    send_frame(sl, F_WANT_LOG, &want, 8); /* (read by the export when this link's turn comes) */
    link_flush(sl);
    await_first(fl);
    if (fl->type != F_HELLO_FOL)
        link_lost(fl, "no greeting from the output logger's follow relay");
    fl->pending = 0;
    uint64_t h[5];
    memcpy(h, fl->buf, sizeof h);
    uint32_t fmax = (uint32_t)h[0];
    size_t fsize = _ftmb_fol_region_size(fmax, (uint32_t)h[1]);
    struct _ftmb_fol_region *f = _ftmb_region_create(session, "fol", fsize);
    if (!f)
        exit(1);
    _ftmb_fol_region_init(f, fsize, fmax, (uint32_t)h[1]);
    static struct _ftmb_ring rings[FTMB_MAX_THREADS];
    uint64_t freed_sent[FTMB_MAX_THREADS] = {0}, applied_sent[FTMB_MAX_THREADS] = {0};
    static uint64_t counts[FTMB_MAX_THREADS];
    for (uint32_t t = 0; t < fmax; t++)
        _ftmb_ring_attach(&rings[t], f, &f->thread[t].rec, 1);
    static struct out_imp st;
    out_imp_create(&st, session, (uint32_t)h[2], (uint32_t)h[3], (uint32_t)h[4]);
    static uint64_t zero[2 * FTMB_MAX_THREADS];
    out_imp_adopt(&st, zero, 0); /* (again with the remote heads when the session link's turn comes) */
    _ftmb_region_set_ready(f); /* before the session's region: a follower that finds it finds both */
    _ftmb_region_set_ready(st.r);
    sleep_on(&f->hdr, &st.r->hdr); /* (the follower's applied counts; its outputs once it is the master) */
    int active = 0, end = 0, follower_sent = 0;
    uint32_t final = _FTMB_FOL_FOLLOWING; /* received, not yet published here */
    unsigned idle = 0;
    for (int more = 1; more;) {
        _ftmb_region_heartbeat(f);
        _ftmb_region_heartbeat(st.r);
        int work = 0;
        for (int k = 0; k < FRAMES_PER_PASS && poll_frame(fl, 0); k++) {
            uint64_t *a = (uint64_t *)fl->buf;
            if (fl->type == F_FRECS) {
                if (a[0] >= fmax)
                    lost("records of a thread the follow region does not have");
                /* The session region's rings of a thread the master has get their memory now, not
                 * at the takeover, where faulting in megabytes held up the follower by milliseconds. */
                out_imp_populate(&st, (uint32_t)a[0] + 1);
                for (uint64_t i = 0; i < (fl->len - 8) / 16; i++) {
                    struct _ftmb_record *r = _ftmb_ring_reserve(&rings[a[0]]);
                    if (!r)
                        lost("records beyond the follow ring's credit (a bug)");
                    memcpy(r, a + 1 + 2 * i, 16);
                    _ftmb_ring_publish(&rings[a[0]], 1);
                }
                _ftmb_fol_wake(f, (uint32_t)a[0]);
            } else if (fl->type == F_FINAL) {
                final = (uint32_t)a[0];
                for (uint32_t t = 0; t < fmax; t++)
                    counts[t] = a[1 + t];
            }
            fl->pending = 0;
            work = 1;
        }
        for (uint32_t t = 0; t < fmax; t++) {
            uint64_t tail = atomic_load_explicit(&f->thread[t].rec.tail, memory_order_relaxed);
            if (tail != freed_sent[t]) {
                uint64_t a[2] = {t, tail};
                send_frame(fl, F_FREED, a, sizeof a);
                freed_sent[t] = tail;
            }
            /* Relaxed: a mark the follower writes. */
            uint64_t applied = atomic_load_explicit(&f->thread[t].applied, memory_order_relaxed);
            if (applied != applied_sent[t]) {
                uint64_t a[2] = {t, applied};
                send_frame(fl, F_APPLIED, a, sizeof a);
                applied_sent[t] = applied;
            }
        }
        if (!follower_sent && atomic_load_explicit(&f->follower_pid, memory_order_relaxed) > 0) {
            follower_sent = 1;
            send_frame(fl, F_FOLLOWER, NULL, 0);
        }
        if (!active && session_turn(sl, F_HELLO_OUT)) {
            uint64_t *g = (uint64_t *)sl->buf;
            if (g[0] != st.maxt || g[1] != st.rcap || g[2] != st.ocap)
                lost("the session's output region differs from what the follow link said");
            out_imp_adopt(&st, g + 4, (uint32_t)g[3]);
            active = 1;
            fprintf(stderr, "%s out: the session link's turn came; relaying for the follower\n", me);
        }
        /* The master's end reaches the follower once it can take over the session here. */
        if (final != _FTMB_FOL_FOLLOWING && (active || final == _FTMB_FOL_FINISHED) &&
            atomic_load_explicit(&f->final, memory_order_relaxed) == _FTMB_FOL_FOLLOWING) {
            for (uint32_t t = 0; t < fmax; t++)
                atomic_store_explicit(&f->thread[t].final_count, counts[t], memory_order_relaxed);
            /* Release: pairs with the follower's acquire load of final; the counts are visible. */
            atomic_store_explicit(&f->final, final, memory_order_release);
        }
        if (active)
            work |= out_imp_pass(sl, &st, &end);
        more = follow_pass_end(sl, fl, session, "out", active, work, end, &idle);
    }
}

static void usage(FILE *f)
{
    fputs("usage: ftmb-relay export --session NAME --region in|out|fol|infol --listen IPV4:PORT [--log FILE]\n"
          "                         [--timeout-ms N]\n"
          "       ftmb-relay import --session NAME --region in|out --connect IPV4:PORT [--log FILE | --follow IPV4:PORT]\n"
          "                         [--timeout-ms N] [--connect-wait-ms N]\n"
          "  export   on the logger's host: serve its region (/dev/shm/ftmb-NAME.in or .out) to one remote\n"
          "           master at a time; --log (out): the output logger's --log, sent to an importer that asks\n"
          "  import   on the master's host: make a local region of the same layout and mirror it over TCP;\n"
          "           --log FILE (out): first fetch the log the output logger wrote when the previous master\n"
          "           died (a cold backup replays it)\n"
          "  export --region fol|infol: serve the logger's follow region (its --follow) to a follower's host\n"
          "  import --follow ADDR  for a follower on this host: the follow region from ADDR (the fol or infol\n"
          "           export) and the session region, relayed once the master's link has ended\n"
          "  --timeout-ms N        a link whose peer host acknowledges nothing for N ms, or whose peer says\n"
          "                        nothing for 2 x N ms of watching, is lost (default 1000); exit 3, one line\n"
          "  --peer-timeout-ms N   (export) the logger is gone when its heartbeat is older (default 10000)\n"
          "  --connect-wait-ms N   (import) keep trying to connect, then wait to be served (the export serves\n"
          "                        one importer at a time), for N ms each (default 10000)\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "export") && strcmp(argv[1], "import"))) {
        usage(stderr);
        return 1;
    }
    wake_setup();
    int is_export = strcmp(argv[1], "export") == 0;
    me = is_export ? "ftmb-relay export" : "ftmb-relay import";
    const char *session = NULL, *addr = NULL, *log_path = NULL, *follow_addr = NULL;
    uint64_t tmo = 1000, cwait = 10000;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "%s: %s needs a value\n", me, o);
            return 1;
        }
        if (!strcmp(o, "--session"))
            session = v;
        else if (!strcmp(o, "--region"))
            role = v;
        else if (!strcmp(o, is_export ? "--listen" : "--connect"))
            addr = v;
        else if (!strcmp(o, "--log"))
            log_path = v;
        else if (!strcmp(o, "--follow") && !is_export)
            follow_addr = v;
        else if (!strcmp(o, "--timeout-ms")) {
            if (_ftmb_parse_u64(me, o, v, 10, 3600000, &tmo))
                return 1;
        } else if (!strcmp(o, "--peer-timeout-ms") && is_export) {
            uint64_t v2;
            if (_ftmb_parse_u64(me, o, v, 10, 3600000, &v2))
                return 1;
            peer_timeout_ns = v2 * 1000000ull;
        } else if (!strcmp(o, "--connect-wait-ms") && !is_export) {
            if (_ftmb_parse_u64(me, o, v, 0, 3600000, &cwait))
                return 1;
        } else {
            fprintf(stderr, "%s: unknown option %s\n", me, o);
            return 1;
        }
        i++;
    }
    int follow_region = !strcmp(role, "fol") || !strcmp(role, "infol");
    if (!session || !_ftmb_valid_session_name(session) || !addr ||
        (strcmp(role, "in") && strcmp(role, "out") && !(is_export && follow_region))) {
        fprintf(stderr, "%s: needs --session NAME, --region %s and %s IPV4:PORT\n", me,
                is_export ? "in|out|fol|infol" : "in|out", is_export ? "--listen" : "--connect");
        return 1;
    }
    if (follow_addr && log_path) {
        fprintf(stderr, "%s: --follow and --log: a follower takes over from the log it followed\n", me);
        return 1;
    }
    timeout_ns = tmo * 1000000ull;
    connect_wait_ns = cwait * 1000000ull;
    peer_addr = addr;
    const char *logger_host = strcmp(role, "in") == 0 ? "the input logger's host" : "the output logger's host";
    if (is_export)
        return run_export(session, addr, log_path);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    static struct link l;
    if (follow_addr) {
        static struct link fl;
        setup_socket(&fl, connect_to(follow_addr, cwait * 1000000ull), logger_host, follow_addr);
        setup_socket(&l, connect_to(addr, cwait * 1000000ull), logger_host, addr);
        l.waiting = 1; /* (for its turn: session_turn) */
        if (!strcmp(role, "in"))
            import_in_follow(&l, &fl, session);
        else
            import_out_follow(&l, &fl, session);
        return stop_signal ? 4 : 0;
    }
    setup_socket(&l, connect_to(addr, cwait * 1000000ull), logger_host, addr);
    if (!strcmp(role, "in"))
        import_in(&l, session);
    else
        import_out(&l, session, log_path);
    return stop_signal ? 4 : 0;
}

/*
 * ftmb-input-logger: the input logger process of a session. See usage() for the arguments.
 *
 * Reads a whole pcap file first (so a bad file fails before anything starts), hashes each packet's
 * flow to a queue (symmetric 5-tuple hash for IPv4/IPv6 TCP/UDP, addresses only for other IP,
 * the MAC pair otherwise: a flow always lands on the same queue, both directions too), creates
 * /dev/shm/ftmb-<session>.in, waits for a master to attach, then serves each queue: packets in
 * file order, a tick entry whenever a queue has been idle for --tick-us (then for twice as long after
 * each tick, up to --tick-max-us, until its next packet), and an EOF entry once the
 * file is exhausted. Every entry served is kept in the queue's retained log with its sequence
 * number and time, so a rewind request can serve exactly the same entries again from any
 * retained position. Entries before the master's retain_from mark may be forgotten.
 * Exit codes: 0 the master finished, 1 bad arguments or input file, 3 the master died, 4 signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pcap/pcap.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "ftmb_internal.h"
#include "tool_util.h"

static const char *me = "ftmb-input-logger";
static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

struct packet {
    uint32_t offset; /* into the packet bytes buffer */
    uint32_t len;
    uint16_t queue;
};

struct logged_entry { /* one entry as first served */
    uint64_t time_ns;
    uint32_t pkt;     /* packet index for _FTMB_IN_PKT */
    uint16_t kind;
};

struct queue_state {
    struct _ftmb_ring ring;      /* producer side */
    struct logged_entry *log;    /* log[i] is entry sequence base + i */
    uint64_t base, len, cap;     /* retained: sequences base .. base+len-1 */
    uint64_t serve;              /* next sequence to put in the ring */
    uint64_t last_time_ns;
    uint64_t tick_gap_ns;        /* idle time before its next tick: --tick-us after a packet, doubling */
    uint64_t rewind_seen;
    int eof_logged;
    uint32_t *pkts;              /* this queue's packets in file order */
    uint32_t npkts, next_pkt;
    struct _ftmb_ring fring;     /* --follow: producer side of the queue's follower ring */
    uint64_t pushed;             /* entries published there (sequences 0 .. pushed-1) */
};

static uint32_t mix(uint32_t h, uint32_t v)
{
    h ^= v;
    h *= 0x01000193u;
    return h ^ (h >> 15);
}

/* Symmetric flow hash: both directions give the same value. */
static uint32_t flow_hash(const uint8_t *p, uint32_t len)
{
    if (len < 14)
        return 0;
    uint16_t et = (uint16_t)(p[12] << 8 | p[13]);
    const uint8_t *l3 = p + 14;
    uint32_t rest = len - 14;
    if (et == 0x8100 && len >= 18) { /* one VLAN tag */
        et = (uint16_t)(p[16] << 8 | p[17]);
        l3 += 4;
        rest -= 4;
    }
    uint32_t a = 0, b = 0, proto = 0, sport = 0, dport = 0;
    const uint8_t *l4 = NULL;
    uint32_t l4len = 0;
    if (et == 0x0800 && rest >= 20) {
        uint32_t ihl = (uint32_t)(l3[0] & 15) * 4;
        memcpy(&a, l3 + 12, 4);
        memcpy(&b, l3 + 16, 4);
        proto = l3[9];
        if (ihl >= 20 && rest >= ihl && !(l3[6] & 0x1f) && !l3[7]) { /* not a later fragment */
            l4 = l3 + ihl;
            l4len = rest - ihl;
        }
    } else if (et == 0x86dd && rest >= 40) {
        for (int i = 0; i < 16; i += 4) {
            uint32_t x, y;
            memcpy(&x, l3 + 8 + i, 4);
            memcpy(&y, l3 + 24 + i, 4);
            a = mix(a, x);
            b = mix(b, y);
        }
        proto = l3[6];
        l4 = l3 + 40;
        l4len = rest - 40;
    } else {
        uint32_t x = 0, y = 0;
        memcpy(&x, p, 4);
        memcpy(&y, p + 6, 4);
        a = x ^ (uint32_t)(p[4] << 8 | p[5]);
        b = y ^ (uint32_t)(p[10] << 8 | p[11]);
    }
    if (l4 && (proto == 6 || proto == 17 || proto == 132) && l4len >= 4) {
        sport = (uint32_t)(l4[0] << 8 | l4[1]);
        dport = (uint32_t)(l4[2] << 8 | l4[3]);
    }
    /* order the endpoints so that (a, sport) <-> (b, dport) hash alike */
    uint64_t e1 = (uint64_t)a << 16 | sport, e2 = (uint64_t)b << 16 | dport;
    if (e1 > e2) {
        uint64_t t = e1;
        e1 = e2;
        e2 = t;
    }
    uint32_t h = 0x811c9dc5u;
    h = mix(h, (uint32_t)e1);
    h = mix(h, (uint32_t)(e1 >> 32));
    h = mix(h, (uint32_t)e2);
    h = mix(h, (uint32_t)(e2 >> 32));
    h = mix(h, proto);
    return h;
}

static void usage(FILE *f)
{
    fputs("usage: ftmb-input-logger --session NAME --in FILE.pcap [options]\n"
          "  --session NAME   session to create (/dev/shm/ftmb-NAME.in); the master attaches with\n"
          "                   FTMB_SESSION=NAME\n"
          "  --in FILE        input packets, pcap (read whole before serving; at most 2048 bytes each)\n"
          "  --queues N       master receive queues to spread flows over (default 1, at most 32)\n"
          "  --tick-us N      an idle queue gets a clock tick after this long (default 100), then after\n"
          "                   twice as long as the gap before, up to --tick-max-us (default 10000)\n"
          "  --rate PPS       serve at most PPS packets per second in total, counted from the master's first\n"
          "                   take (default 0: as fast as taken)\n"
          "  --capacity N     entries per queue ring, a power of two (default 1024)\n"
          "  --follow         publish every served entry for a follower (FTMB_MODE=follow) on\n"
          "                   /dev/shm/ftmb-NAME.infol\n"
          "  --follow-forget  with --follow: forget the entries the follower has taken (a replay\n"
          "                   from the start, or a rewind before them, then fails)\n"
          "  --until-signal   keep the retained input after the master finishes or dies, for a\n"
          "                   replaying master; stop on SIGINT/SIGTERM with exit 0\n"
          "  --arrivals FILE  at exit, write each served packet's arrival time (the time its entry\n"
          "                   was first served, the session's clock) to FILE: a line 'ftmb-arrivals/2\n"
          "                   SESSION START_NS' (START_NS: the session's clock when its input region\n"
          "                   was created, before any master could read it), then 'INDEX TIME_NS'\n"
          "                   per packet (INDEX: its place in --in)\n"
          "exit: 0 the master finished, 1 bad arguments or input file, 3 the master died, 4 signal\n",
          f);
}

/* Entry `seq` of queue `qi`, as served (the retained log says what it was). */
static void fill_entry(struct _ftmb_in_entry *e, const struct queue_state *q, uint32_t qi, uint64_t seq,
                       const struct packet *pkts, const uint8_t *bytes)
{
    const struct logged_entry *le = &q->log[seq - q->base];
    e->seq = seq;
    e->time_ns = le->time_ns;
    e->kind = le->kind;
    e->queue = (uint16_t)qi;
    e->len = 0;
    if (le->kind == _FTMB_IN_PKT) {
        e->len = pkts[le->pkt].len;
        memcpy(e->data, bytes + pkts[le->pkt].offset, e->len);
    }
}

/* --follow: publish the retained entries the follower has not been given yet; 1 if any. */
static int follow_push(struct queue_state *q, uint32_t qi, const struct packet *pkts, const uint8_t *bytes)
{
    int worked = 0;
    while (q->pushed < q->base + q->len) {
        struct _ftmb_in_entry *e = _ftmb_ring_reserve(&q->fring);
        if (!e)
            break;
        fill_entry(e, q, qi, q->pushed, pkts, bytes);
        q->pushed++;
        _ftmb_ring_publish(&q->fring, 1); /* P1: pairs with the follower's C1 */
        worked = 1;
    }
    return worked;
}

static int load_pcap(const char *path, uint32_t nqueues, uint8_t **bytes_out, struct packet **pkts_out,
                     uint32_t *npkts_out)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline(path, err);
    if (!pc) {
        fprintf(stderr, "%s: %s: %s\n", me, path, err);
        return -1;
    }
    size_t cap_bytes = 1 << 20, nbytes = 0, cap_pkts = 1024;
    uint8_t *bytes = malloc(cap_bytes);
    struct packet *pkts = malloc(cap_pkts * sizeof *pkts);
    uint32_t n = 0;
    struct pcap_pkthdr *h;
    const u_char *data;
    int r;
    while (bytes && pkts && (r = pcap_next_ex(pc, &h, &data)) == 1) {
        if (h->caplen > FTMB_PKT_MAX) {
            /* libpcap cuts a record longer than the file's snaplen down to the snaplen: the length on
             * the wire (the record's orig_len) is the packet's size then, not the captured part. */
            fprintf(stderr, "%s: %s: packet %u is %u bytes on the wire (%u captured); the limit is %d\n", me, path,
                    n + 1, h->len > h->caplen ? h->len : h->caplen, h->caplen, FTMB_PKT_MAX);
            goto fail;
        }
        if (n == UINT32_MAX - 1 || nbytes + h->caplen > UINT32_MAX) {
            fprintf(stderr, "%s: %s: too many packets\n", me, path);
            goto fail;
        }
        if (nbytes + h->caplen > cap_bytes) {
            cap_bytes *= 2;
            bytes = realloc(bytes, cap_bytes);
        }
        if (n == cap_pkts) {
            cap_pkts *= 2;
            pkts = realloc(pkts, cap_pkts * sizeof *pkts);
        }
        if (!bytes || !pkts)
            break;
        memcpy(bytes + nbytes, data, h->caplen);
        pkts[n].offset = (uint32_t)nbytes;
        pkts[n].len = h->caplen;
        pkts[n].queue = (uint16_t)(flow_hash(data, h->caplen) % nqueues);
        nbytes += h->caplen;
        n++;
    }
    if (!bytes || !pkts) {
        fprintf(stderr, "%s: %s: out of memory\n", me, path);
        goto fail;
    }
    if (r == PCAP_ERROR) {
        fprintf(stderr, "%s: %s: %s (after %u packets)\n", me, path, pcap_geterr(pc), n);
        goto fail;
    }
    pcap_close(pc);
    *bytes_out = bytes;
    *pkts_out = pkts;
    *npkts_out = n;
    return 0;
fail:
    pcap_close(pc);
    free(bytes);
    free(pkts);
    return -1;
}

static void log_append(struct queue_state *q, uint16_t kind, uint32_t pkt, uint64_t time_ns)
{
    if (q->len == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 4096;
        q->log = realloc(q->log, q->cap * sizeof *q->log);
        if (!q->log) {
            fprintf(stderr, "%s: out of memory for the retained log\n", me);
            exit(1);
        }
    }
    q->log[q->len++] = (struct logged_entry){time_ns, pkt, kind};
}

/* Forget entries before the master's retain_from mark (advanced by checkpoints). */
static void trim(struct queue_state *q, uint64_t retain_from)
{
    uint64_t upto = retain_from < q->serve ? retain_from : q->serve;
    if (upto <= q->base + 4096) /* trim in large steps */
        return;
    uint64_t drop = upto - q->base;
    memmove(q->log, q->log + drop, (q->len - drop) * sizeof *q->log);
    q->len -= drop;
    q->base = upto;
}

int main(int argc, char **argv)
{
    const char *session = NULL, *in_path = NULL;
    uint64_t nqueues = 1, tick_us = 100, tick_max_us = 10000, rate = 0, capacity = 1024;
    int until_signal = 0, follow_on = 0, follow_forget = 0;
    const char *arrivals_path = NULL;
    static const struct option opts[] = {
        {"session", required_argument, 0, 's'}, {"in", required_argument, 0, 'i'},
        {"queues", required_argument, 0, 'q'}, {"tick-us", required_argument, 0, 't'},
        {"tick-max-us", required_argument, 0, 'T'},
        {"rate", required_argument, 0, 'r'}, {"capacity", required_argument, 0, 'c'},
        {"until-signal", no_argument, 0, 'U'}, {"follow", no_argument, 0, 'F'},
        {"follow-forget", no_argument, 0, 'G'}, {"arrivals", required_argument, 0, 'A'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': session = optarg; break;
        case 'i': in_path = optarg; break;
        case 'q': if (_ftmb_parse_u64(me, "--queues", optarg, 1, FTMB_MAX_QUEUES, &nqueues)) return 1; break;
        case 't': if (_ftmb_parse_u64(me, "--tick-us", optarg, 1, 60000000, &tick_us)) return 1; break;
        case 'T': if (_ftmb_parse_u64(me, "--tick-max-us", optarg, 1, 60000000, &tick_max_us)) return 1; break;
        case 'r': if (_ftmb_parse_u64(me, "--rate", optarg, 0, 1000000000, &rate)) return 1; break;
        case 'c': if (_ftmb_parse_pow2(me, "--capacity", optarg, 2, 1u << 20, &capacity)) return 1; break;
        case 'U': until_signal = 1; break;
        case 'F': follow_on = 1; break;
        case 'G': follow_forget = 1; break;
        case 'A': arrivals_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", me, argv[optind]);
        return 1;
    }
    if (!session || !in_path) {
        fprintf(stderr, "%s: --session and --in are required (--help for usage)\n", me);
        return 1;
    }
    if (follow_forget && !follow_on) {
        fprintf(stderr, "%s: --follow-forget needs --follow\n", me);
        return 1;
    }
    if (!_ftmb_valid_session_name(session)) {
        fprintf(stderr, "%s: --session %s: a session name is 1 to 64 of [A-Za-z0-9._-]\n", me, session);
        return 1;
    }
    uint8_t *bytes;
    struct packet *pkts;
    uint32_t npkts;
    if (load_pcap(in_path, (uint32_t)nqueues, &bytes, &pkts, &npkts) != 0)
        return 1;

    /* --arrivals: each packet's first serve time (0: never served), written at exit (as FILE.tmp,
     * renamed when complete); tried now, so an unwritable place fails before anything starts. */
    uint64_t *arrival = NULL;
    char arrivals_tmp[4096];
    if (arrivals_path) {
        snprintf(arrivals_tmp, sizeof arrivals_tmp, "%s.tmp", arrivals_path);
        FILE *f = fopen(arrivals_tmp, "w");
        if (f)
            fclose(f);
        unlink(arrivals_tmp);
        if (!f || !(arrival = calloc(npkts ? npkts : 1, sizeof *arrival))) {
            fprintf(stderr, "%s: --arrivals %s: cannot write %s: %s\n", me, arrivals_path, arrivals_tmp,
                    f ? "out of memory" : strerror(errno));
            return 1;
        }
    }
    struct queue_state *qs = calloc(nqueues, sizeof *qs);
    for (uint32_t i = 0; i < npkts; i++)
        qs[pkts[i].queue].npkts++;
    for (uint32_t q = 0; q < nqueues; q++) {
        qs[q].pkts = malloc((qs[q].npkts + 1) * sizeof(uint32_t));
        qs[q].npkts = 0;
    }
    for (uint32_t i = 0; i < npkts; i++) {
        struct queue_state *q = &qs[pkts[i].queue];
        q->pkts[q->npkts++] = i;
    }

    size_t size = _ftmb_in_region_size((uint32_t)nqueues, (uint32_t)capacity);
    /* The session's clock starts here: no master can read it before the region below exists (a
     * lower bound of every time a worker stamps, written to --arrivals). */
    const uint64_t clock_start_ns = _ftmb_now_ns(CLOCK_REALTIME);
    struct _ftmb_in_region *region = _ftmb_region_create(session, "in", size);
    if (!region)
        return 1;
    _ftmb_in_region_init(region, size, (uint32_t)nqueues, (uint32_t)capacity, _ftmb_calibrate_tsc_hz(),
                         tick_us * 1000);
    _ftmb_region_populate(region, 0, size);
    for (uint32_t q = 0; q < nqueues; q++)
        _ftmb_ring_attach(&qs[q].ring, region, &region->queue[q].ring, 1);
    struct _ftmb_infol_region *fol = NULL;
    if (follow_on) {
        size_t fsize = _ftmb_infol_region_size((uint32_t)nqueues, (uint32_t)capacity);
        fol = _ftmb_region_create(session, "infol", fsize);
        if (!fol) {
            _ftmb_region_unlink(session, "in");
            return 1;
        }
        _ftmb_infol_region_init(fol, fsize, (uint32_t)nqueues, (uint32_t)capacity);
        _ftmb_region_populate(fol, 0, fsize);
        for (uint32_t q = 0; q < nqueues; q++)
            _ftmb_ring_attach(&qs[q].fring, fol, &fol->queue[q], 1);
        _ftmb_region_set_ready(fol); /* before the input region: a follower finds both */
    }
    _ftmb_region_set_ready(region);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    int rc = 0;
    uint64_t start_ns = 0, served_pkts = 0, last_master_check = 0, held_max = 0;
    uint64_t following_max = 0, following_logged = 0; /* until a master's death (--follow-forget bounds) */
    int32_t reported_pid = 0;
    unsigned idle = 0;
    const uint64_t tick_ns = tick_us * 1000;
    /* Ticks only move an idle queue's clock; each one the master consumes is a logged receive, so an
     * idle queue gets fewer and fewer: after tick_ns, then twice the gap before, up to tick_max_ns. */
    const uint64_t tick_max_ns = (tick_max_us > tick_us ? tick_max_us : tick_us) * 1000;
    for (uint32_t qi = 0; qi < nqueues; qi++)
        qs[qi].tick_gap_ns = tick_ns;
    for (;;) {
        uint64_t mono = _ftmb_now_ns(CLOCK_MONOTONIC);
        _ftmb_region_heartbeat(region);
        if (fol) /* (its follow export judges this logger by the follow region's heartbeat) */
            _ftmb_region_heartbeat(fol);
        if (stop_signal) {
            rc = until_signal ? 0 : 4;
            break;
        }
        /* Acquire pairs with the master's release stores of master_state. */
        uint32_t state = atomic_load_explicit(&region->hdr.master_state, memory_order_acquire);
        if ((state == _FTMB_MASTER_DONE || state == _FTMB_MASTER_STOPPED) && !until_signal)
            break;
        /* Relaxed: master_pid is published with master_state, which we acquired above. */
        int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
        if (state == _FTMB_MASTER_ATTACHED && mono - last_master_check > 10000000ull) {
            last_master_check = mono;
            if (pid != reported_pid && _ftmb_master_died(&region->hdr, pid)) {
                fprintf(stderr, "%s: the master (pid %d) of session %s died without ftmb_exit\n", me, (int)pid,
                        session);
                reported_pid = pid;
                if (!until_signal) {
                    rc = 3;
                    break;
                }
            }
        }
        int pushed = 0; /* whatever the master does: a follower finishes what it was served */
        for (uint32_t qi = 0; fol && qi < nqueues; qi++)
            pushed |= follow_push(&qs[qi], qi, pkts, bytes);
        if (state != _FTMB_MASTER_ATTACHED || pid == reported_pid) { /* no master to serve (yet) */
            struct timespec d = {0, 100000};
            nanosleep(&d, NULL);
            continue;
        }
        /* --rate counts from the master's first take, not its attach: a DPDK program attaches
         * before rte_eal_init, which may take a second on a loaded machine, and would find that
         * much of its input waiting at once. Until then each queue is served its first packet. */
        for (uint32_t qi = 0; !start_ns && qi < nqueues; qi++)
            if (atomic_load_explicit(&region->queue[qi].ring.tail, memory_order_relaxed) > 0) /* a hint */
                start_ns = mono;
        int served = 0; /* entries, or a rewind's ack, for the master */
        uint64_t now = _ftmb_now_ns(CLOCK_REALTIME);
        for (uint32_t qi = 0; qi < nqueues; qi++) {
            struct queue_state *q = &qs[qi];
            struct _ftmb_in_queue *iq = &region->queue[qi];
            /* Acquire pairs with the master's release store of rewind_req (after rewind_pos). */
            uint64_t req = atomic_load_explicit(&iq->rewind_req, memory_order_acquire);
            if (req != q->rewind_seen) {
                /* Relaxed: ordered by the acquire of rewind_req above. */
                uint64_t pos = atomic_load_explicit(&iq->rewind_pos, memory_order_relaxed);
                if (pos < q->base || pos > q->base + q->len) {
                    fprintf(stderr, "%s: queue %u: cannot serve again from entry %llu: retained are %llu..%llu\n",
                            me, qi, (unsigned long long)pos, (unsigned long long)q->base,
                            (unsigned long long)(q->base + q->len));
                    pos = q->base + q->len; /* the master's wait reports the failure */
                }
                /* The master waits for our ack and reads nothing meanwhile: drop what it did not take. */
                uint64_t tail = atomic_load_explicit(&iq->ring.tail, memory_order_acquire); /* P0 */
                q->ring.local = tail;
                q->ring.cache = tail;
                _ftmb_ring_publish(&q->ring, 0);
                q->serve = pos;
                q->rewind_seen = req;
                /* Release: the emptied ring is visible before the ack; pairs with the master's acquire. */
                atomic_store_explicit(&iq->rewind_ack, req, memory_order_release);
                served = 1;
            }
            /* Relaxed: a hint (see _ftmb_input_retain_from); trimming late only keeps more. With
             * --follow-forget the follower's position (its ring's tail: the entries it took). */
            trim(q, follow_forget ? atomic_load_explicit(&q->fring.ctl->tail, memory_order_relaxed)
                                  : atomic_load_explicit(&iq->retain_from, memory_order_relaxed));
            for (;;) {
                struct _ftmb_in_entry *e = _ftmb_ring_reserve(&q->ring);
                if (!e)
                    break;
                if (q->serve == q->base + q->len) { /* serve something new, and retain it */
                    int paced = rate && (start_ns ? (double)served_pkts >= (double)(mono - start_ns) * 1e-9 * (double)rate
                                                  : q->next_pkt > 0);
                    if (q->next_pkt < q->npkts && !paced) {
                        if (arrival)
                            arrival[q->pkts[q->next_pkt]] = now;
                        log_append(q, _FTMB_IN_PKT, q->pkts[q->next_pkt++], now);
                        served_pkts++;
                    } else if (q->next_pkt == q->npkts && !q->eof_logged) {
                        log_append(q, _FTMB_IN_EOF, 0, now);
                        q->eof_logged = 1;
                    } else if (!q->eof_logged && now - q->last_time_ns >= q->tick_gap_ns) {
                        log_append(q, _FTMB_IN_TICK, 0, now);
                    } else {
                        break;
                    }
                }
                fill_entry(e, q, qi, q->serve, pkts, bytes);
                q->last_time_ns = e->time_ns;
                if (e->kind == _FTMB_IN_TICK)
                    q->tick_gap_ns = 2 * q->tick_gap_ns < tick_max_ns ? 2 * q->tick_gap_ns : tick_max_ns;
                else
                    q->tick_gap_ns = tick_ns;
                q->serve++;
                _ftmb_ring_publish(&q->ring, 1); /* P1: pairs with the master's C1 */
                served = 1;
            }
        }
        if (served) /* (a relay that serves a remote master may sleep on the region) */
            _ftmb_region_ring(&region->hdr);
        if (pushed)
            _ftmb_region_ring(&fol->hdr);
        uint64_t held = 0, logged = 0;
        for (uint32_t qi = 0; qi < nqueues; qi++) {
            held += qs[qi].len;
            logged += qs[qi].base + qs[qi].len;
        }
        held_max = held > held_max ? held : held_max;
        if (!reported_pid) {
            following_max = held > following_max ? held : following_max;
            following_logged = logged;
        }
        if (served || pushed) {
            idle = 0;
        } else if (++idle > 2000) {
            struct timespec d = {0, 20000};
            nanosleep(&d, NULL);
        } else if (idle > 100) {
            sched_yield();
        }
    }
    if (arrival) {
        FILE *f = fopen(arrivals_tmp, "w");
        if (f) {
            fprintf(f, "ftmb-arrivals/2 %s %llu\n", session, (unsigned long long)clock_start_ns);
            for (uint32_t i = 0; i < npkts; i++)
                if (arrival[i])
                    fprintf(f, "%u %llu\n", i, (unsigned long long)arrival[i]);
        }
        if (!f || fclose(f) != 0 || rename(arrivals_tmp, arrivals_path) != 0) {
            fprintf(stderr, "%s: --arrivals %s: cannot write it: %s\n", me, arrivals_path, strerror(errno));
            unlink(arrivals_tmp);
            if (rc == 0)
                rc = 1;
        }
        free(arrival);
    }
    _ftmb_region_unlink(session, "in");
    if (fol) {
        _ftmb_region_unlink(session, "infol");
        /* What forgetting (--follow-forget) bounds: the entries kept, now and at most, of all served;
         * and until a master died (its follower, the master from then on, has no follower: from then
         * on entries are kept, as after a follower's loss). */
        uint64_t kept = 0, logged = 0;
        for (uint32_t q = 0; q < nqueues; q++) {
            kept += qs[q].len;
            logged += qs[q].base + qs[q].len;
        }
        fprintf(stderr, "%s: log held entries %llu max %llu of %llu; following max %llu of %llu\n", me,
                (unsigned long long)kept, (unsigned long long)(held_max > kept ? held_max : kept),
                (unsigned long long)logged, (unsigned long long)following_max, (unsigned long long)following_logged);
    }
    for (uint32_t q = 0; q < nqueues; q++) {
        free(qs[q].log);
        free(qs[q].pkts);
    }
    free(qs);
    free(bytes);
    free(pkts);
    return rc;
}

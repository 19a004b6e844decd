/*
 * ftmb-output-logger: the output logger process of a session. See usage() for the arguments.
 *
 * Creates /dev/shm/ftmb-<session>.out, then loops: store every master thread's records, release
 * each output packet whose vector is covered (to a pcap file), until the master calls ftmb_exit
 * (or dies of a stop signal it does not handle: a stop) and everything it sent has been handled, or
 * the master dies. Exit codes: 0 every packet
 * released; 1 bad arguments or file; 2 packets held forever (corrupt or missing records);
 * 3 the master died without ftmb_exit; 4 stopped by a signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "ftmb_internal.h"
#include "tool_util.h"

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

struct sink_ctx {
    FILE *pcap;
    const char *path;
    uint64_t released;
    uint64_t *lat_ns; /* release time - input time of packets that answer an input */
    uint64_t nlat, caplat;
    int write_failed;
    int unflushed; /* released packets still in stdio's buffer: flushed when a pass finds no work */
};

struct samples {
    uint64_t *v, n, cap;
};

static void sample(struct samples *s, uint64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            fprintf(stderr, "ftmb-output-logger: out of memory for samples\n");
            exit(1);
        }
    }
    s->v[s->n++] = v;
}

static void release_packet(void *p, const struct _ftmb_out_slot *s)
{
    struct sink_ctx *c = p;
    uint64_t now = _ftmb_now_ns(CLOCK_REALTIME);
    if (!c->write_failed && _ftmb_pcap_write(c->pcap, now, s->data, s->len) != 0) {
        fprintf(stderr, "ftmb-output-logger: %s: write failed: %s\n", c->path, strerror(errno));
        c->write_failed = 1;
    }
    c->released++;
    c->unflushed = 1;
    if (s->in_time_ns && now >= s->in_time_ns) {
        if (c->nlat == c->caplat) {
            c->caplat = c->caplat ? 2 * c->caplat : 65536;
            c->lat_ns = realloc(c->lat_ns, c->caplat * sizeof *c->lat_ns);
            if (!c->lat_ns) {
                fprintf(stderr, "ftmb-output-logger: out of memory for latency samples\n");
                exit(1);
            }
        }
        c->lat_ns[c->nlat++] = now - s->in_time_ns;
    }
}

/* Write the log next to its final name, then rename: a reader never sees half a log. */
static int write_log(const struct _ftmb_ol *ol, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (_ftmb_ol_write_log(ol, tmp) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "ftmb-output-logger: %s: cannot write the log: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/*
 * --follow: every stored record is published again, in each thread's order, on the thread's ring of
 * the follow region (S.fol), which a follower consumes; when the master dies, once every record it
 * published is stored, each thread's count is set and `final` says so (the follower then finishes
 * the tail and goes live). With --follow-forget the records the follower has applied are forgotten
 * (the follower's `applied` is the output region's retain_from mark). The follower's lag: every
 * 1 ms, each thread's stored count is noted with the time; when the follower's applied count
 * passes it, the time since is one lag sample, and the records stored but not applied another.
 */
#define LAG_NOTES 1024
struct follow {
    struct _ftmb_fol_region *region;
    struct _ftmb_ring ring[FTMB_MAX_THREADS]; /* producer side */
    uint64_t pushed[FTMB_MAX_THREADS];       /* records published on the ring */
    int forget;
    int follower_lost;                       /* reported once */
    struct { uint64_t count, ns; } note[FTMB_MAX_THREADS][LAG_NOTES];
    uint32_t note_head[FTMB_MAX_THREADS], note_tail[FTMB_MAX_THREADS];
    uint64_t last_note_ns;
    uint64_t last_follower_check_ns;
    struct samples lag_ns, lag_rec;
    uint64_t held_max;                       /* the most records kept at once (all threads) */
    uint64_t following_max, following_stored; /* the same, and the records stored, while the master ran
                                              * (final: following), which --follow-forget bounds */
};

/* Publish the stored records the follower has not been given yet; returns how many. */
static uint64_t follow_push(struct follow *f, struct _ftmb_ol *ol, struct _ftmb_out_region *out)
{
    uint64_t work = 0, now = _ftmb_now_ns(CLOCK_MONOTONIC), stored = 0, applied_all = 0, held = 0;
    /* Relaxed: only this process writes final. */
    int note = now - f->last_note_ns >= 1000000ull &&
               atomic_load_explicit(&f->region->final, memory_order_relaxed) == _FTMB_FOL_FOLLOWING;
    /* Relaxed: a pid to watch, guarding no data. */
    int32_t fpid = atomic_load_explicit(&f->region->follower_pid, memory_order_relaxed);
    /* (after the master's end the follower is the master, or has nothing to follow). Once a ms: a
     * look is a system call and a /proc read, and this loop makes a pass every few µs. */
    int look = now - f->last_follower_check_ns >= 1000000ull;
    f->last_follower_check_ns = look ? now : f->last_follower_check_ns;
    if (look && fpid > 0 && !f->follower_lost &&
        atomic_load_explicit(&f->region->final, memory_order_relaxed) == _FTMB_FOL_FOLLOWING &&
        !_ftmb_pid_alive(fpid)) {
        f->follower_lost = 1;
        fprintf(stderr, "ftmb-output-logger: the follower (pid %d) died; the master goes on without a backup, and "
                        "records are kept from its last applied one\n", (int)fpid);
    }
    for (uint32_t t = 0; t < f->region->max_threads; t++) {
        uint64_t n, base = _ftmb_ol_base(ol, t);
        const struct _ftmb_record *log = _ftmb_ol_log(ol, t, &n);
        uint64_t received = base + n;
        held += n;
        /* Relaxed: a count only the follower writes; no data is read through it. */
        uint64_t applied = atomic_load_explicit(&f->region->thread[t].applied, memory_order_relaxed);
        stored += received;
        applied_all += applied;
        if (note && received && fpid > 0) {
            uint32_t h = f->note_head[t];
            if (h - f->note_tail[t] < LAG_NOTES) {
                f->note[t][h % LAG_NOTES].count = received;
                f->note[t][h % LAG_NOTES].ns = now;
                f->note_head[t] = h + 1;
            }
        }
        while (f->note_tail[t] != f->note_head[t] && f->note[t][f->note_tail[t] % LAG_NOTES].count <= applied)
            sample(&f->lag_ns, now - f->note[t][f->note_tail[t]++ % LAG_NOTES].ns);
        if (f->forget && !f->follower_lost && applied > base)
            /* Relaxed: a mark only (the core forgets lazily, never past what it stored). */
            atomic_store_explicit(&out->thread[t].retain_from, applied, memory_order_relaxed);
        if (f->pushed[t] < base) {
            if (!f->follower_lost) {
                f->follower_lost = 1;
                fprintf(stderr, "ftmb-output-logger: thread %u's records before %llu were forgotten before the "
                                "follower got them; it cannot follow\n",
                        t, (unsigned long long)base);
            }
            continue;
        }
        struct _ftmb_ring *r = &f->ring[t];
        while (f->pushed[t] < received) {
            r->cache = atomic_load_explicit(&r->ctl->tail, memory_order_acquire); /* P0 */
            uint64_t space = r->mask + 1 - (r->local - r->cache);
            uint64_t k = received - f->pushed[t] < space ? received - f->pushed[t] : space;
            if (k == 0)
                break;
            for (uint64_t i = 0; i < k; i++)
                *(struct _ftmb_record *)_ftmb_ring_slot(r, r->local + i) = log[f->pushed[t] + i - base];
            _ftmb_ring_publish(r, k); /* P1: pairs with the follower's C1 */
            _ftmb_fol_wake(f->region, t);
            f->pushed[t] += k;
            work += k;
        }
    }
    if (work) /* (a follow export may sleep on the region) */
        _ftmb_region_ring(&f->region->hdr);
    if (held > f->held_max)
        f->held_max = held;
    /* Relaxed: only this process writes final. */
    if (atomic_load_explicit(&f->region->final, memory_order_relaxed) == _FTMB_FOL_FOLLOWING) {
        f->following_max = held > f->following_max ? held : f->following_max;
        f->following_stored = stored;
    }
    if (note) {
        f->last_note_ns = now;
        if (fpid > 0 && !f->follower_lost && stored) /* the record lag, once per ms */
            sample(&f->lag_rec, stored - applied_all);
    }
    return work;
}

/* The master died and every record it published is stored: the follower may finish the tail. */
static void follow_final(struct follow *f, struct _ftmb_ol *ol, uint32_t state)
{
    uint32_t following = _FTMB_FOL_FOLLOWING;
    if (atomic_load_explicit(&f->region->final, memory_order_relaxed) != following)
        return;
    for (uint32_t t = 0; t < f->region->max_threads; t++)
        /* Relaxed: published by the release store of final below. */
        atomic_store_explicit(&f->region->thread[t].final_count, _ftmb_ol_received(ol, t), memory_order_relaxed);
    /* Release: pairs with the follower's acquire load of final; the counts are visible. */
    atomic_store_explicit(&f->region->final, state, memory_order_release);
    _ftmb_region_ring(&f->region->hdr);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
    fputs("usage: ftmb-output-logger --session NAME --out FILE.pcap [options]\n"
          "  --session NAME      session to create (/dev/shm/ftmb-NAME.out); the master attaches with\n"
          "                      FTMB_SESSION=NAME\n"
          "  --out FILE          released packets, pcap (written as they are released)\n"
          "  --threads N         at most N master threads (default and limit 32; the rings of threads\n"
          "                      that never start take no memory)\n"
          "  --log FILE          write every stored record here at exit (replay reads it: FTMB_REPLAY_LOG)\n"
          "  --rec-capacity N    records per thread ring, a power of two (default 65536)\n"
          "  --out-capacity N    output packets per thread ring, a power of two (default 1024)\n"
          "  --linktype N        pcap link type of --out (default 1, Ethernet)\n"
          "  --stats             print released/held counts and release latency (p50/p99) on stderr\n"
          "  --follow            publish every stored record for a follower (FTMB_MODE=follow) on\n"
          "                      /dev/shm/ftmb-NAME.fol, and tell it when the master died\n"
          "  --follow-forget     with --follow: forget the records the follower has applied (the log\n"
          "                      then starts there; a replay from the start needs them kept)\n"
          "  --until-signal      keep running after the master finishes or dies (a replaying master\n"
          "                      may attach next; --log is written each time a master finishes or dies,\n"
          "                      after every record it published is stored: a failover backup replays it); stop\n"
          "                      on SIGINT/SIGTERM with exit 0\n"
          "exit: 0 all released, 1 bad arguments, 2 packets held forever, 3 master died, 4 signal\n",
          f);
}

int main(int argc, char **argv)
{
    const char *session = NULL, *out_path = NULL, *log_path = NULL;
    uint64_t threads = FTMB_MAX_THREADS, rec_cap = 65536, out_cap = 1024, linktype = 1;
    int stats = 0, until_signal = 0, follow_on = 0, follow_forget = 0;
    static const struct option opts[] = {
        {"session", required_argument, 0, 's'}, {"out", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"log", required_argument, 0, 'l'},
        {"rec-capacity", required_argument, 0, 'r'}, {"out-capacity", required_argument, 0, 'c'},
        {"linktype", required_argument, 0, 'k'}, {"stats", no_argument, 0, 'S'},
        {"until-signal", no_argument, 0, 'U'}, {"follow", no_argument, 0, 'F'},
        {"follow-forget", no_argument, 0, 'G'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *me = "ftmb-output-logger";
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': session = optarg; break;
        case 'o': out_path = optarg; break;
        case 'l': log_path = optarg; break;
        case 't': if (_ftmb_parse_u64(me, "--threads", optarg, 1, FTMB_MAX_THREADS, &threads)) return 1; break;
        case 'r': if (_ftmb_parse_pow2(me, "--rec-capacity", optarg, 64, 1u << 24, &rec_cap)) return 1; break;
        case 'c': if (_ftmb_parse_pow2(me, "--out-capacity", optarg, 2, 1u << 16, &out_cap)) return 1; break;
        case 'k': if (_ftmb_parse_u64(me, "--linktype", optarg, 0, 65535, &linktype)) return 1; break;
        case 'S': stats = 1; break;
        case 'U': until_signal = 1; break;
        case 'F': follow_on = 1; break;
        case 'G': follow_forget = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", me, argv[optind]);
        return 1;
    }
    if (!session || !out_path) {
        fprintf(stderr, "%s: --session and --out are required (--help for usage)\n", me);
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
    struct sink_ctx sink = {.path = out_path};
    sink.pcap = _ftmb_pcap_create(out_path, (uint32_t)linktype);
    if (!sink.pcap) {
        fprintf(stderr, "%s: %s: cannot create: %s\n", me, out_path, strerror(errno));
        return 1;
    }
    size_t size = _ftmb_out_region_size((uint32_t)threads, (uint32_t)rec_cap, (uint32_t)out_cap);
    struct _ftmb_out_region *region = _ftmb_region_create(session, "out", size);
    if (!region)
        return 1;
    _ftmb_out_region_init(region, size, (uint32_t)threads, (uint32_t)rec_cap, (uint32_t)out_cap);
    region->every_ordered = follow_on; /* before ready: the master reads it at its attach */
    static struct follow follow; /* (large: the lag notes) */
    if (follow_on) {
        size_t fsize = _ftmb_fol_region_size((uint32_t)threads, (uint32_t)rec_cap);
        follow.region = _ftmb_region_create(session, "fol", fsize);
        if (!follow.region) {
            _ftmb_region_unlink(session, "out");
            return 1;
        }
        _ftmb_fol_region_init(follow.region, fsize, (uint32_t)threads, (uint32_t)rec_cap);
        for (uint32_t t = 0; t < threads; t++)
            _ftmb_ring_attach(&follow.ring[t], follow.region, &follow.region->thread[t].rec, 1);
        follow.forget = follow_forget;
        _ftmb_region_set_ready(follow.region); /* before the output region: a follower finds both */
    }
    _ftmb_region_set_ready(region);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct _ftmb_ol *ol = _ftmb_ol_new(region, (struct _ftmb_ol_sink){release_packet, &sink}, stderr);
    if (!ol) {
        fprintf(stderr, "%s: out of memory\n", me);
        return 1;
    }
    int rc = 0;
    /* The master whose end was last reported: each master's end is reported once, by its pid, so a
     * master that attaches and finishes between two passes of this loop (it was never seen
     * ATTACHED) is still reported; the run waits for that line (a verification replay's end). */
    int32_t done_pid = 0, attached_pid = 0;
    /* The attached master's pidfd (readable once it exits): its death is looked at within 50 µs of
     * its exit, not at the next 1 ms look (-1 where pidfd_open fails: the ms looks alone). */
    int master_pfd = -1;
    int32_t master_pfd_pid = 0;
    uint64_t last_pfd_look = 0;
    int32_t reported_pid = 0;
    unsigned idle = 0;
    uint64_t last_master_check = 0;
    for (;;) {
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        _ftmb_region_heartbeat(region);
        /* Acquire pairs with the master's release in ftmb_exit: what it published is visible. */
        uint32_t state = atomic_load_explicit(&region->hdr.master_state, memory_order_acquire);
        uint64_t work = _ftmb_ol_poll(ol);
        if (follow.region) {
            _ftmb_region_heartbeat(follow.region);
            work += follow_push(&follow, ol, region);
        }
        if (stop_signal) {
            rc = until_signal ? 0 : 4;
            break;
        }
        /* A master a stop signal ended (STOPPED) is finished once its process is gone: everything it
         * published is then in its rings, and the passes below store and release it. Relaxed:
         * master_pid is published with master_state, which we acquired above. */
        int finished = state == _FTMB_MASTER_DONE ||
                       (state == _FTMB_MASTER_STOPPED &&
                        !_ftmb_pid_alive(atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed)));
        if (finished && work == 0) {
            _ftmb_ol_poll(ol); /* one more pass after the last one found nothing */
            if (!until_signal) {
                if (follow.region)
                    follow_final(&follow, ol, _FTMB_FOL_FINISHED);
                break;
            }
            /* Relaxed: master_pid is published with master_state, which we acquired above. */
            int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
            /* A pid that was never seen ATTACHED may be a new master caught between its store of
             * master_pid and of master_state (the DONE read is its predecessor's): its end counts
             * once it was seen attached or its process is gone. */
            if (pid != done_pid && (pid == attached_pid || !_ftmb_pid_alive(pid))) {
                /* keep serving: a replaying master may attach next */
                done_pid = pid;
                if (follow.region) /* a follower has nothing to take over */
                    follow_final(&follow, ol, _FTMB_FOL_FINISHED);
                if (log_path && write_log(ol, log_path) != 0)
                    rc = 1;
                fprintf(stderr, "%s: the master (pid %d) %s; every output handled; released %llu duplicates "
                                "%llu mismatches %llu\n",
                        me, (int)pid, state == _FTMB_MASTER_DONE ? "finished" : "was stopped by a signal",
                        (unsigned long long)sink.released, (unsigned long long)_ftmb_ol_duplicates(ol),
                        (unsigned long long)_ftmb_ol_mismatches(ol));
            }
        }
        if (state == _FTMB_MASTER_ATTACHED) /* Relaxed: published with master_state (acquired above). */
            attached_pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
        int exited = 0;
        if (state == _FTMB_MASTER_ATTACHED && now - last_pfd_look > 50000ull) {
            last_pfd_look = now;
            /* Relaxed: master_pid is published with master_state (acquired above). */
            int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
            if (pid != master_pfd_pid) {
                if (master_pfd >= 0)
                    close(master_pfd);
                master_pfd = (int)syscall(SYS_pidfd_open, pid, 0);
                master_pfd_pid = pid;
            }
            struct pollfd pp = {master_pfd, POLLIN, 0};
            exited = master_pfd >= 0 && poll(&pp, 1, 0) > 0;
        }
        /* 1 ms, or its exit: a failover backup waits for the log */
        if (state == _FTMB_MASTER_ATTACHED && (exited || now - last_master_check > 1000000ull)) {
            last_master_check = now;
            /* Relaxed: master_pid is published with master_state, which we acquired above. */
            int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
            /* Its threads' robust mutexes tell first (before its memory is torn down), its pid after. */
            int watched = pid != reported_pid && _ftmb_master_threads_dead(region, pid);
            if (pid != reported_pid && (watched || _ftmb_master_died(&region->hdr, pid))) {
                /* Everything the master published is in its rings: store all of it, so the log
                 * is a prefix of every thread's stream closed under the order on each object. */
                _ftmb_ol_master_died(ol);
                if (follow.region) /* the follower finishes the tail and goes live */
                    follow_final(&follow, ol, _FTMB_FOL_DIED);
                fprintf(stderr, "%s: the master (pid %d) of session %s died without ftmb_exit (%s)\n", me, (int)pid,
                        session, watched ? "death watch" : "its process is gone");
                reported_pid = pid;
                if (!until_signal) {
                    rc = 3;
                    break;
                }
                /* A backup replays this log (FTMB_REPLAY_LOG) and takes over the session. */
                if (log_path && write_log(ol, log_path) != 0)
                    rc = 1;
            }
        }
        if (work) {
            idle = 0;
        } else if (sink.unflushed) { /* what is released is in OUT, whatever dies next */
            sink.unflushed = 0;
            if (fflush(sink.pcap) != 0 && !sink.write_failed) {
                fprintf(stderr, "%s: %s: write failed: %s\n", me, out_path, strerror(errno));
                sink.write_failed = 1;
            }
        } else if (++idle > 2000) {
            struct timespec d = {0, 20000};
            nanosleep(&d, NULL);
        } else if (idle > 100) {
            sched_yield();
        }
    }
    uint64_t held = _ftmb_ol_pending(ol);
    if (held && rc == 0) {
        fprintf(stderr, "%s: %llu output packets were never released: records they depend on %s\n", me,
                (unsigned long long)held,
                _ftmb_ol_corrupt(ol) ? "failed their checksum" : "never arrived");
        rc = 2;
    }
    if (fclose(sink.pcap) != 0 || sink.write_failed) {
        fprintf(stderr, "%s: %s: write failed\n", me, out_path);
        rc = rc ? rc : 1;
    }
    if (log_path && write_log(ol, log_path) != 0)
        rc = rc ? rc : 1;
    if (stats) {
        uint64_t recs = 0;
        for (uint32_t t = 0; t < FTMB_MAX_THREADS && t < threads; t++)
            recs += _ftmb_ol_received(ol, t);
        double p50 = 0, p99 = 0;
        if (sink.nlat) {
            qsort(sink.lat_ns, sink.nlat, sizeof *sink.lat_ns, cmp_u64);
            p50 = (double)sink.lat_ns[sink.nlat / 2] / 1000.0;
            p99 = (double)sink.lat_ns[(sink.nlat * 99) / 100] / 1000.0;
        }
        fprintf(stderr,
                "%s: released %llu held %llu records %llu corrupt %llu duplicates %llu latency_us p50 %.1f p99 "
                "%.1f mismatches %llu\n",
                me, (unsigned long long)sink.released, (unsigned long long)held, (unsigned long long)recs,
                (unsigned long long)_ftmb_ol_corrupt(ol), (unsigned long long)_ftmb_ol_duplicates(ol), p50, p99,
                (unsigned long long)_ftmb_ol_mismatches(ol));
    }
    if (stats && follow.region) {
        qsort(follow.lag_ns.v, follow.lag_ns.n, sizeof(uint64_t), cmp_u64);
        qsort(follow.lag_rec.v, follow.lag_rec.n, sizeof(uint64_t), cmp_u64);
        struct samples *ls[2] = {&follow.lag_ns, &follow.lag_rec};
        double q[2][4] = {{0}};
        for (int i = 0; i < 2; i++)
            if (ls[i]->n) {
                double scale = i == 0 ? 1e-6 : 1.0;
                q[i][0] = (double)ls[i]->v[0] * scale;
                q[i][1] = (double)ls[i]->v[ls[i]->n / 2] * scale;
                q[i][2] = (double)ls[i]->v[(ls[i]->n * 99) / 100] * scale;
                q[i][3] = (double)ls[i]->v[ls[i]->n - 1] * scale;
            }
        fprintf(stderr,
                "%s: follower lag_ms min %.3f p50 %.3f p99 %.3f max %.3f lag_records min %.0f p50 %.0f p99 %.0f max "
                "%.0f samples %llu\n",
                me, q[0][0], q[0][1], q[0][2], q[0][3], q[1][0], q[1][1], q[1][2], q[1][3],
                (unsigned long long)follow.lag_rec.n);
        /* What forgetting (--follow-forget) bounds: the records kept, now and at most, of all stored;
         * and while the master ran (after its death the follower is the master: nothing follows it,
         * and from then on records are kept, as after a follower's loss). */
        uint64_t kept = 0, recs = 0;
        for (uint32_t t = 0; t < follow.region->max_threads; t++) {
            uint64_t n;
            _ftmb_ol_log(ol, t, &n);
            kept += n;
            recs += _ftmb_ol_received(ol, t);
        }
        fprintf(stderr, "%s: log held records %llu max %llu of %llu; following max %llu of %llu\n", me,
                (unsigned long long)kept, (unsigned long long)(follow.held_max > kept ? follow.held_max : kept),
                (unsigned long long)recs, (unsigned long long)follow.following_max,
                (unsigned long long)follow.following_stored);
    }
    _ftmb_ol_free(ol);
    free(sink.lat_ns);
    free(follow.lag_ns.v);
    free(follow.lag_rec.v);
    if (follow.region)
        _ftmb_region_unlink(session, "fol");
    _ftmb_region_unlink(session, "out");
    return rc;
}

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
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    int stats = 0, until_signal = 0;
    static const struct option opts[] = {
        {"session", required_argument, 0, 's'}, {"out", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"log", required_argument, 0, 'l'},
        {"rec-capacity", required_argument, 0, 'r'}, {"out-capacity", required_argument, 0, 'c'},
        {"linktype", required_argument, 0, 'k'}, {"stats", no_argument, 0, 'S'},
        {"until-signal", no_argument, 0, 'U'},
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
    int32_t reported_pid = 0;
    unsigned idle = 0;
    uint64_t last_master_check = 0;
    for (;;) {
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        _ftmb_region_heartbeat(region);
        /* Acquire pairs with the master's release in ftmb_exit: what it published is visible. */
        uint32_t state = atomic_load_explicit(&region->hdr.master_state, memory_order_acquire);
        uint64_t work = _ftmb_ol_poll(ol);
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
            if (!until_signal)
                break;
            /* Relaxed: master_pid is published with master_state, which we acquired above. */
            int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
            /* A pid that was never seen ATTACHED may be a new master caught between its store of
             * master_pid and of master_state (the DONE read is its predecessor's): its end counts
             * once it was seen attached or its process is gone. */
            if (pid != done_pid && (pid == attached_pid || !_ftmb_pid_alive(pid))) {
                /* keep serving: a replaying master may attach next */
                done_pid = pid;
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
        if (state == _FTMB_MASTER_ATTACHED && now - last_master_check > 1000000ull) { /* 1 ms: a failover backup waits for the log */
            last_master_check = now;
            /* Relaxed: master_pid is published with master_state, which we acquired above. */
            int32_t pid = atomic_load_explicit(&region->hdr.master_pid, memory_order_relaxed);
            if (pid != reported_pid && _ftmb_master_died(&region->hdr, pid)) {
                /* Everything the master published is in its rings: store all of it, so the log
                 * is a prefix of every thread's stream closed under the order on each object. */
                _ftmb_ol_master_died(ol);
                fprintf(stderr, "%s: the master (pid %d) of session %s died without ftmb_exit\n", me, (int)pid,
                        session);
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
    _ftmb_ol_free(ol);
    free(sink.lat_ns);
    _ftmb_region_unlink(session, "out");
    return rc;
}

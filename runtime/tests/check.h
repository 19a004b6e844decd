/*
 * Tiny test harness for the runtime's C tests: each case runs in its own forked child (a fresh
 * runtime: ftmb_init may run once per process) and prints "PASS name" or "FAIL name".
 * Also: an in-process session (both regions, made by the test) with an output-logger thread.
 */
#ifndef FTMB_CHECK_H
#define FTMB_CHECK_H

#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftmb_internal.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                      \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                                                    \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

static inline double stress_seconds(void)
{
    const char *s = getenv("STRESS_SECONDS");
    double v = s ? atof(s) : 2.0;
    return v > 0 ? v : 2.0;
}

static inline double mono_s(void) { return (double)_ftmb_now_ns(CLOCK_MONOTONIC) * 1e-9; }

/* Run fn in a forked child; stderr of the child goes to the file `errlog` if not NULL. */
static inline int run_forked(int (*fn)(void), const char *errlog, int *status_out)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (errlog && !freopen(errlog, "w", stderr))
            _exit(99);
        setvbuf(stderr, NULL, _IONBF, 0);
        int r = fn();
        fflush(NULL);
        _exit(r ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (status_out)
        *status_out = st;
    /* a failed case returns before session_close: remove the regions it made (named after its pid) */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "ftmb-test-%d-", (int)pid);
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            char path[512];
            snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int failures;
static inline void run_case(const char *name, int (*fn)(void))
{
    int rc = run_forked(fn, NULL, NULL);
    printf("%s %s%s\n", rc ? "FAIL" : "PASS", name, rc > 128 ? " (killed by a signal)" : "");
    fflush(stdout);
    failures += rc != 0;
}

static inline int finish(void)
{
    printf("%s: %d failed\n", failures ? "FAILED" : "OK", failures);
    return failures != 0;
}

static inline int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* ---- an in-process session: regions made here, an output-logger core on its own thread --------- */

struct test_session {
    char name[64];
    struct _ftmb_in_region *in;
    struct _ftmb_out_region *out;
    struct _ftmb_ol *ol;
    pthread_t thread;
    _Atomic int stop;
    _Atomic int drained;
    int manual; /* no logger thread: the test drives the output logger core itself */
};

/* The output region's every_ordered (ftmb_internal.h) for the next session_open: 1 makes every
 * ordered access log a claim (tests of each access's record). */
static int session_every_ordered;

static inline int session_open(struct test_session *s, uint32_t threads, uint32_t rec_cap, uint32_t out_cap,
                               struct _ftmb_ol_sink sink)
{
    snprintf(s->name, sizeof s->name, "test-%d-%ld", (int)getpid(), (long)random());
    size_t in_size = _ftmb_in_region_size(1, 64);
    s->in = _ftmb_region_create(s->name, "in", in_size);
    size_t out_size = _ftmb_out_region_size(threads, rec_cap, out_cap);
    s->out = _ftmb_region_create(s->name, "out", out_size);
    if (!s->in || !s->out)
        return -1;
    _ftmb_in_region_init(s->in, in_size, 1, 64, 1000000000ull, 100000);
    _ftmb_out_region_init(s->out, out_size, threads, rec_cap, out_cap);
    s->out->every_ordered = (uint32_t)session_every_ordered;
    atomic_store(&s->in->hdr.ready, 1);
    atomic_store(&s->out->hdr.ready, 1);
    s->ol = _ftmb_ol_new(s->out, sink, stderr);
    setenv("FTMB_SESSION", s->name, 1);
    /* The logger here is a thread of a test process on a machine that may be busy: do not declare
     * it dead because it was descheduled (tests of dead loggers set a short timeout themselves). */
    setenv("FTMB_PEER_TIMEOUT_MS", "600000", 1);
    return 0;
}

static void *session_logger(void *p)
{
    struct test_session *s = p;
    for (;;) {
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        atomic_store(&s->in->hdr.heartbeat_ns, now);
        atomic_store(&s->out->hdr.heartbeat_ns, now);
        int done = atomic_load(&s->out->hdr.master_state) == _FTMB_MASTER_DONE;
        uint64_t work = _ftmb_ol_poll(s->ol);
        if ((done && work == 0) || atomic_load(&s->stop))
            break;
        if (!work)
            sched_yield();
    }
    _ftmb_ol_poll(s->ol);
    atomic_store(&s->drained, 1);
    return NULL;
}

static inline void session_start_logger(struct test_session *s)
{
    pthread_create(&s->thread, NULL, session_logger, s);
}

/* After ftmb_exit: wait for the logger thread to drain everything. */
static inline void session_join_logger(struct test_session *s) { pthread_join(s->thread, NULL); }

static inline void session_close(struct test_session *s)
{
    _ftmb_region_unlink(s->name, "in");
    _ftmb_region_unlink(s->name, "out");
}

#endif /* FTMB_CHECK_H */

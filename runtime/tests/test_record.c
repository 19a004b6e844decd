/*
 * The record path, replay and modes, through the public ABI, with an in-process session whose
 * output logger runs on its own thread.
 */
#include "check.h"
#include "rt.h"
#include "../tools/tool_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/time.h>

#define NT 4
#define ITERS 2000

enum { OBJ_LOCKED = 1, OBJ_RACY = 2, OBJ_ATOMIC = 3, OBJ_SPIN = 4, OBJ_RW = 5, OBJ_RTE_SPIN = 6 };

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_spinlock_t spin;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static struct { volatile int locked; } rte_spin;
static uint64_t locked_counter, racy_counter, atomic_counter, spin_counter, rw_value, rte_counter;

/* What each thread observed; replay must observe exactly the same. */
struct obs {
    uint64_t locked[ITERS], racy[ITERS], atom[ITERS], rnd[ITERS / 16 + 1], rw[ITERS], rte[ITERS];
    long start_time;
    uint64_t trylock_fails;
    uint8_t random_bytes[13];
    long random_ret;
    uint64_t rte_tsc;
};
static struct obs obs[NT + 1];

struct payload {
    uint32_t thread, iter;
    uint64_t locked_seen;
};

static void *worker(void *arg)
{
    (void)arg;
    uint32_t me = ftmb_thread_index();
    struct obs *o = &obs[me];
    o->start_time = ftmb_time(NULL);
    o->random_ret = ftmb_getrandom(o->random_bytes, sizeof o->random_bytes, 0);
    o->rte_tsc = ftmb_rte_rdtsc();
    for (uint32_t i = 0; i < ITERS; i++) {
        ftmb_pthread_mutex_lock(&mtx, OBJ_LOCKED, 10);
        o->locked[i] = locked_counter++;
        ftmb_pthread_mutex_unlock(&mtx, OBJ_LOCKED, 11);

        ftmb_ordered_begin(OBJ_RACY, 20);
        o->racy[i] = racy_counter++;
        ftmb_ordered_end(OBJ_RACY);

        o->atom[i] = ftmb_atomic_fetch_add_8(&atomic_counter, 1, __ATOMIC_SEQ_CST, OBJ_ATOMIC, 30);

        if (i % 16 == 0)
            o->rnd[i / 16] = (uint64_t)ftmb_rand();

        while (ftmb_pthread_spin_trylock(&spin, OBJ_SPIN, 40) != 0)
            o->trylock_fails++;
        spin_counter++;
        ftmb_pthread_spin_unlock(&spin, OBJ_SPIN, 41);

        if (i % 8 == 0) { /* a writer now and then, readers in between */
            ftmb_pthread_rwlock_wrlock(&rw, OBJ_RW, 50);
            o->rw[i] = ++rw_value;
        } else {
            ftmb_pthread_rwlock_rdlock(&rw, OBJ_RW, 51);
            o->rw[i] = rw_value;
        }
        ftmb_pthread_rwlock_unlock(&rw, OBJ_RW, 52);

        ftmb_rte_spinlock_lock(&rte_spin, OBJ_RTE_SPIN, 60);
        o->rte[i] = rte_counter++;
        ftmb_rte_spinlock_unlock(&rte_spin, OBJ_RTE_SPIN, 61);

        struct ftmb_pkt *p = ftmb_pkt_alloc();
        struct payload pl = {me, i, o->locked[i]};
        memcpy(ftmb_pkt_data(p), &pl, sizeof pl);
        ftmb_pkt_set_len(p, sizeof pl);
        ftmb_pkt_tx_burst(0, &p, 1);
    }
    return NULL;
}

/* In passthrough the ordered region orders nothing (as in the original program): racy_counter
 * may lose updates there, so it is exact only when logging. */
static int run_workload(void)
{
    pthread_spin_init(&spin, 0);
    pthread_t th[NT];
    for (int i = 0; i < NT; i++)
        CHECK(ftmb_pthread_create(&th[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    CHECK(locked_counter == NT * ITERS && atomic_counter == NT * ITERS);
    CHECK(ftmb_mode() == FTMB_MODE_PASSTHROUGH || racy_counter == NT * ITERS);
    CHECK(spin_counter == NT * ITERS && rte_counter == NT * ITERS && rw_value == NT * (ITERS / 8));
    return 0;
}

/* ---- record ------------------------------------------------------------------------------------ */

struct released {
    uint32_t thread;
    uint64_t out_seq;
    uint64_t vec[FTMB_MAX_THREADS];
    uint16_t nvec;
    struct payload pl;
};
static struct released rel[NT * ITERS + 16];
static _Atomic uint64_t nrel;
static _Atomic int sink_errors;
static struct test_session S;

static void sink(void *ctx, const struct _ftmb_out_slot *s)
{
    (void)ctx;
    /* The release rule itself, checked at the moment of release. */
    for (uint32_t i = 0; i < s->nvec; i++)
        if (s->vec[i] > _ftmb_ol_received(S.ol, i))
            atomic_fetch_add(&sink_errors, 1);
    uint64_t k = atomic_fetch_add(&nrel, 1);
    if (k >= sizeof rel / sizeof rel[0])
        return;
    rel[k].thread = s->thread;
    rel[k].out_seq = s->out_seq;
    rel[k].nvec = s->nvec;
    memcpy(rel[k].vec, s->vec, sizeof rel[k].vec);
    memcpy(&rel[k].pl, s->data, sizeof rel[k].pl);
}

/* Where (thread, stream index) the record of object obj with sequence s is; -1 if missing. */
struct where {
    int32_t thread;
    uint64_t index;
};

static int index_object(uint32_t obj, unsigned kind, struct where *w, uint64_t n)
{
    for (uint64_t s = 0; s < n; s++)
        w[s].thread = -1;
    for (uint32_t t = 0; t <= NT; t++) {
        uint64_t cnt;
        const struct _ftmb_record *log = _ftmb_ol_log(S.ol, t, &cnt);
        for (uint64_t i = 0; i < cnt; i++) {
            if (_ftmb_rec_obj(log[i].head) != obj || _ftmb_rec_kind(log[i].head) != kind)
                continue;
            uint64_t s = kind == _FTMB_REC_ORDERED ? log[i].value & _FTMB_ORD_SEQ_MASK : log[i].value;
            CHECKF(s < n, "object %u sequence %llu out of range", obj, (unsigned long long)s);
            CHECKF(w[s].thread == -1, "object %u sequence %llu logged twice", obj, (unsigned long long)s);
            w[s].thread = (int32_t)t;
            w[s].index = i;
        }
    }
    for (uint64_t s = 0; s < n; s++)
        CHECKF(w[s].thread != -1, "object %u sequence %llu missing", obj, (unsigned long long)s);
    return 0;
}

/* The k-th record of kind/obj in thread t's stream must carry the value thread t observed. */
static int stream_matches(uint32_t t, uint32_t obj, unsigned kind, const uint64_t *seen)
{
    uint64_t cnt, k = 0;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, t, &cnt);
    for (uint64_t i = 0; i < cnt; i++)
        if (_ftmb_rec_obj(log[i].head) == obj && _ftmb_rec_kind(log[i].head) == kind) {
            uint64_t v = kind == _FTMB_REC_ORDERED ? log[i].value & _FTMB_ORD_SEQ_MASK : log[i].value;
            CHECKF(k < ITERS && v == seen[k],
                   "thread %u object %u access %llu: logged %llu, observed %llu", t, obj, (unsigned long long)k,
                   (unsigned long long)log[i].value, (unsigned long long)(k < ITERS ? seen[k] : 0));
            k++;
        }
    CHECK(k == ITERS);
    return 0;
}

static struct where wl[NT * ITERS];

static int record_run(const char *log_path, const char *obs_path)
{
    CHECK(session_open(&S, NT + 1, 1024, 64, (struct _ftmb_ol_sink){sink, NULL}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_mode() == FTMB_MODE_RECORD);
    CHECK(ftmb_thread_index() == 0);
    session_start_logger(&S);
    if (run_workload())
        return 1;
    ftmb_exit();
    session_join_logger(&S);
    CHECK(atomic_load(&sink_errors) == 0);
    CHECK(_ftmb_ol_corrupt(S.ol) == 0);
    if (log_path)
        CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    if (obs_path) {
        FILE *f = fopen(obs_path, "wb");
        CHECK(f && fwrite(obs, sizeof obs, 1, f) == 1 && fclose(f) == 0);
    }
    session_close(&S);
    return 0;
}

static int record_orders_and_release(void)
{
    session_every_ordered = 1; /* every access's record (replay_reproduces records runs without them) */
    if (record_run(NULL, NULL))
        return 1;
    /* Every packet released exactly once, in per-thread order. */
    CHECKF(atomic_load(&nrel) == NT * ITERS, "released %llu", (unsigned long long)atomic_load(&nrel));
    uint64_t last[FTMB_MAX_THREADS] = {0};
    for (uint64_t k = 0; k < NT * ITERS; k++) {
        CHECK(rel[k].out_seq == last[rel[k].thread] + 1);
        last[rel[k].thread] = rel[k].out_seq;
        CHECK(rel[k].pl.thread == rel[k].thread && rel[k].pl.iter == rel[k].out_seq - 1);
    }
    /* Each object's sequences are 0..N-1, once each, and the log order is the real order. */
    for (uint32_t obj = OBJ_LOCKED; obj <= OBJ_ATOMIC; obj++)
        if (index_object(obj, obj == OBJ_LOCKED ? _FTMB_REC_LOCK : _FTMB_REC_ORDERED, wl, NT * ITERS))
            return 1;
    for (uint32_t t = 1; t <= NT; t++) {
        if (stream_matches(t, OBJ_RTE_SPIN, _FTMB_REC_LOCK, obs[t].rte) ||
            stream_matches(t, OBJ_LOCKED, _FTMB_REC_LOCK, obs[t].locked) ||
            stream_matches(t, OBJ_RACY, _FTMB_REC_ORDERED, obs[t].racy) ||
            stream_matches(t, OBJ_ATOMIC, _FTMB_REC_ORDERED, obs[t].atom))
            return 1;
    }
    /* A packet sent after seeing counter value c covers every lock record with sequence <= c. */
    if (index_object(OBJ_LOCKED, _FTMB_REC_LOCK, wl, NT * ITERS))
        return 1;
    static uint64_t need[NT * ITERS][NT + 1];
    uint64_t cur[NT + 1] = {0};
    for (uint64_t s = 0; s < NT * ITERS; s++) {
        if (wl[s].index + 1 > cur[wl[s].thread])
            cur[wl[s].thread] = wl[s].index + 1;
        memcpy(need[s], cur, sizeof cur);
    }
    for (uint64_t k = 0; k < NT * ITERS; k++)
        for (uint32_t t = 0; t <= NT; t++) {
            uint64_t have = t < rel[k].nvec ? rel[k].vec[t] : 0;
            CHECKF(have >= need[rel[k].pl.locked_seen][t],
                   "packet %u/%u saw counter %llu but its vector covers %llu records of thread %u, not %llu",
                   rel[k].thread, rel[k].pl.iter, (unsigned long long)rel[k].pl.locked_seen,
                   (unsigned long long)have, t, (unsigned long long)need[rel[k].pl.locked_seen][t]);
        }
    return 0;
}

/* ---- replay ------------------------------------------------------------------------------------- */

static char log_path[128], obs_path[128];

static int record_for_replay(void) { return record_run(log_path, obs_path); }

static int replay_run(void)
{
    static struct obs want[NT + 1];
    FILE *f = fopen(obs_path, "rb");
    CHECK(f && fread(want, sizeof want, 1, f) == 1);
    fclose(f);
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_mode() == FTMB_MODE_REPLAY);
    if (run_workload())
        return 1;
    for (uint32_t t = 1; t <= NT; t++) {
        CHECKF(memcmp(&obs[t], &want[t], sizeof obs[t]) == 0, "thread %u observed something else on replay", t);
        CHECK(obs[t].start_time == want[t].start_time && obs[t].random_ret == 13);
    }
    return 0;
}

static int replay_reproduces(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-log-%d", (int)getpid());
    snprintf(obs_path, sizeof obs_path, "/tmp/ftmb-test-obs-%d", (int)getpid());
    int rc = run_forked(record_for_replay, NULL, NULL);
    CHECK(rc == 0);
    rc = run_forked(replay_run, NULL, NULL);
    unlink(obs_path);
    unlink(log_path);
    CHECK(rc == 0);
    return 0;
}

/* A replay whose program takes another object than the log says stops loudly. */
static int diverge_record(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    ftmb_pthread_mutex_lock(&mtx, 7, 1);
    ftmb_pthread_mutex_unlock(&mtx, 7, 2);
    ftmb_ordered_begin(8, 3);
    ftmb_ordered_end(8);
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_received(S.ol, 0) == 2);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int diverge_replay(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    static const ftmb_u32 ids[] = {1, 3}; /* what an instrumented file's constructor passes */
    static const char *const where[] = {"nat.c:41", "nat.c:57"};
    ftmb_register_file(ids, where, 2, NULL, 0);
    ftmb_ordered_begin(8, 3); /* the log starts with the lock on object 7 */
    return 0;                 /* not reached */
}

static int replay_detects_divergence(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-dlog-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-derr-%d", (int)getpid());
    CHECK(run_forked(diverge_record, NULL, NULL) == 0);
    int st;
    run_forked(diverge_replay, err, &st);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "replay diverged: thread 0 record 0 is a lock on object 7 (site 1 (nat.c:41)) but "
                             "the program does a ordered on object 8 at site 3 (nat.c:57)"));
    /* A corrupt record in the log is reported, never replayed. */
    int fd = open(log_path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    off_t at = (off_t)sizeof(struct _ftmb_log_file_hdr) + 8; /* the value of record 0 */
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x10;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    run_forked(diverge_replay, err, &st);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "record 0 fails its checksum"));
    unlink(err);
    unlink(log_path);
    return 0;
}

/* A failover whose log ends between two nested ordered begins (the master logged begin(8) and died
 * before begin(9)) goes live there: the thread counts itself out of the replay at once instead of
 * waiting for the handover inside the region it alone can end. The second begin(8) continues the
 * thread's run on object 8 (no record): the replay makes it past the log (its turn is free), and
 * begin(9), the first access of object 9 (a claim the log does not have), is live. */
static int nested_record(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    ftmb_ordered_begin(8, 1);
    ftmb_ordered_end(8);
    ftmb_ordered_begin(8, 2); /* the master dies in here */
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_received(S.ol, 0) == 1);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int nested_failover(void)
{
    alarm(10); /* a hang is the failure this case looks for */
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    setenv("FTMB_REPLAY_HANDOVER", "1", 1);
    CHECK(ftmb_init() == 0);
    ftmb_ordered_begin(8, 1);
    ftmb_ordered_end(8);
    ftmb_ordered_begin(8, 2); /* past the log: the run goes on */
    ftmb_ordered_begin(9, 3); /* live from here */
    CHECK(ftmb_mode() == FTMB_MODE_RECORD);
    ftmb_ordered_end(9);
    ftmb_ordered_end(8);
    CHECK(ftmb_mode() == FTMB_MODE_RECORD);
    session_close(&S);
    return 0;
}

static int failover_inside_nested_regions(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-nlog-%d", (int)getpid());
    CHECK(run_forked(nested_record, NULL, NULL) == 0);
    int rc = run_forked(nested_failover, NULL, NULL);
    unlink(log_path);
    CHECK(rc == 0);
    return 0;
}

/* A variable only a signal handler writes: its reads log their values, replay takes them from the
 * log (memory in the replaying process still holds the initial values: no signal comes there). */
#define EXT_READS 100
#define EXT_SIGNAL_AT 37
static volatile _Bool ext_stop;
static volatile uint16_t ext_u16;
static volatile int32_t ext_i32;
static volatile uint64_t ext_u64;

static void ext_handler(int sig)
{
    (void)sig;
    ext_stop = 1;
    ext_u16 = 0xbeef;
    ext_i32 = -123456789;
    ext_u64 = 0xfedcba9876543210ull;
}

/* Reads the flag EXT_READS times (a SIGUSR1 in record mode at EXT_SIGNAL_AT), then the others once. */
static int ext_workload(int raise_signal)
{
    for (int i = 0; i < EXT_READS; i++) {
        if (raise_signal && i == EXT_SIGNAL_AT)
            raise(SIGUSR1); /* delivered before raise returns: one thread */
        _Bool seen = *(const volatile _Bool *)ftmb_external_read(&ext_stop, sizeof ext_stop);
        CHECKF(seen == (i >= EXT_SIGNAL_AT), "read %d saw %d", i, (int)seen);
    }
    CHECK(*(const volatile uint16_t *)ftmb_external_read(&ext_u16, 2) == 0xbeef);
    CHECK(*(const volatile int32_t *)ftmb_external_read(&ext_i32, 4) == -123456789);
    CHECK(*(const volatile uint64_t *)ftmb_external_read(&ext_u64, 8) == 0xfedcba9876543210ull);
    return 0;
}

static int ext_record(void)
{
    CHECK(session_open(&S, 2, 1024, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    CHECK(signal(SIGUSR1, ext_handler) != SIG_ERR);
    if (ext_workload(1))
        return 1;
    _ftmb_ol_poll(S.ol);
    /* reads 1..36 and 38..99 of the flag see the value the read before saw: quiet, counted in the
     * next logged read (flag 0, flag 1 after 36 quiet reads, then the other three, the first after
     * 62 quiet reads) */
    CHECK(_ftmb_ol_received(S.ol, 0) == 5);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    CHECK(n == 5 && log[0].value == 0 && _ftmb_rec_site(log[0].head) == 0);
    CHECK(log[1].value == 1 && _ftmb_rec_site(log[1].head) == EXT_SIGNAL_AT - 1);
    CHECK(log[2].value == 0xbeef && _ftmb_rec_site(log[2].head) == EXT_READS - EXT_SIGNAL_AT - 1);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int ext_replay(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    if (ext_workload(0))
        return 1;
    CHECK(!ext_stop && ext_u16 == 0 && ext_i32 == 0 && ext_u64 == 0); /* the values came from the log */
    return 0;
}

/* Another kind of record where the log has an external read stops replay loudly. */
static int ext_replay_diverged(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    ftmb_ordered_begin(8, 3);
    return 0; /* not reached */
}

/* Fewer quiet reads of the flag than the log counts, then another variable: stops replay loudly. */
static int ext_replay_quiet_diverged(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    for (int i = 0; i < 10; i++)
        CHECK(*(const volatile _Bool *)ftmb_external_read(&ext_stop, sizeof ext_stop) == 0);
    ftmb_external_read(&ext_u16, 2);
    return 0; /* not reached */
}

static int ext_passthrough(void)
{
    unsetenv("FTMB_SESSION");
    unsetenv("FTMB_MODE");
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_external_read(&ext_i32, 4) == (const volatile void *)&ext_i32);
    return 0;
}

static int external_reads_replay_from_the_log(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-xlog-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-xerr-%d", (int)getpid());
    CHECK(run_forked(ext_record, NULL, NULL) == 0);
    int rc = run_forked(ext_replay, NULL, NULL);
    int st;
    run_forked(ext_replay_diverged, err, &st);
    unlink(log_path);
    CHECK(rc == 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "replay diverged: thread 0 record 0 is a nondet on object 6"));
    unlink(err);
    CHECK(run_forked(ext_record, NULL, NULL) == 0);
    run_forked(ext_replay_quiet_diverged, err, &st);
    unlink(log_path);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "replay diverged: thread 0 reads an external variable of 2 bytes where the log has "
                             "a read of the variable it read before"));
    unlink(err);
    CHECK(run_forked(ext_passthrough, NULL, NULL) == 0);
    return 0;
}


/* A loud record followed at once by a QUIET record (a transmit after quiet receives past the input's
 * end) whose count equals the loud record's own count: replay consumes the QUIET record only after
 * the quiet operations it counts, not while taking the loud record before it (then with the count the
 * loud record carried, the replay ended at a receive the log says was quiet: "is a receive but queue 0
 * has ended"). The queue's end is set by hand: the receives after it touch no input ring. */
static volatile uint32_t qx, qy, qz;

static int quiet_after_loud_workload(int record)
{
    _ftmb_rt.inq[0].eof = 1; /* past the end: each receive is quiet and moves the clock (io.c) */
    _ftmb_rt.inq[0].eof_time_ns = 0;
    struct ftmb_pkt *p[4];
    CHECK(*(const volatile uint32_t *)ftmb_external_read(&qx, 4) == 0); /* loud, carries 0 */
    CHECK(*(const volatile uint32_t *)ftmb_external_read(&qx, 4) == 0); /* quiet: 1 */
    if (record)
        qy = 7;
    CHECK(*(const volatile uint32_t *)ftmb_external_read(&qy, 4) == 7); /* loud, carries 1 */
    CHECK(ftmb_pkt_rx_burst(0, p, 4) == 0); /* quiet past the end: 1, the clock moved */
    struct ftmb_pkt *out = ftmb_pkt_alloc();
    ftmb_pkt_set_len(out, 60);
    ftmb_pkt_tx_burst(0, &out, 1); /* record: QUIET 1, right after the loud read of qy */
    for (int i = 0; i < 3; i++)
        CHECK(ftmb_pkt_rx_burst(0, p, 4) == 0); /* quiet: 3 */
    if (record)
        qz = 9;
    CHECK(*(const volatile uint32_t *)ftmb_external_read(&qz, 4) == 9); /* loud, carries 3 */
    return 0;
}

static int quiet_after_loud_record(void)
{
    CHECK(session_open(&S, 2, 1024, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    if (quiet_after_loud_workload(1))
        return 1;
    _ftmb_ol_poll(S.ol);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    CHECKF(n == 4, "%llu records", (unsigned long long)n);
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_ND && _ftmb_rec_site(log[1].head) == 1);
    CHECK(_ftmb_rec_kind(log[2].head) == _FTMB_REC_QUIET && log[2].value == 1);
    CHECK(_ftmb_rec_kind(log[3].head) == _FTMB_REC_ND && _ftmb_rec_site(log[3].head) == 3);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int quiet_after_loud_replay(void)
{
    CHECK(session_open(&S, 2, 1024, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    if (quiet_after_loud_workload(0))
        return 1;
    session_close(&S);
    return 0;
}

static int quiet_record_after_a_loud_one(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-qlog-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-qerr-%d", (int)getpid());
    CHECK(run_forked(quiet_after_loud_record, NULL, NULL) == 0);
    int st;
    int rc = run_forked(quiet_after_loud_replay, err, &st);
    unlink(log_path);
    CHECKF(rc == 0, "replay failed: %s", file_contains(err, "replay diverged") ? "diverged" : "see stderr");
    unlink(err);
    return 0;
}

/* Sleeps (runtime.c, "Sleeps"): record mode sleeps; a completed sleep is quiet (no record), an
 * interrupted one (SIGALRM, no SA_RESTART) logs its errno carrying the quiet count before it. Replay
 * does not sleep (no voluntary context switch for 100 recorded 1 ms sleeps; a recorded 30 s sleep that
 * a signal ended after 20 ms returns EINTR at once, with no signal in the replay) and every call
 * returns what it returned in the record. A replay whose sleep falls where the log has another
 * kind of loud record stops loudly. */
#define SLEEPS 100

static void on_alarm(int sig) { (void)sig; }

static long voluntary_switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nvcsw;
}

static int sleep_workload(int replay)
{
    struct timespec ms = {0, 1000000}, long_sleep = {30, 0}, rem = {7, 7};
    long before = voluntary_switches();
    for (int i = 0; i < SLEEPS; i++)
        CHECK(ftmb_nanosleep(&ms, NULL) == 0);
    CHECK(ftmb_usleep(1000) == 0 && ftmb_sleep(0) == 0);
    CHECK(ftmb_clock_nanosleep(CLOCK_MONOTONIC, 0, &ms, NULL) == 0);
    long switches = voluntary_switches() - before;
    if (replay)
        CHECKF(switches < SLEEPS / 10, "the replay slept: %ld voluntary context switches", switches);
    else
        CHECKF(switches >= SLEEPS, "the record did not sleep: %ld voluntary context switches", switches);
    if (!replay) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm; /* no SA_RESTART: the sleep returns EINTR */
        CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
        struct itimerval it = {{0, 0}, {0, 20000}};
        CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    }
    errno = 0;
    CHECK(ftmb_nanosleep(&long_sleep, &rem) == -1 && errno == EINTR); /* 30 s: only a replay is quick */
    CHECK(rem.tv_sec < 30 && (replay ? rem.tv_sec == 0 && rem.tv_nsec == 0 : rem.tv_sec > 0));
    CHECK(ftmb_nanosleep(&ms, NULL) == 0);
    ftmb_ordered_begin(3, 9);
    ftmb_ordered_end(3);
    return 0;
}

static int sleep_record(void)
{
    CHECK(session_open(&S, 2, 1024, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    if (sleep_workload(0))
        return 1;
    _ftmb_ol_poll(S.ol);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    /* the interrupted sleep (after SLEEPS + 3 quiet ones), the ordered access */
    CHECKF(n == 2, "%llu records", (unsigned long long)n);
    CHECK(_ftmb_rec_kind(log[0].head) == _FTMB_REC_ND && _ftmb_rec_obj(log[0].head) == _FTMB_ND_SLEEP);
    CHECK(log[0].value == EINTR && _ftmb_rec_site(log[0].head) == SLEEPS + 3);
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_ORDERED);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int sleep_replay(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    return sleep_workload(1);
}

/* The program reads an external variable where the log has the interrupted sleep. */
static int sleep_replay_diverged(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < SLEEPS + 3; i++)
        CHECK(ftmb_nanosleep(&ms, NULL) == 0);
    ftmb_external_read(&ext_u16, 2);
    return 0; /* not reached */
}

static int sleeps_replay_at_once(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-sleeplog-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-sleeperr-%d", (int)getpid());
    CHECK(run_forked(sleep_record, NULL, NULL) == 0);
    int rc = run_forked(sleep_replay, NULL, NULL);
    int st;
    run_forked(sleep_replay_diverged, err, &st);
    unlink(log_path);
    CHECK(rc == 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "replay diverged: thread 0 record 0 is a nondet on object 8"));
    unlink(err);
    return 0;
}

/* The verification replay's end-of-log heuristic (no record consumed for 500 ms while a thread waits
 * for a turn) must not fire while the thread whose turn comes first waits for a live but slow output
 * logger: thread 0 sends 40 packets inside an ordered region (its output ring holds 16) while the
 * logger does not run for 1.5 s, and thread 1 waits for the next turn on the object. Before the fix
 * thread 1 took that for the end ("which no thread reaches here") and the replay exited early. */
static _Atomic int slow_turn_done;
static int slow_replaying;

static void *slow_second(void *arg)
{
    (void)arg;
    while (!slow_replaying && !atomic_load(&slow_turn_done))
        sched_yield(); /* record: the second turn on the object */
    ftmb_ordered_begin(1, 7);
    ftmb_ordered_end(1);
    return NULL;
}

static int slow_workload(void)
{
    pthread_t b;
    CHECK(ftmb_pthread_create(&b, NULL, slow_second, NULL) == 0);
    ftmb_ordered_begin(1, 6);
    for (int i = 0; i < 40; i++) {
        struct ftmb_pkt *out = ftmb_pkt_alloc();
        ftmb_pkt_set_len(out, 60);
        ftmb_pkt_tx_burst(0, &out, 1);
    }
    ftmb_ordered_end(1);
    atomic_store(&slow_turn_done, 1);
    pthread_join(b, NULL);
    return 0;
}

static int slow_logger_record(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    session_start_logger(&S);
    if (slow_workload())
        return 1;
    ftmb_exit();
    session_join_logger(&S);
    uint64_t n0, n1;
    _ftmb_ol_log(S.ol, 0, &n0);
    _ftmb_ol_log(S.ol, 1, &n1);
    CHECKF(n0 == 1 && n1 == 1, "%llu and %llu records", (unsigned long long)n0, (unsigned long long)n1);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static void *late_logger(void *arg)
{
    struct timespec d = {1, 500000000};
    nanosleep(&d, NULL);
    return session_logger(arg);
}

static int slow_logger_replay(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC); /* alive, only late */
    atomic_store(&S.in->hdr.heartbeat_ns, now);
    atomic_store(&S.out->hdr.heartbeat_ns, now);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    setenv("FTMB_REPLAY_STOP_AT_END", "1", 1);
    CHECK(ftmb_init() == 0);
    pthread_create(&S.thread, NULL, late_logger, &S);
    slow_replaying = 1;
    if (slow_workload())
        return 1;
    ftmb_ordered_begin(2, 8); /* past its log: the replay ends here (exits) */
    return 1;                 /* not reached */
}

static int verifier_waits_for_a_slow_output_logger(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-slog-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-serr-%d", (int)getpid());
    CHECK(run_forked(slow_logger_record, NULL, NULL) == 0);
    int rc = run_forked(slow_logger_replay, err, NULL);
    unlink(log_path);
    CHECK(rc == 0);
    CHECKF(!file_contains(err, "which no thread reaches here"), "the replay ended early");
    CHECK(file_contains(err, "every log replayed"));
    unlink(err);
    return 0;
}

/* ---- modes and set-up errors ---------------------------------------------------------------------- */

static int passthrough_mode(void)
{
    unsetenv("FTMB_SESSION");
    unsetenv("FTMB_MODE");
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_mode() == FTMB_MODE_PASSTHROUGH);
    if (run_workload())
        return 1;
    uint32_t x = 5;
    CHECK(ftmb_atomic_fetch_sub_4(&x, 2, __ATOMIC_RELAXED, 9, 0) == 5 && x == 3);
    uint32_t e = 3;
    CHECK(ftmb_atomic_compare_exchange_4(&x, &e, 7, 1, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST, 9, 0) && x == 7);
    CHECK(!ftmb_atomic_compare_exchange_4(&x, &e, 8, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST, 9, 0) && e == 7);
    struct { volatile int32_t cnt; } a = {0};
    ftmb_rte_atomic32_add(&a, 5, 9, 0);
    CHECK(ftmb_rte_atomic32_sub_return(&a, 5, 9, 0) == 0);
    CHECK(ftmb_rte_atomic32_test_and_set(&a, 9, 0) == 1 && ftmb_rte_atomic32_read(&a, 9, 0) == 1);
    struct { volatile int locked; } sl = {0};
    CHECK(ftmb_rte_spinlock_trylock((void *)&sl, 9, 0) == 1 && ftmb_rte_spinlock_trylock((void *)&sl, 9, 0) == 0);
    ftmb_rte_spinlock_unlock((void *)&sl, 9, 0);
    CHECK(sl.locked == 0);
    struct ftmb_pkt *p = NULL;
    CHECK(ftmb_pkt_rx_burst(0, &p, 1) == 0 && ftmb_input_done(0) == 1);
    return 0;
}

/* Logged atomics give the builtins' results, for every size and operation. */
#define CHECK_ATOMICS(N, T)                                                                                  \
    do {                                                                                                     \
        T x = (T)0x5a, shadow = (T)0x5a, e, es;                                                              \
        for (unsigned k = 1; k < 40; k++) {                                                                  \
            T v = (T)(k * 0x3b + 7);                                                                          \
            CHECK(ftmb_atomic_fetch_add_##N(&x, v, 5, 20 + N, 0) == __atomic_fetch_add(&shadow, v, 5));      \
            CHECK(ftmb_atomic_fetch_sub_##N(&x, (T)k, 3, 20 + N, 0) == __atomic_fetch_sub(&shadow, (T)k, 3)); \
            CHECK(ftmb_atomic_fetch_and_##N(&x, (T)~k, 0, 20 + N, 0) == __atomic_fetch_and(&shadow, (T)~k, 0)); \
            CHECK(ftmb_atomic_fetch_or_##N(&x, (T)(k << 2), 4, 20 + N, 0) ==                                  \
                  __atomic_fetch_or(&shadow, (T)(k << 2), 4));                                               \
            CHECK(ftmb_atomic_fetch_xor_##N(&x, v, 5, 20 + N, 0) == __atomic_fetch_xor(&shadow, v, 5));      \
            CHECK(ftmb_atomic_add_fetch_##N(&x, v, 5, 20 + N, 0) == __atomic_add_fetch(&shadow, v, 5));      \
            CHECK(ftmb_atomic_xor_fetch_##N(&x, (T)k, 5, 20 + N, 0) == __atomic_xor_fetch(&shadow, (T)k, 5)); \
            CHECK(ftmb_atomic_exchange_##N(&x, v, 5, 20 + N, 0) == __atomic_exchange_n(&shadow, v, 5));      \
            e = es = (T)(k & 1 ? v : v + 1);                                                                 \
            CHECK(ftmb_atomic_compare_exchange_##N(&x, &e, (T)k, 1, 5, 5, 20 + N, 0) ==                      \
                  __atomic_compare_exchange_n(&shadow, &es, (T)k, 0, 5, 5));                                 \
            CHECK(e == es);                                                                                  \
            ftmb_atomic_store_##N(&x, (T)(x + 1), 3, 20 + N, 0);                                             \
            __atomic_store_n(&shadow, (T)(shadow + 1), 3);                                                   \
            CHECK(ftmb_atomic_load_##N(&x, 2, 20 + N, 0) == shadow);                                         \
        }                                                                                                    \
    } while (0)

static int atomics_logged_semantics(void)
{
    CHECK(session_open(&S, 2, 65536, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    CHECK_ATOMICS(1, uint8_t);
    CHECK_ATOMICS(2, uint16_t);
    CHECK_ATOMICS(4, uint32_t);
    CHECK_ATOMICS(8, uint64_t);
    _ftmb_ol_poll(S.ol);
    /* One claim per object (sizes 1, 2, 4, 8): the thread alone runs on each after its first access. */
    CHECK(_ftmb_ol_received(S.ol, 0) == 4);
    session_close(&S);
    return 0;
}

static int bad_mode(void)
{
    setenv("FTMB_MODE", "fast", 1);
    return ftmb_init() == -1 ? 0 : 1;
}

static int record_without_session(void)
{
    setenv("FTMB_MODE", "record", 1);
    unsetenv("FTMB_SESSION");
    return ftmb_init() == -1 ? 0 : 1;
}

static int session_missing(void)
{
    setenv("FTMB_MODE", "record", 1);
    setenv("FTMB_SESSION", "no-such-session", 1);
    setenv("FTMB_ATTACH_TIMEOUT_MS", "0", 1);
    return ftmb_init() == -1 ? 0 : 1;
}

static int setup_errors(void)
{
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-err-%d", (int)getpid());
    CHECK(run_forked(bad_mode, err, NULL) == 0);
    CHECK(file_contains(err, "FTMB_MODE=fast: expected passthrough, record, replay, standby or follow"));
    CHECK(run_forked(record_without_session, err, NULL) == 0);
    CHECK(file_contains(err, "FTMB_MODE=record needs FTMB_SESSION"));
    CHECK(run_forked(session_missing, err, NULL) == 0);
    CHECK(file_contains(err, "no output logger (/dev/shm/ftmb-no-such-session.out)"));
    unlink(err);
    return 0;
}

/* ---- the arena --------------------------------------------------------------------------------------- */

static void *arena_worker(void *arg)
{
    uintptr_t *out = arg;
    void *p[64];
    for (int i = 0; i < 64; i++)
        p[i] = ftmb_state_alloc((size_t)(i * 37 + 1));
    for (int i = 0; i < 64; i += 2)
        ftmb_state_free(p[i]);
    for (int i = 0; i < 64; i++)
        out[i] = (uintptr_t)ftmb_state_alloc((size_t)(i * 11 + 3));
    return NULL;
}

static int arena_deterministic(void)
{
    unsetenv("FTMB_MODE");
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_state_contains((void *)0x6f0000000000ull + 4096 * 1024 + 1));
    /* The same calls give the same addresses whatever the interleaving of threads. */
    static uintptr_t a[2][64];
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ftmb_pthread_create(&t[i], NULL, arena_worker, a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 64; i++)
        CHECK(ftmb_state_contains((void *)a[0][i]) && a[0][i] % 16 == 0);
    void *big = ftmb_state_calloc(1, 3 << 20);
    CHECK(big && ftmb_state_contains(big) && ((char *)big)[(3 << 20) - 1] == 0);
    void *al = ftmb_state_aligned_alloc(4096, 100);
    CHECK(al && (uintptr_t)al % 4096 == 0);
    ftmb_state_free(al);
    char *r = ftmb_state_alloc(10);
    memcpy(r, "0123456789", 10);
    r = ftmb_state_realloc(r, 5000);
    CHECK(r && memcmp(r, "0123456789", 10) == 0);
    return 0;
}

static int arena_same_addresses_run_to_run_child(void)
{
    unsetenv("FTMB_MODE");
    if (ftmb_init() != 0)
        return 1;
    pthread_t t[2];
    static uintptr_t a[2][64];
    for (int i = 0; i < 2; i++)
        ftmb_pthread_create(&t[i], NULL, arena_worker, a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    FILE *f = fopen(obs_path, "ab");
    fwrite(a, sizeof a, 1, f);
    fclose(f);
    return 0;
}

static int arena_same_addresses_run_to_run(void)
{
    snprintf(obs_path, sizeof obs_path, "/tmp/ftmb-test-arena-%d", (int)getpid());
    unlink(obs_path);
    CHECK(run_forked(arena_same_addresses_run_to_run_child, NULL, NULL) == 0);
    CHECK(run_forked(arena_same_addresses_run_to_run_child, NULL, NULL) == 0);
    static uintptr_t two[2][2][64];
    FILE *f = fopen(obs_path, "rb");
    CHECK(f && fread(two, sizeof two, 1, f) == 1);
    fclose(f);
    unlink(obs_path);
    CHECK(memcmp(two[0], two[1], sizeof two[0]) == 0);
    return 0;
}

/* ---- receive: burst composition, virtual time, EOF ------------------------------------------------- */

static void put_entry(struct _ftmb_ring *r, uint64_t seq, uint16_t kind, uint64_t time_ns, uint32_t tag)
{
    struct _ftmb_in_entry *e = _ftmb_ring_reserve(r);
    e->seq = seq;
    e->kind = kind;
    e->time_ns = time_ns;
    e->queue = 0;
    e->len = kind == _FTMB_IN_PKT ? 4 : 0;
    memcpy(e->data, &tag, 4);
    _ftmb_ring_publish(r, 1);
}

static int receive_path(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    struct _ftmb_ring il;
    _ftmb_ring_attach(&il, S.in, &S.in->queue[0].ring, 1);
    struct ftmb_pkt *p[8];
    struct timespec ts;
    long before = ftmb_time(NULL); /* no input yet: a real, logged clock read */
    CHECK(ftmb_pkt_rx_burst(0, p, 8) == 0); /* empty poll: nothing logged */
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_received(S.ol, 0) == 1);
    put_entry(&il, 0, _FTMB_IN_PKT, 5000000000ull, 100);
    put_entry(&il, 1, _FTMB_IN_TICK, 6000000000ull, 0);
    put_entry(&il, 2, _FTMB_IN_PKT, 7000000000ull, 101);
    put_entry(&il, 3, _FTMB_IN_PKT, 8000000000ull, 102);
    CHECK(ftmb_pkt_rx_burst(0, p, 2) == 2); /* pkt, tick, pkt: three entries; one packet stays */
    uint32_t tag;
    memcpy(&tag, ftmb_pkt_data(p[1]), 4);
    CHECK(tag == 101 && ftmb_pkt_len(p[1]) == 4);
    CHECK(ftmb_clock_gettime(1, &ts) == 0 && ts.tv_sec == 7 && ts.tv_nsec == 0); /* virtual time */
    CHECK(ftmb_rte_rdtsc() == 7000000000ull); /* the session's tsc_hz is 1 GHz here */
    ftmb_pkt_free(p[0]);
    ftmb_pkt_free(p[1]);
    CHECK(ftmb_pkt_rx_burst(0, p, 8) == 1);
    ftmb_pkt_free(p[0]);
    put_entry(&il, 4, _FTMB_IN_TICK, 8500000000ull, 0);
    CHECK(ftmb_pkt_rx_burst(0, p, 8) == 0); /* a tick alone: no packet, but consumed and logged */
    CHECK(ftmb_time(NULL) == 8);
    put_entry(&il, 5, _FTMB_IN_EOF, 9000000000ull, 0);
    CHECK(!ftmb_input_done(0));
    CHECK(ftmb_pkt_rx_burst(0, p, 8) == 0);
    CHECK(ftmb_input_done(0));
    CHECK(ftmb_time(NULL) == 9);
    CHECK(ftmb_pkt_rx_burst(0, p, 8) == 0 && ftmb_pkt_rx_burst(0, p, 8) == 0); /* past the end: quiet, */
    CHECK(ftmb_clock_gettime(0, &ts) == 0 && ts.tv_sec == 9 && ts.tv_nsec == 2 * (long)_FTMB_EOF_TICK_NS);
    /* time goes on by a tick per receive */
    struct ftmb_pkt *out = ftmb_pkt_alloc();
    ftmb_pkt_set_len(out, 60);
    ftmb_pkt_tx_burst(0, &out, 1); /* it may depend on those times: their count is logged first */
    _ftmb_ol_poll(S.ol);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    CHECKF(n == 6, "%llu records", (unsigned long long)n);
    CHECK(_ftmb_rec_kind(log[5].head) == _FTMB_REC_QUIET && log[5].value == 2);
    CHECK(_ftmb_rec_kind(log[3].head) == _FTMB_REC_RX && _ftmb_rec_site(log[3].head) == 1 && log[3].value == 4);
    CHECK(_ftmb_rec_kind(log[4].head) == _FTMB_REC_RX && _ftmb_rec_site(log[4].head) == 1 && log[4].value == 5);
    CHECK(_ftmb_rec_kind(log[0].head) == _FTMB_REC_ND && (long)(log[0].value / 1000000000ull) == before);
    /* the empty poll before it is counted in the top bits of its value: one quiet receive */
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_RX && _ftmb_rec_site(log[1].head) == 3 &&
          log[1].value == (1ull << _FTMB_RX_SEQ_BITS));
    CHECK(_ftmb_rec_kind(log[2].head) == _FTMB_REC_RX && _ftmb_rec_site(log[2].head) == 1 && log[2].value == 3);
    session_close(&S);
    return 0;
}

/* ---- the inline fast path (ftmb/ftmb.h, ABI v3 on): a receiving thread's PALs in the program --------- */

static int inline_fast_path(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    ftmb_held_access(5, 1); /* before any receive: no fast view, the runtime's general path */
    CHECK(ftmb_fast_thread == NULL);
    struct _ftmb_ring il;
    _ftmb_ring_attach(&il, S.in, &S.in->queue[0].ring, 1);
    put_entry(&il, 0, _FTMB_IN_PKT, 5000000000ull, 100);
    struct ftmb_pkt *p[2];
    CHECK(ftmb_pkt_rx_burst(0, p, 2) == 1); /* a receiver now: its view is set at the receive */
    ftmb_pkt_free(p[0]);
    CHECK(ftmb_fast_thread == &_ftmb_self->fast && ftmb_fast_thread->objs == (uint64_t *)(void *)_ftmb_rt.objs);
    uint64_t at = ftmb_fast_thread->local;
    ftmb_held_access(5, 2);
    ftmb_ordered_begin(6, 3);
    ftmb_ordered_end(6);
    ftmb_ordered_begin(6, 4);
    ftmb_ordered_end(6);
    uint64_t x = 40;
    CHECK(ftmb_atomic_fetch_add_8(&x, 2, __ATOMIC_SEQ_CST, 7, 5) == 40 && x == 42);
    uint16_t y = 1, e = 2;
    CHECK(!ftmb_atomic_compare_exchange_2(&y, &e, 9, 1, 5, 5, 8, 6) && e == 1 && y == 1); /* never spurious */
    CHECK(ftmb_atomic_compare_exchange_2(&y, &e, 9, 1, 5, 5, 8, 7) && y == 9);
    CHECK(ftmb_atomic_sub_fetch_2(&y, 4, 0, 8, 8) == 5 && ftmb_atomic_load_2(&y, 2, 8, 9) == 5);
    /* the held access and one claim per object (the first access of each), written by the inline
     * code; the later accesses of 6 and 8 continue the thread's run and log nothing */
    CHECK(ftmb_fast_thread->local == at + 4);
    CHECK(atomic_load(&_ftmb_rt.objs[6].word) == 4); /* two ordered accesses: sequence 2, unlocked */
    CHECK(ftmb_fast_thread->run_at == at + 5); /* the run's latest access came after the fourth record */
    struct ftmb_pkt *out = ftmb_pkt_alloc();
    ftmb_pkt_set_len(out, 60);
    ftmb_pkt_tx_burst(0, &out, 1);
    _ftmb_ol_poll(S.ol);
    CHECKF(_ftmb_ol_corrupt(S.ol) == 0, "%llu corrupt records", (unsigned long long)_ftmb_ol_corrupt(S.ol));
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    CHECKF(n == 7, "%llu records", (unsigned long long)n); /* held, RX, the fast path's four, the transmit's */
    /* claims: sequence 0, no earlier mark, no quiet count in the site field */
    static const struct { unsigned kind, obj, site; uint64_t value; } want[] = {
        {_FTMB_REC_HELD, 5, 2, 1},
        {_FTMB_REC_ORDERED, 6, 0, 0},
        {_FTMB_REC_ORDERED, 7, 0, 0},
        {_FTMB_REC_ORDERED, 8, 0, 0},
    };
    CHECK(_ftmb_rec_kind(log[0].head) == _FTMB_REC_HELD && log[0].value == 0);
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_RX);
    CHECK(atomic_load(&_ftmb_rt.objs[8].word) == 8 && _ftmb_self->own[8] == 5); /* four accesses: run mark 3 + 2 */
    for (unsigned i = 0; i < 4; i++)
        CHECKF(_ftmb_rec_kind(log[2 + i].head) == want[i].kind && _ftmb_rec_obj(log[2 + i].head) == want[i].obj &&
                   _ftmb_rec_site(log[2 + i].head) == want[i].site && log[2 + i].value == want[i].value,
               "record %u: head %#llx value %llu", 2 + i, (unsigned long long)log[2 + i].head,
               (unsigned long long)log[2 + i].value);
    CHECK(_ftmb_rec_kind(log[6].head) == _FTMB_REC_TX); /* the packet may depend on the run (_ftmb_tx_records) */
    session_close(&S);
    return 0;
}

/* ---- faults: a corrupt record, a dead output logger, a dead input logger ----------------------------- */

/* Memory allocated before ftmb_init gives the main thread its index early; its records still count. */
static int early_thread_index(void)
{
    void *early = ftmb_state_alloc(64); /* claims thread index 0 before any session exists */
    CHECK(early && ftmb_state_contains(early));
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    CHECK(ftmb_thread_index() == 0);
    ftmb_held_access(5, 1);
    struct ftmb_pkt *p = ftmb_pkt_alloc();
    ftmb_pkt_set_len(p, 60);
    ftmb_pkt_tx_burst(0, &p, 1);
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_received(S.ol, 0) == 1);
    CHECK(_ftmb_ol_pending(S.ol) == 0);
    session_close(&S);
    return 0;
}

static int corrupt_record_held(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    ftmb_held_access(5, 1);
    ftmb_held_access(5, 2);
    ftmb_held_access(5, 3);
    struct _ftmb_record *ring = (struct _ftmb_record *)((uint8_t *)S.out + S.out->thread[0].rec.buf_offset);
    ring[1].value ^= 4; /* damaged in transit */
    struct ftmb_pkt *p = ftmb_pkt_alloc();
    ftmb_pkt_set_len(p, 60);
    ftmb_pkt_tx_burst(0, &p, 1);
    fprintf(stderr, "(the checksum message below is expected)\n");
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_corrupt(S.ol) == 1);
    CHECK(_ftmb_ol_received(S.ol, 0) == 1);
    CHECK(_ftmb_ol_pending(S.ol) == 1); /* the packet depends on all three: held */
    session_close(&S);
    return 0;
}

/* Outputs regenerated by replay that were already released are dropped by output sequence. */
static uint64_t dup_released;
static void count_release(void *ctx, const struct _ftmb_out_slot *s)
{
    (void)ctx;
    (void)s;
    dup_released++;
}

static int duplicate_outputs_dropped(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){count_release, NULL}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    struct ftmb_pkt *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ftmb_pkt_alloc();
        ftmb_pkt_set_len(p[i], 60);
    }
    ftmb_pkt_tx_burst(0, p, 3); /* output sequences 1, 2, 3 */
    _ftmb_ol_poll(S.ol);
    CHECK(dup_released == 3 && _ftmb_ol_released_seq(S.ol, 0) == 3);
    _ftmb_threads[0].out_seq = 1; /* as if replay regenerated outputs 2, 3 and then a new 4 */
    for (int i = 0; i < 3; i++) {
        p[i] = ftmb_pkt_alloc();
        ftmb_pkt_set_len(p[i], 60);
    }
    ftmb_pkt_tx_burst(0, p, 3);
    _ftmb_ol_poll(S.ol);
    CHECK(_ftmb_ol_duplicates(S.ol) == 2);
    CHECK(dup_released == 4 && _ftmb_ol_released_seq(S.ol, 0) == 4);
    session_close(&S);
    return 0;
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

static int output_logger_dies(void)
{
    CHECK(session_open(&S, 2, 64, 4, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    setenv("FTMB_PEER_TIMEOUT_MS", "100", 1);
    CHECK(ftmb_init() == 0);
    atomic_store(&S.out->hdr.owner_pid, dead_pid());
    double t0 = mono_s();
    for (int i = 0; i < 1000; i++) /* far more than the 64-record ring holds */
        ftmb_held_access(5, 1);
    for (int i = 0; i < 20; i++) {
        struct ftmb_pkt *p = ftmb_pkt_alloc();
        ftmb_pkt_set_len(p, 60);
        ftmb_pkt_tx_burst(0, &p, 1);
    }
    CHECK(mono_s() - t0 < 5.0);
    CHECK(atomic_load(&_ftmb_rt.out_dead) == 1);
    session_close(&S);
    return 0;
}

static int input_logger_dies(void)
{
    CHECK(session_open(&S, 2, 64, 4, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    setenv("FTMB_PEER_TIMEOUT_MS", "100", 1);
    CHECK(ftmb_init() == 0);
    atomic_store(&S.in->hdr.owner_pid, dead_pid());
    double t0 = mono_s();
    struct ftmb_pkt *p[4];
    while (!ftmb_input_done(0)) {
        CHECK(ftmb_pkt_rx_burst(0, p, 4) == 0);
        CHECK(mono_s() - t0 < 5.0);
    }
    session_close(&S);
    return 0;
}

static int logger_death_noticed(void)
{
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-dead-%d", (int)getpid());
    CHECK(run_forked(output_logger_dies, err, NULL) == 0);
    CHECK(file_contains(err, "the output logger of session"));
    CHECK(file_contains(err, "is gone (no heartbeat for 100 ms)"));
    CHECK(run_forked(input_logger_dies, err, NULL) == 0);
    CHECK(file_contains(err, "the input logger of session"));
    unlink(err);
    return 0;
}

/* ---- the input logger serves again from any retained position ------------------------------------- */

static int rx_tags(uint32_t *tags, int max, int *eof_seen)
{
    int got = 0;
    double deadline = mono_s() + 10;
    struct ftmb_pkt *p[8];
    while (got < max && !ftmb_input_done(0)) {
        uint16_t n = ftmb_pkt_rx_burst(0, p, (uint16_t)(max - got < 8 ? max - got : 8));
        for (uint16_t i = 0; i < n; i++) {
            memcpy(&tags[got++], (uint8_t *)ftmb_pkt_data(p[i]) + 14, 4);
            ftmb_pkt_free(p[i]);
        }
        if (mono_s() > deadline)
            break;
    }
    *eof_seen = ftmb_input_done(0);
    return got;
}

static int input_logger_serves_again(void)
{
    char pcap[128];
    snprintf(pcap, sizeof pcap, "/tmp/ftmb-test-in-%d.pcap", (int)getpid());
    FILE *f = _ftmb_pcap_create(pcap, 1);
    CHECK(f);
    for (uint32_t i = 0; i < 50; i++) {
        uint8_t frame[60] = {0};
        frame[12] = 0x88; /* not IP: one flow */
        memcpy(frame + 14, &i, 4);
        CHECK(_ftmb_pcap_write(f, 1000000000ull * i, frame, sizeof frame) == 0);
    }
    CHECK(fclose(f) == 0);
    char name[64];
    snprintf(name, sizeof name, "test-il-%d", (int)getpid());
    size_t out_size = _ftmb_out_region_size(2, 256, 16);
    struct _ftmb_out_region *out = _ftmb_region_create(name, "out", out_size);
    CHECK(out);
    _ftmb_out_region_init(out, out_size, 2, 256, 16);
    _ftmb_region_set_ready(out);
    CHECK(access("build/ftmb-input-logger", X_OK) == 0);
    pid_t il = fork();
    if (il == 0) {
        execl("build/ftmb-input-logger", "ftmb-input-logger", "--session", name, "--in", pcap, "--capacity", "8",
              "--tick-us", "10000000", (char *)NULL);
        _exit(127);
    }
    setenv("FTMB_MODE", "record", 1);
    setenv("FTMB_SESSION", name, 1);
    setenv("FTMB_PEER_TIMEOUT_MS", "60000", 1);
    CHECK(ftmb_init() == 0);
    uint32_t tags[64];
    int eof;
    CHECK(rx_tags(tags, 20, &eof) == 20 && !eof);
    for (uint32_t i = 0; i < 20; i++)
        CHECK(tags[i] == i);
    /* back to entry 5 (the ring held more than we took: those are dropped and served again) */
    CHECK(_ftmb_input_rewind(0, 5) == 0);
    int n = rx_tags(tags, 64, &eof);
    CHECKF(n == 45 && eof, "got %d packets, eof %d", n, eof);
    for (int i = 0; i < n; i++)
        CHECK(tags[i] == (uint32_t)i + 5);
    /* after the end: everything again, from the start */
    CHECK(_ftmb_input_rewind(0, 0) == 0);
    CHECK(rx_tags(tags, 64, &eof) == 50 && eof);
    for (uint32_t i = 0; i < 50; i++)
        CHECK(tags[i] == i);
    ftmb_exit();
    int st;
    waitpid(il, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    _ftmb_region_unlink(name, "out");
    unlink(pcap);
    return 0;
}

/* ---- thread roots: spawn wrappers start only the routines the instrumented files registered --------- */

static void *stranger(void *arg) { return arg; } /* registered by no file */

static int spawn_stranger(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    CHECK(ftmb_init() == 0);
    pthread_t t;
    CHECK(ftmb_pthread_create(&t, NULL, stranger, NULL) == 0);
    pthread_join(t, NULL);
    session_close(&S);
    return 0;
}

static int unknown_start_routine_refused(void)
{
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-rerr-%d", (int)getpid());
    int st;
    setenv("FTMB_MODE", "record", 1);
    run_forked(spawn_stranger, err, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 70);
    CHECK(file_contains(err, "ftmb: pthread_create starts ") &&
          file_contains(err, ", not a thread root of the analysis (its accesses are not instrumented"));
    setenv("FTMB_ALLOW_UNKNOWN_THREADS", "1", 1);
    CHECK(run_forked(spawn_stranger, err, NULL) == 0);
    CHECK(file_contains(err, "ftmb: warning: pthread_create starts ") &&
          file_contains(err, "(allowed by FTMB_ALLOW_UNKNOWN_THREADS=1)"));
    unsetenv("FTMB_ALLOW_UNKNOWN_THREADS");
    setenv("FTMB_MODE", "passthrough", 1); /* nothing is logged: nothing to refuse */
    CHECK(run_forked(spawn_stranger, err, NULL) == 0);
    CHECK(!file_contains(err, "not a thread root"));
    unlink(err);
    /* a registered routine starts in record mode (worker: run_workload in record_orders_and_release) */
    return 0;
}

/* ---- quiet-capable ordered calls (an empty ring dequeue) ------------------------------------------ */

/* A queue the program's calls on object OBJ_TQ reach only through quiet-capable ordered calls
 * (dequeue: quiet when it returns 0, writes nothing then) and ordinary ordered regions (enqueue),
 * as the rewriter emits them for rte_ring_dequeue_burst and rte_ring_enqueue_burst. tq_calls counts
 * the dequeues really made: replay makes none of the quiet ones. */
#define OBJ_TQ 12
#define TQ_ITEMS 300
static uint32_t tq_buf[1024], tq_head, tq_tail;
static _Atomic uint64_t tq_calls;

static unsigned tq_dequeue_raw(uint32_t *out)
{
    atomic_fetch_add(&tq_calls, 1);
    if (tq_head == tq_tail)
        return 0;
    *out = tq_buf[tq_head++ % 1024];
    return 1;
}

static unsigned tq_dequeue(uint32_t *out, ftmb_site_t site) /* what the rewriter emits around the call */
{
    unsigned v;
    if (ftmb_ordered_quiet_begin(OBJ_TQ, site))
        v = 0;
    else {
        v = tq_dequeue_raw(out);
        ftmb_ordered_quiet_end(v == 0, OBJ_TQ, site);
    }
    return v;
}

static void tq_enqueue(uint32_t x, int really)
{
    ftmb_ordered_begin(OBJ_TQ, 70);
    if (really)
        tq_buf[tq_tail++ % 1024] = x;
    ftmb_ordered_end(OBJ_TQ);
}

/* Thread 1 produces TQ_ITEMS items, yielding in between; thread 2 polls until it has them all and
 * notes how many empty polls came before each item: what replay must observe again. */
static uint32_t tq_got[TQ_ITEMS], tq_empty[TQ_ITEMS];

static void *tq_producer(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < TQ_ITEMS; i++) {
        tq_enqueue(1000 + i, 1);
        for (uint32_t k = 0; k < i % 7; k++)
            sched_yield();
    }
    return NULL;
}

static void *tq_consumer(void *arg)
{
    (void)arg;
    for (uint32_t n = 0, empty = 0; n < TQ_ITEMS;) {
        uint32_t x;
        if (tq_dequeue(&x, 71) == 0) {
            empty++;
            continue;
        }
        tq_got[n] = x;
        tq_empty[n++] = empty;
        empty = 0;
    }
    return NULL;
}

static int tq_workload(void)
{
    pthread_t a, b;
    CHECK(ftmb_pthread_create(&a, NULL, tq_producer, NULL) == 0);
    CHECK(ftmb_pthread_create(&b, NULL, tq_consumer, NULL) == 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    for (uint32_t i = 0; i < TQ_ITEMS; i++)
        CHECKF(tq_got[i] == 1000 + i, "item %u is %u", i, tq_got[i]);
    return 0;
}

static int tq_record(void)
{
    CHECK(session_open(&S, 3, 4096, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    if (tq_workload())
        return 1;
    _ftmb_ol_poll(S.ol);
    uint64_t n, quiet = 0, loud = 0, empty = 0;
    for (uint32_t i = 0; i < TQ_ITEMS; i++)
        empty += tq_empty[i];
    /* The consumer (thread 2) logs one ORDQ record per item and nothing for its empty polls: their
     * count travels in the ORDQ records (a QUIET record before one when it exceeds 16 bits). */
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 2, &n);
    for (uint64_t i = 0; i < n; i++) {
        unsigned k = _ftmb_rec_kind(log[i].head);
        CHECKF(k == _FTMB_REC_ORDQ || k == _FTMB_REC_QUIET, "record %llu is of kind %u", (unsigned long long)i, k);
        if (k == _FTMB_REC_ORDQ) {
            loud++;
            quiet += _ftmb_rec_site(log[i].head);
        } else
            quiet += log[i].value;
    }
    CHECKF(loud == TQ_ITEMS && quiet == empty, "%llu loud, %llu quiet counted, %llu empty polls",
           (unsigned long long)loud, (unsigned long long)quiet, (unsigned long long)empty);
    CHECK(atomic_load(&tq_calls) == TQ_ITEMS + empty);
    /* The empty polls did not advance the object: its sequences are 0..2*TQ_ITEMS-1. The producer
     * logs claims only (its enqueues between two of the consumer's dequeues are one run). */
    uint64_t np;
    const struct _ftmb_record *plog = _ftmb_ol_log(S.ol, 1, &np);
    CHECK(np >= 1 && np <= TQ_ITEMS);
    static uint8_t seen[2 * TQ_ITEMS];
    for (uint64_t i = 0; i < np; i++) {
        uint64_t seq = plog[i].value & _FTMB_ORD_SEQ_MASK;
        CHECK(_ftmb_rec_kind(plog[i].head) == _FTMB_REC_ORDERED && seq < 2 * TQ_ITEMS && !seen[seq]++);
    }
    for (uint64_t i = 0; i < n; i++)
        if (_ftmb_rec_kind(log[i].head) == _FTMB_REC_ORDQ)
            CHECK(log[i].value < 2 * TQ_ITEMS && !seen[log[i].value]++);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    FILE *f = fopen(obs_path, "wb");
    CHECK(f && fwrite(tq_empty, sizeof tq_empty, 1, f) == 1);
    fclose(f);
    session_close(&S);
    return 0;
}

static int tq_replay(void)
{
    static uint32_t want[TQ_ITEMS];
    FILE *f = fopen(obs_path, "rb");
    CHECK(f && fread(want, sizeof want, 1, f) == 1);
    fclose(f);
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    if (tq_workload())
        return 1;
    for (uint32_t i = 0; i < TQ_ITEMS; i++)
        CHECKF(tq_empty[i] == want[i], "item %u: %u empty polls before it in replay, %u in the record", i,
               tq_empty[i], want[i]);
    CHECKF(atomic_load(&tq_calls) == TQ_ITEMS, "replay made %llu dequeues, not the %u loud ones",
           (unsigned long long)atomic_load(&tq_calls), TQ_ITEMS);
    return 0;
}

/* A failover in the middle of a quiet run: the master polled an empty queue 5 times, enqueued (a
 * claim, loud: it carries the 5), dequeued (loud, carrying 0), and died while polling again (3 quiet polls nobody logged). The
 * backup replays the 5 quiet polls without making them, the enqueue and the loud dequeue, then goes
 * live at its next poll and records from there. */
static int tq_failover_record(void)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    uint32_t x;
    for (int i = 0; i < 5; i++)
        CHECK(tq_dequeue(&x, 71) == 0);
    tq_enqueue(7, 1);
    CHECK(tq_dequeue(&x, 71) == 1 && x == 7);
    for (int i = 0; i < 3; i++)
        CHECK(tq_dequeue(&x, 71) == 0);
    _ftmb_ol_poll(S.ol);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    CHECKF(n == 2, "%llu records", (unsigned long long)n);
    CHECK(_ftmb_rec_kind(log[0].head) == _FTMB_REC_ORDERED && _ftmb_rec_site(log[0].head) == 5 &&
          (log[0].value & _FTMB_ORD_SEQ_MASK) == 0);
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_ORDQ && _ftmb_rec_site(log[1].head) == 0 &&
          log[1].value == 1 && _ftmb_rec_obj(log[1].head) == OBJ_TQ);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int tq_failover(void)
{
    alarm(10);
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    setenv("FTMB_REPLAY_HANDOVER", "1", 1);
    CHECK(ftmb_init() == 0);
    uint32_t x = 0;
    for (int i = 0; i < 5; i++)
        CHECK(tq_dequeue(&x, 71) == 0);
    CHECK(atomic_load(&tq_calls) == 0); /* quiet in the log: not made */
    tq_enqueue(7, 1);
    CHECK(tq_dequeue(&x, 71) == 1 && x == 7 && atomic_load(&tq_calls) == 1);
    CHECK(ftmb_mode() == FTMB_MODE_REPLAY);
    CHECK(tq_dequeue(&x, 71) == 0); /* past the log: live, made, quiet in the new record */
    CHECK(ftmb_mode() == FTMB_MODE_RECORD && atomic_load(&tq_calls) == 2);
    tq_enqueue(8, 1);
    CHECK(tq_dequeue(&x, 71) == 1 && x == 8);
    _ftmb_ol_poll(S.ol);
    uint64_t n;
    const struct _ftmb_record *log = _ftmb_ol_log(S.ol, 0, &n);
    /* the live records (this session's logger holds only them): the enqueue at sequence 2 (a claim:
     * the quiet poll before it ends the thread's run; it carries that 1), the dequeue at 3 */
    CHECKF(n == 2, "%llu records", (unsigned long long)n);
    CHECK(_ftmb_rec_kind(log[0].head) == _FTMB_REC_ORDERED && (log[0].value & _FTMB_ORD_SEQ_MASK) == 2 &&
          _ftmb_rec_site(log[0].head) == 1);
    CHECK(_ftmb_rec_kind(log[1].head) == _FTMB_REC_ORDQ && _ftmb_rec_site(log[1].head) == 0 && log[1].value == 3);
    session_close(&S);
    return 0;
}

/* The dwell (runtime.c, _ftmb_dwell): in record mode an empty dequeue (after _FTMB_DWELL_AFTER in a
 * row) waits for the object to move, at most FTMB_DWELL_US, before the program polls again. A thread
 * polling an empty queue for 30 ms with a 1 ms dwell makes at most _FTMB_DWELL_AFTER quiet dequeues
 * without a dwell, then 30 plus the one in flight at the end (a preempted
 * dwell still ends on the clock: load only lowers the count); without the dwell (FTMB_DWELL_US=0)
 * it makes one per iteration, millions a second. Counts, not times: nothing here is asserted about
 * how long anything took. */
static int tq_dwell_polls(const char *dwell_us, uint64_t *polls, uint64_t *ms)
{
    CHECK(session_open(&S, 2, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    setenv("FTMB_DWELL_US", dwell_us, 1);
    CHECK(ftmb_init() == 0);
    uint32_t x;
    uint64_t start = _ftmb_now_ns(CLOCK_MONOTONIC), now = start;
    for (*polls = 0; now - start < 30000000ull; now = _ftmb_now_ns(CLOCK_MONOTONIC)) {
        CHECK(tq_dequeue(&x, 71) == 0);
        ++*polls;
    }
    *ms = (now - start) / 1000000ull;
    CHECK(atomic_load(&tq_calls) == *polls); /* (each was really made, and quiet) */
    session_close(&S);
    return 0;
}

static int tq_dwell_bounded(void)
{
    uint64_t polls, ms;
    if (tq_dwell_polls("1000", &polls, &ms))
        return 1;
    CHECKF(polls >= 1 && polls <= _FTMB_DWELL_AFTER + ms + 1, "%llu quiet dequeues in %llu ms with a 1 ms dwell",
           (unsigned long long)polls, (unsigned long long)ms);
    return 0;
}

static int tq_no_dwell(void)
{
    uint64_t polls, ms;
    if (tq_dwell_polls("0", &polls, &ms))
        return 1;
    CHECKF(polls > 100 * (ms + 1), "only %llu quiet dequeues in %llu ms without the dwell",
           (unsigned long long)polls, (unsigned long long)ms);
    return 0;
}

static int quiet_dequeues_dwell(void)
{
    CHECK(run_forked(tq_dwell_bounded, NULL, NULL) == 0);
    CHECK(run_forked(tq_no_dwell, NULL, NULL) == 0); /* what the bound above guards against */
    return 0;
}

/* A loud dequeue that finds nothing in replay (here the program's enqueue before it enqueues nothing)
 * stops the replay loudly. */
static int tq_diverged(void)
{
    unsetenv("FTMB_SESSION");
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    CHECK(ftmb_init() == 0);
    uint32_t x;
    for (int i = 0; i < 5; i++)
        CHECK(tq_dequeue(&x, 71) == 0);
    tq_enqueue(7, 0);
    tq_dequeue(&x, 71);
    return 0; /* not reached */
}

static int quiet_dequeues_replay(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-tqlog-%d", (int)getpid());
    snprintf(obs_path, sizeof obs_path, "/tmp/ftmb-test-tqobs-%d", (int)getpid());
    char err[128];
    snprintf(err, sizeof err, "/tmp/ftmb-test-tqerr-%d", (int)getpid());
    CHECK(run_forked(tq_record, NULL, NULL) == 0);
    int rc = run_forked(tq_replay, NULL, NULL);
    unlink(obs_path);
    unlink(log_path);
    CHECK(rc == 0);
    CHECK(run_forked(tq_failover_record, NULL, NULL) == 0);
    rc = run_forked(tq_failover, NULL, NULL);
    CHECK(rc == 0);
    int st;
    run_forked(tq_diverged, err, &st);
    unlink(log_path);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(file_contains(err, "replay diverged: thread 0 record 1 logs a call on object 12 that returned a result, "
                             "but the program's call at site 71 returned its quiet result"));
    unlink(err);
    return 0;
}

/* ---- claims: a thread's run of accesses logs nothing ------------------------------------------- */

/* Thread 1 makes two accesses of object 30 (a claim, then its run: no record), then thread 2 takes the
 * object (a claim at sequence 2). The master dies there: thread 1's log ends at its claim. The
 * backup's thread 1 makes its run's access past its log (no logged access has sequence 1), so thread
 * 2's claim gets its turn and reads what it read in the record; were thread 1 to wait for the
 * handover there instead, thread 2 would wait for its turn forever (the alarm fails the case). */
#define OBJ_RUN 30
static uint64_t run_counter, run_seen;
static _Atomic int run_step;

static void *run_first(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2; i++) {
        ftmb_ordered_begin(OBJ_RUN, 80);
        run_counter++;
        ftmb_ordered_end(OBJ_RUN);
    }
    atomic_store(&run_step, 1);
    return NULL;
}

static void *run_second(void *arg)
{
    (void)arg;
    while (atomic_load(&run_step) == 0)
        sched_yield();
    ftmb_ordered_begin(OBJ_RUN, 81);
    run_seen = run_counter++;
    ftmb_ordered_end(OBJ_RUN);
    return NULL;
}

static int run_done(void)
{
    CHECKF(run_seen == 2 && run_counter == 3, "thread 2 saw %llu, counter %llu", (unsigned long long)run_seen,
           (unsigned long long)run_counter);
    return 0;
}

static int run_logs(const struct _ftmb_record *l1, const struct _ftmb_record *l2)
{
    CHECK(_ftmb_rec_kind(l1[0].head) == _FTMB_REC_ORDERED && l1[0].value == _ftmb_ord_value(0, 0));
    CHECK(_ftmb_rec_kind(l2[0].head) == _FTMB_REC_ORDERED && l2[0].value == _ftmb_ord_value(2, 0));
    return 0;
}

/* The two-thread cases of runs past the log: threads 1 and 2 run `first` and `second`, `done` checks
 * what they did; the record must log n1 and n2 records (`logs` checks them, if given); then a backup
 * replays that log (it ends where the master's did) and must do the same without hanging. */
static struct {
    void *(*first)(void *), *(*second)(void *);
    int (*done)(void);
    uint64_t n1, n2;
    int (*logs)(const struct _ftmb_record *l1, const struct _ftmb_record *l2);
} pair;

static int pair_workload(void)
{
    pthread_t a, b;
    CHECK(ftmb_pthread_create(&a, NULL, pair.first, NULL) == 0);
    CHECK(ftmb_pthread_create(&b, NULL, pair.second, NULL) == 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return pair.done();
}

static int pair_record(void)
{
    CHECK(session_open(&S, 3, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    if (pair_workload())
        return 1;
    _ftmb_ol_poll(S.ol);
    uint64_t n1, n2;
    const struct _ftmb_record *l1 = _ftmb_ol_log(S.ol, 1, &n1), *l2 = _ftmb_ol_log(S.ol, 2, &n2);
    CHECKF(n1 == pair.n1 && n2 == pair.n2, "%llu and %llu records", (unsigned long long)n1, (unsigned long long)n2);
    if (pair.logs && pair.logs(l1, l2))
        return 1;
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0);
    session_close(&S);
    return 0;
}

static int pair_failover(void)
{
    alarm(10); /* a hang is the failure these cases look for */
    CHECK(session_open(&S, 3, 256, 16, (struct _ftmb_ol_sink){0}) == 0);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    setenv("FTMB_REPLAY_HANDOVER", "1", 1);
    CHECK(ftmb_init() == 0);
    if (pair_workload())
        return 1;
    session_close(&S);
    return 0;
}

static int pair_case(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-rlog-%d", (int)getpid());
    CHECK(run_forked(pair_record, NULL, NULL) == 0);
    int rc = run_forked(pair_failover, NULL, NULL);
    unlink(log_path);
    CHECK(rc == 0);
    return 0;
}

static int runs_replay_past_the_log(void)
{
    pair.first = run_first, pair.second = run_second, pair.done = run_done;
    pair.n1 = 1, pair.n2 = 1, pair.logs = run_logs;
    return pair_case();
}

/* A run past the log goes on across objects. Thread 1 claims objects 34 and 35 (its log ends there),
 * then its runs go on: object 35 (no log names it later), then object 34; thread 2 then claims
 * object 34 at sequence 2. In the backup thread 1 must make both run accesses past its log: had it
 * stopped at object 35 (which no later logged access waits for) to wait for the handover, thread 2
 * would wait for sequence 2 of object 34 for ever (l2fwd's backup did: port_statistics, then
 * tx_buffer; the alarm fails the case). */
#define OBJ_RUN_A 34
#define OBJ_RUN_B 35
static uint64_t run2_counter, run2_seen, run2_other;
static _Atomic int run2_step;

static void *run2_first(void *arg)
{
    (void)arg;
    ftmb_ordered_begin(OBJ_RUN_A, 85);
    run2_counter++;
    ftmb_ordered_end(OBJ_RUN_A);
    for (int i = 0; i < 2; i++) {
        ftmb_ordered_begin(OBJ_RUN_B, 86);
        run2_other++;
        ftmb_ordered_end(OBJ_RUN_B);
    }
    ftmb_ordered_begin(OBJ_RUN_A, 85);
    run2_counter++;
    ftmb_ordered_end(OBJ_RUN_A);
    atomic_store(&run2_step, 1);
    return NULL;
}

static void *run2_second(void *arg)
{
    (void)arg;
    while (atomic_load(&run2_step) == 0)
        sched_yield();
    ftmb_ordered_begin(OBJ_RUN_A, 87);
    run2_seen = run2_counter++;
    ftmb_ordered_end(OBJ_RUN_A);
    return NULL;
}

static int run2_done(void)
{
    CHECKF(run2_seen == 2 && run2_counter == 3 && run2_other == 2, "thread 2 saw %llu, counters %llu %llu",
           (unsigned long long)run2_seen, (unsigned long long)run2_counter, (unsigned long long)run2_other);
    return 0;
}

static int runs_past_the_log_cross_objects(void)
{
    pair.first = run2_first, pair.second = run2_second, pair.done = run2_done;
    pair.n1 = 2, pair.n2 = 1, pair.logs = NULL;
    return pair_case();
}

/* Thread 1 claims object 31, then, in its run (no record), reads the counter again and transmits a
 * packet holding what it read; the output logger releases it. The master dies there. In the backup,
 * thread 2 (its log is empty) goes live at its first access of the object as soon as thread 1 is
 * counted out, and thread 1 waits (up to a second) for it before its run's access: were thread 1
 * counted out after its claim, its access would come after thread 2's live claim and regenerate the
 * released packet with another byte (a standby failover of libfam's stack family did so). The TX
 * record the transmit logs after the run (_ftmb_tx_records) keeps thread 1 in replay up to there. */
#define OBJ_TXRUN 31
static uint64_t txrun_counter;
static uint8_t txrun_seen_a, txrun_seen_b;
static _Atomic int txrun_b_go, txrun_b_done, txrun_wait_b;
static uint8_t txrun_released[4];
static _Atomic int txrun_nreleased;

static void txrun_sink(void *ctx, const struct _ftmb_out_slot *s)
{
    (void)ctx;
    int i = atomic_fetch_add(&txrun_nreleased, 1);
    if (i < 4 && s->thread == 1)
        txrun_released[i] = s->data[0];
}

static void *txrun_a(void *arg)
{
    (void)arg;
    ftmb_ordered_begin(OBJ_TXRUN, 82);
    txrun_counter++;
    ftmb_ordered_end(OBJ_TXRUN);
    for (double until = mono_s() + 1.0; atomic_load(&txrun_wait_b) && !atomic_load(&txrun_b_done) && mono_s() < until;)
        sched_yield(); /* the backup: let a live thread 2 go first if it can */
    ftmb_ordered_begin(OBJ_TXRUN, 83);
    txrun_seen_a = (uint8_t)txrun_counter++;
    ftmb_ordered_end(OBJ_TXRUN);
    struct ftmb_pkt *p = ftmb_pkt_alloc();
    ftmb_pkt_set_len(p, 60);
    memset(ftmb_pkt_data(p), 0, 60);
    ((uint8_t *)ftmb_pkt_data(p))[0] = txrun_seen_a;
    ftmb_pkt_tx_burst(0, &p, 1);
    return NULL;
}

static void *txrun_b(void *arg)
{
    (void)arg;
    while (!atomic_load(&txrun_b_go))
        sched_yield();
    ftmb_ordered_begin(OBJ_TXRUN, 84);
    txrun_seen_b = (uint8_t)txrun_counter++;
    ftmb_ordered_end(OBJ_TXRUN);
    atomic_store(&txrun_b_done, 1);
    return NULL;
}

static int txrun_record(void)
{
    CHECK(session_open(&S, 3, 256, 16, (struct _ftmb_ol_sink){txrun_sink, NULL}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    pthread_t a, b;
    CHECK(ftmb_pthread_create(&a, NULL, txrun_a, NULL) == 0);
    CHECK(ftmb_pthread_create(&b, NULL, txrun_b, NULL) == 0);
    pthread_join(a, NULL);
    for (double until = mono_s() + 10; atomic_load(&txrun_nreleased) == 0 && mono_s() < until;)
        _ftmb_ol_poll(S.ol);
    CHECKF(atomic_load(&txrun_nreleased) == 1 && txrun_released[0] == 1, "%d released, byte %u",
           atomic_load(&txrun_nreleased), txrun_released[0]);
    CHECK(_ftmb_ol_write_log(S.ol, log_path) == 0); /* the master dies here: thread 2's claim is in no log */
    atomic_store(&txrun_b_go, 1);
    pthread_join(b, NULL);
    CHECK(txrun_seen_a == 1 && txrun_seen_b == 2);
    uint64_t n1;
    const struct _ftmb_record *l1 = _ftmb_ol_log(S.ol, 1, &n1);
    CHECKF(n1 == 2, "thread 1 logged %llu records", (unsigned long long)n1); /* the claim, the transmit's */
    CHECK(_ftmb_rec_kind(l1[0].head) == _FTMB_REC_ORDERED && _ftmb_rec_kind(l1[1].head) == _FTMB_REC_TX);
    session_close(&S);
    return 0;
}

static int txrun_failover(void)
{
    alarm(20);
    CHECK(session_open(&S, 3, 256, 16, (struct _ftmb_ol_sink){txrun_sink, NULL}) == 0);
    setenv("FTMB_MODE", "replay", 1);
    setenv("FTMB_REPLAY_LOG", log_path, 1);
    setenv("FTMB_REPLAY_HANDOVER", "1", 1);
    CHECK(ftmb_init() == 0);
    atomic_store(&txrun_wait_b, 1);
    atomic_store(&txrun_b_go, 1);
    pthread_t a, b;
    CHECK(ftmb_pthread_create(&a, NULL, txrun_a, NULL) == 0);
    CHECK(ftmb_pthread_create(&b, NULL, txrun_b, NULL) == 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    for (double until = mono_s() + 10; atomic_load(&txrun_nreleased) == 0 && mono_s() < until;)
        _ftmb_ol_poll(S.ol);
    /* the regenerated packet (this session released none before: it is released again here) */
    CHECKF(atomic_load(&txrun_nreleased) == 1 && txrun_released[0] == 1 && txrun_seen_a == 1 && txrun_seen_b == 2,
           "thread 1 read %u (the master's released packet holds 1), thread 2 %u", txrun_seen_a, txrun_seen_b);
    session_close(&S);
    return 0;
}

static int a_released_run_replays_before_live_claims(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ftmb-test-txlog-%d", (int)getpid());
    CHECK(run_forked(txrun_record, NULL, NULL) == 0);
    int rc = run_forked(txrun_failover, NULL, NULL);
    unlink(log_path);
    CHECK(rc == 0);
    return 0;
}

/* The thread roots, registered the way the rewriter's constructor registers an instrumented file's. */
static void (*const roots[])(void) = {(void (*)(void))worker, (void (*)(void))arena_worker,
                                      (void (*)(void))slow_second, (void (*)(void))tq_producer,
                                      (void (*)(void))tq_consumer, (void (*)(void))run_first,
                                      (void (*)(void))run_second, (void (*)(void))txrun_a,
                                      (void (*)(void))txrun_b, (void (*)(void))run2_first,
                                      (void (*)(void))run2_second};
__attribute__((constructor)) static void register_roots(void)
{
    ftmb_register_file(NULL, NULL, 0, roots, sizeof roots / sizeof roots[0]);
}

int main(void)
{
    srandom((unsigned)getpid());
    setenv("FTMB_ORDERED_CLAIMS", "1", 1); /* these cases test records on a change of owner */
    run_case("record_orders_and_release", record_orders_and_release);
    run_case("replay_reproduces", replay_reproduces);
    run_case("replay_detects_divergence", replay_detects_divergence);
    run_case("failover_inside_nested_regions", failover_inside_nested_regions);
    run_case("external_reads_replay_from_the_log", external_reads_replay_from_the_log);
    run_case("sleeps_replay_at_once", sleeps_replay_at_once);
    run_case("quiet_record_after_a_loud_one", quiet_record_after_a_loud_one);
    run_case("quiet_dequeues_replay", quiet_dequeues_replay);
    run_case("quiet_dequeues_dwell", quiet_dequeues_dwell);
    run_case("runs_replay_past_the_log", runs_replay_past_the_log);
    run_case("runs_past_the_log_cross_objects", runs_past_the_log_cross_objects);
    run_case("a_released_run_replays_before_live_claims", a_released_run_replays_before_live_claims);
    run_case("verifier_waits_for_a_slow_output_logger", verifier_waits_for_a_slow_output_logger);
    run_case("passthrough_mode", passthrough_mode);
    run_case("atomics_logged_semantics", atomics_logged_semantics);
    run_case("setup_errors", setup_errors);
    run_case("arena_deterministic", arena_deterministic);
    run_case("arena_same_addresses_run_to_run", arena_same_addresses_run_to_run);
    run_case("receive_path", receive_path);
    run_case("inline_fast_path", inline_fast_path);
    run_case("early_thread_index", early_thread_index);
    run_case("corrupt_record_held", corrupt_record_held);
    run_case("duplicate_outputs_dropped", duplicate_outputs_dropped);
    run_case("logger_death_noticed", logger_death_noticed);
    run_case("input_logger_serves_again", input_logger_serves_again);
    run_case("unknown_start_routine_refused", unknown_start_routine_refused);
    return finish();
}

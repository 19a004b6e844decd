/*
 * Stress test of counters and the release rule under concurrency: master threads take a shared
 * lock, ordered regions and atomics and transmit, while the output logger core drains and
 * releases on its own thread, with rings small enough to wrap and fill all the time.
 *
 * Independent check at every release: the packet's payload names the lock sequence its sender
 * saw; every lock record with a sequence up to that one must already be stored by the output
 * logger (found by scanning the stored logs, not by trusting the vector). Also: the vector is
 * covered, packets of a thread leave in order, and at the end every packet has left exactly once.
 */
#include "check.h"

#define NT 3
#define OBJ_LOCK 1
#define OBJ_ORDERED 2
#define OBJ_ATOMIC 3
#define MAX_SEQ (1u << 24)

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counter, atomic_word, racy;
static _Atomic int stop;
static _Atomic uint64_t sent;
static struct test_session S;

/* Logger-thread-only state of the independent check. */
static uint8_t *stored;           /* stored[s] = 1: lock record with sequence s is stored */
static uint64_t prefix;           /* sequences 0..prefix-1 are all stored */
static uint64_t scanned[NT + 1];  /* records of each thread already scanned */
static uint64_t last_out[NT + 1];
static uint64_t released, errors;

static void scan_new_records(void)
{
    for (uint32_t t = 0; t <= NT; t++) {
        uint64_t n;
        const struct _ftmb_record *log = _ftmb_ol_log(S.ol, t, &n);
        for (; scanned[t] < n; scanned[t]++) {
            const struct _ftmb_record *r = &log[scanned[t]];
            if (_ftmb_rec_obj(r->head) == OBJ_LOCK && _ftmb_rec_kind(r->head) == _FTMB_REC_LOCK &&
                r->value < MAX_SEQ)
                stored[r->value] = 1;
        }
    }
    while (prefix < MAX_SEQ && stored[prefix])
        prefix++;
}

static void sink(void *ctx, const struct _ftmb_out_slot *s)
{
    (void)ctx;
    uint64_t seen;
    memcpy(&seen, s->data, sizeof seen);
    for (uint32_t i = 0; i < s->nvec; i++)
        if (s->vec[i] > _ftmb_ol_received(S.ol, i)) {
            if (errors++ < 5)
                fprintf(stderr, "  released with vec[%u]=%llu > received %llu\n", i, (unsigned long long)s->vec[i],
                        (unsigned long long)_ftmb_ol_received(S.ol, i));
        }
    scan_new_records();
    if (seen != UINT64_MAX && seen >= prefix && errors++ < 5)
        fprintf(stderr, "  packet that saw lock sequence %llu released with only 0..%llu stored\n",
                (unsigned long long)seen, (unsigned long long)prefix);
    if (s->out_seq != last_out[s->thread] + 1 && errors++ < 5)
        fprintf(stderr, "  thread %u: output %llu after %llu\n", s->thread, (unsigned long long)s->out_seq,
                (unsigned long long)last_out[s->thread]);
    last_out[s->thread] = s->out_seq;
    released++;
}

static void send(uint64_t seen)
{
    struct ftmb_pkt *p = ftmb_pkt_alloc();
    memcpy(ftmb_pkt_data(p), &seen, sizeof seen);
    ftmb_pkt_set_len(p, 64);
    ftmb_pkt_tx_burst(0, &p, 1);
    atomic_fetch_add_explicit(&sent, 1, memory_order_relaxed);
}

static void *worker(void *arg)
{
    uint64_t rnd = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        switch (rnd % 4) {
        case 0: { /* a shared-state update and the packet it produced */
            ftmb_pthread_mutex_lock(&mtx, OBJ_LOCK, 1);
            uint64_t seen = counter++;
            ftmb_pthread_mutex_unlock(&mtx, OBJ_LOCK, 2);
            if (seen + 1 >= MAX_SEQ)
                atomic_store(&stop, 1);
            send(seen);
            break;
        }
        case 1: /* records with no packet */
            ftmb_ordered_begin(OBJ_ORDERED, 3);
            racy++;
            ftmb_ordered_end(OBJ_ORDERED);
            ftmb_atomic_add_fetch_8(&atomic_word, 1, __ATOMIC_SEQ_CST, OBJ_ATOMIC, 4);
            break;
        case 2: /* a packet that depends on nothing in particular */
            send(UINT64_MAX);
            break;
        default: { /* a burst of lock records, then one packet */
            uint64_t seen = 0;
            for (int i = 0; i < 8; i++) {
                ftmb_pthread_mutex_lock(&mtx, OBJ_LOCK, 5);
                seen = counter++;
                ftmb_pthread_mutex_unlock(&mtx, OBJ_LOCK, 6);
            }
            send(seen);
        }
        }
    }
    return NULL;
}

/* The logger's side, with arrival orders varied: a few records of a random thread at a time. */
static void *logger(void *arg)
{
    (void)arg;
    uint64_t rnd = 88172645463325252ull;
    for (;;) {
        uint64_t now = _ftmb_now_ns(CLOCK_MONOTONIC);
        atomic_store(&S.in->hdr.heartbeat_ns, now);
        atomic_store(&S.out->hdr.heartbeat_ns, now);
        int done = atomic_load(&S.out->hdr.master_state) == _FTMB_MASTER_DONE;
        uint64_t work = 0;
        for (int i = 0; i < 64; i++) {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            work += _ftmb_ol_drain_records(S.ol, (uint32_t)(rnd % (NT + 1)), (rnd >> 8) % 4);
            work += _ftmb_ol_release(S.ol, (uint32_t)((rnd >> 16) % (NT + 1)));
        }
        if (done) {
            while (_ftmb_ol_poll(S.ol))
                ;
            break;
        }
        if (!work)
            sched_yield();
    }
    return NULL;
}

static int release_rule_under_concurrency(void)
{
    stored = calloc(MAX_SEQ, 1);
    CHECK(stored);
    /* small rings: records wrap every 256, a thread can have 8 packets outstanding */
    CHECK(session_open(&S, NT + 1, 256, 8, (struct _ftmb_ol_sink){sink, NULL}) == 0);
    setenv("FTMB_MODE", "record", 1);
    CHECK(ftmb_init() == 0);
    pthread_t log_thread;
    pthread_create(&log_thread, NULL, logger, NULL);
    pthread_t th[NT];
    for (uintptr_t i = 0; i < NT; i++)
        CHECK(ftmb_pthread_create(&th[i], NULL, worker, (void *)(i + 1)) == 0);
    double end = mono_s() + stress_seconds();
    while (mono_s() < end && !atomic_load(&stop))
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    ftmb_exit();
    pthread_join(log_thread, NULL);
    scan_new_records();
    printf("  %llu packets, %llu lock records, %llu records in all\n", (unsigned long long)sent,
           (unsigned long long)counter,
           (unsigned long long)(_ftmb_ol_received(S.ol, 1) + _ftmb_ol_received(S.ol, 2) + _ftmb_ol_received(S.ol, 3)));
    CHECK(errors == 0);
    CHECKF(released == atomic_load(&sent), "released %llu of %llu", (unsigned long long)released,
           (unsigned long long)atomic_load(&sent));
    CHECK(prefix == counter);
    CHECK(_ftmb_ol_corrupt(S.ol) == 0 && _ftmb_ol_pending(S.ol) == 0);
    session_close(&S);
    return 0;
}

/* The thread roots, registered the way the rewriter's constructor registers an instrumented file's. */
static void (*const roots[])(void) = {(void (*)(void))worker};
__attribute__((constructor)) static void register_roots(void) { ftmb_register_file(NULL, NULL, 0, roots, 1); }

int main(void)
{
    srandom((unsigned)getpid());
    run_case("release_rule_under_concurrency", release_rule_under_concurrency);
    return finish();
}

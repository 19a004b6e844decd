/* Unit and stress tests of the SPSC ring and the record format, across threads and processes. */
#include "check.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>

#include "follow.h"

/* A standalone ring in anonymous memory: control block, then the buffer. */
static struct _ftmb_ring_ctl *make_ring(uint32_t capacity, uint32_t slot_size, int shared)
{
    size_t size = sizeof(struct _ftmb_ring_ctl) + (size_t)capacity * slot_size;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    _ftmb_ring_ctl_init(p, sizeof(struct _ftmb_ring_ctl), capacity, slot_size);
    return p;
}

static int ring_layout(void)
{
    CHECK(offsetof(struct _ftmb_ring_ctl, tail) - offsetof(struct _ftmb_ring_ctl, head) >= 64);
    CHECK(sizeof(struct _ftmb_record) == 16);
    CHECK(_FTMB_IN_SLOT_SIZE % 64 == 0 && _FTMB_OUT_SLOT_SIZE % 64 == 0);
    CHECK(offsetof(struct _ftmb_out_region, thread) % 64 == 0);
    CHECK(sizeof(struct _ftmb_out_thread) % 64 == 0);
    return 0;
}

static int ring_fill_drain_wrap(void)
{
    struct _ftmb_ring_ctl *ctl = make_ring(8, 16, 0);
    CHECK(ctl);
    struct _ftmb_ring p, c;
    _ftmb_ring_attach(&p, ctl, ctl, 1);
    _ftmb_ring_attach(&c, ctl, ctl, 0);
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 100; round++) {
        int put = 0;
        uint64_t *slot;
        while ((slot = _ftmb_ring_reserve(&p)) != NULL) {
            slot[0] = next_in++;
            _ftmb_ring_publish(&p, 1);
            put++;
        }
        CHECKF(put == (round == 0 ? 8 : 8 - 0), "put %d in round %d", put, round);
        uint64_t ready = _ftmb_ring_ready(&c);
        CHECK(ready == 8);
        uint64_t take = (uint64_t)(round % 8) + 1; /* drain partially to move the window */
        for (uint64_t i = 0; i < take; i++) {
            uint64_t *s = _ftmb_ring_peek(&c, i);
            CHECKF(s[0] == next_out, "got %llu want %llu", (unsigned long long)s[0], (unsigned long long)next_out);
            next_out++;
        }
        _ftmb_ring_consume(&c, take);
        for (uint64_t i = 0; i < 8 - take; i++) { /* drain the rest */
            CHECK(_ftmb_ring_ready(&c) > 0);
            uint64_t *s = _ftmb_ring_peek(&c, 0);
            CHECK(s[0] == next_out);
            next_out++;
            _ftmb_ring_consume(&c, 1);
        }
        CHECK(_ftmb_ring_ready(&c) == 0);
    }
    return 0;
}

static int record_checksum(void)
{
    /* Every single-bit flip of a record, and the same record at another index, fails its check. */
    uint64_t head = _ftmb_rec_head(_FTMB_REC_LOCK, 1234, 77);
    struct _ftmb_record r = {head | _ftmb_rec_check(head, 42, 9), 42};
    CHECK(_ftmb_rec_valid(&r, 9));
    CHECK(!_ftmb_rec_valid(&r, 10));
    CHECK(!_ftmb_rec_valid(&r, 8));
    int missed = 0;
    for (int bit = 0; bit < 128; bit++) {
        struct _ftmb_record x = r;
        if (bit < 64)
            x.head ^= 1ull << bit;
        else
            x.value ^= 1ull << (bit - 64);
        missed += _ftmb_rec_valid(&x, 9);
    }
    CHECKF(missed == 0, "%d single-bit flips pass the check", missed);
    CHECK(_ftmb_rec_kind(r.head) == _FTMB_REC_LOCK && _ftmb_rec_obj(r.head) == 1234 && _ftmb_rec_site(r.head) == 77);
    return 0;
}

/* Producer: records {index, value = f(index)} with checksums; the consumer verifies all. */
static uint64_t value_of(uint64_t i) { return i * 0x9e3779b97f4a7c15ull + 7; }

static void produce(struct _ftmb_ring *p, uint64_t n)
{
    for (uint64_t i = 0; i < n;) {
        struct _ftmb_record *s = _ftmb_ring_reserve(p);
        if (!s) {
            __builtin_ia32_pause();
            continue;
        }
        uint64_t head = _ftmb_rec_head(_FTMB_REC_ORDERED, (uint32_t)(i & 0xffff), 1);
        s->head = head | _ftmb_rec_check(head, value_of(i), i);
        s->value = value_of(i);
        _ftmb_ring_publish(p, 1);
        i++;
    }
}

static int consume_check(struct _ftmb_ring *c, uint64_t n)
{
    uint64_t got = 0;
    double deadline = mono_s() + 60;
    while (got < n) {
        uint64_t ready = _ftmb_ring_ready(c);
        if (!ready) {
            CHECKF(mono_s() < deadline, "stuck at %llu of %llu", (unsigned long long)got, (unsigned long long)n);
            continue;
        }
        for (uint64_t i = 0; i < ready; i++) {
            const struct _ftmb_record *r = _ftmb_ring_peek(c, i);
            CHECKF(_ftmb_rec_valid(r, got) && r->value == value_of(got), "record %llu wrong",
                   (unsigned long long)got);
            got++;
        }
        _ftmb_ring_consume(c, ready);
    }
    return 0;
}

struct producer_arg {
    struct _ftmb_ring_ctl *ctl;
    uint64_t n;
};

static void *producer_thread(void *p)
{
    struct producer_arg *a = p;
    struct _ftmb_ring r;
    _ftmb_ring_attach(&r, a->ctl, a->ctl, 1);
    produce(&r, a->n);
    return NULL;
}

/* How many records fit in the stress time on this machine, measured quickly. */
static uint64_t stress_count(void) { return (uint64_t)(stress_seconds() * 2e6); }

static int ring_threads_stress(void)
{
    struct _ftmb_ring_ctl *ctl = make_ring(64, 16, 0); /* small: many wraps and full/empty edges */
    CHECK(ctl);
    struct producer_arg a = {ctl, stress_count()};
    pthread_t t;
    pthread_create(&t, NULL, producer_thread, &a);
    struct _ftmb_ring c;
    _ftmb_ring_attach(&c, ctl, ctl, 0);
    int rc = consume_check(&c, a.n);
    pthread_join(t, NULL);
    return rc;
}

/* Two processes through a named session region, each mapping it at its own address. */
static int ring_process_stress(void)
{
    char name[64];
    snprintf(name, sizeof name, "test-ring-%d", (int)getpid());
    size_t size = _ftmb_out_region_size(1, 128, 2);
    struct _ftmb_out_region *r = _ftmb_region_create(name, "out", size);
    CHECK(r);
    _ftmb_out_region_init(r, size, 1, 128, 2);
    atomic_store_explicit(&r->hdr.ready, 1, memory_order_release);
    uint64_t n = stress_count();
    pid_t pid = fork();
    if (pid == 0) {
        size_t sz;
        struct _ftmb_out_region *mine = _ftmb_region_attach(name, "out", _FTMB_OUT_MAGIC, 1000, &sz);
        if (!mine)
            _exit(2);
        struct _ftmb_ring p;
        _ftmb_ring_attach(&p, mine, &mine->thread[0].rec, 1);
        produce(&p, n);
        _exit(0);
    }
    struct _ftmb_ring c;
    _ftmb_ring_attach(&c, r, &r->thread[0].rec, 0);
    int rc = consume_check(&c, n);
    int st;
    waitpid(pid, &st, 0);
    _ftmb_region_unlink(name, "out");
    CHECK(rc == 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

static int region_attach_errors(void)
{
    size_t sz;
    CHECK(_ftmb_region_attach("no-such-session-xyz", "out", _FTMB_OUT_MAGIC, 0, &sz) == NULL);
    CHECK(!_ftmb_valid_session_name("a/b"));
    CHECK(!_ftmb_valid_session_name(""));
    CHECK(_ftmb_valid_session_name("s-1.x_y"));
    /* A region whose owner still runs is refused; a stale one (dead owner) is taken over. */
    char name[64];
    snprintf(name, sizeof name, "test-own-%d", (int)getpid());
    struct _ftmb_out_region *a = _ftmb_region_create(name, "out", _ftmb_out_region_size(1, 64, 2));
    CHECK(a);
    _ftmb_out_region_init(a, _ftmb_out_region_size(1, 64, 2), 1, 64, 2);
    atomic_store(&a->hdr.owner_pid, 1); /* pid 1 runs: in use */
    CHECK(_ftmb_region_create(name, "out", 4096) == NULL);
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    atomic_store(&a->hdr.owner_pid, dead);
    void *b = _ftmb_region_create(name, "out", 4096);
    CHECK(b);
    _ftmb_region_unlink(name, "out");
    return 0;
}

/* Wait up to 5 s for *word to become `want` (another process stores it). */
static int wait_for(_Atomic int32_t *word, int32_t want)
{
    for (int i = 0; i < 5000 && atomic_load(word) != want; i++)
        usleep(1000);
    return atomic_load(word) == want;
}

static void on_urg(int sig) { (void)sig; }

/* The relay's sleep (ftmb-relay.c, idle_wait): its pid in `sleeper`, a fence, one more look, then
 * ppoll with SIGURG unblocked. A producer that publishes and rings ends the sleep with SIGURG, also
 * when it rings before the relay reached ppoll (the signal waits, blocked, and ends it at once);
 * the ppoll's 10 s bound is never what ends it. Exit: 0 woken by the signal, 2 by the bound, 3 the
 * data was there at the look. */
static int region_ring_wakes_a_sleeper(void)
{
    struct shared { struct _ftmb_region_hdr hdr; _Atomic uint64_t data; } *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    for (int round = 0; round < 20; round++) {
        atomic_store(&sh->data, 0);
        atomic_store(&sh->hdr.sleeper, 0);
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            struct sigaction sa = {.sa_handler = on_urg};
            sigaction(SIGURG, &sa, NULL);
            sigset_t urg, unblocked;
            sigemptyset(&urg);
            sigaddset(&urg, SIGURG);
            sigprocmask(SIG_BLOCK, &urg, &unblocked);
            sigdelset(&unblocked, SIGURG);
            atomic_store_explicit(&sh->hdr.sleeper, (int32_t)getpid(), memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            if (atomic_load_explicit(&sh->data, memory_order_relaxed))
                _exit(3);
            if (round % 2)
                usleep(2000); /* (odd rounds: the ring comes before the poll) */
            struct timespec bound = {10, 0};
            int n = ppoll(NULL, 0, &bound, &unblocked);
            _exit(n < 0 && errno == EINTR ? 0 : 2);
        }
        CHECK(wait_for(&sh->hdr.sleeper, child));
        atomic_store_explicit(&sh->data, 1, memory_order_release);
        _ftmb_region_ring(&sh->hdr);
        CHECK(atomic_load(&sh->hdr.sleeper) == 0); /* (swapped: one signal per sleep) */
        int st;
        CHECK(waitpid(child, &st, 0) == child);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: the sleeper's exit %d", round, st);
    }
    /* No sleeper: nothing is sent. A stale pid (a process that did not ask, here this one, with
     * SIGURG's default action) gets a signal it ignores. */
    _ftmb_region_ring(&sh->hdr);
    atomic_store(&sh->hdr.sleeper, (int32_t)getpid());
    _ftmb_region_ring(&sh->hdr);
    CHECK(atomic_load(&sh->hdr.sleeper) == 0);
    munmap(sh, sizeof *sh);
    return 0;
}

/* A follower's thread asleep for records (follow.c, follow_sleep): `waiting`, a fence, a look at
 * the ring's head, FUTEX_WAIT on its low half; the producer publishes and calls _ftmb_fol_wake. Exit
 * 0: woken (or the head moved before the wait), 2: the 10 s bound ended it. */
static int fol_wake_wakes_a_waiting_thread(void)
{
    struct _ftmb_fol_region *f =
        mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(f != MAP_FAILED);
    for (int round = 0; round < 20; round++) {
        atomic_store(&f->thread[1].rec.head, (uint64_t)round);
        atomic_store(&f->thread[1].waiting, 0);
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            atomic_store_explicit(&f->thread[1].waiting, 1, memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            uint64_t head = atomic_load_explicit(&f->thread[1].rec.head, memory_order_relaxed);
            if (head != (uint64_t)round)
                _exit(0);
            if (round % 2)
                usleep(2000);
            struct timespec bound = {10, 0};
            long r = syscall(SYS_futex, (uint32_t *)&f->thread[1].rec.head, FUTEX_WAIT, (uint32_t)head, &bound,
                             NULL, 0);
            _exit(r == 0 || errno == EAGAIN ? 0 : 2);
        }
        CHECK(wait_for((_Atomic int32_t *)&f->thread[1].waiting, 1));
        atomic_store_explicit(&f->thread[1].rec.head, (uint64_t)round + 1, memory_order_release);
        _ftmb_fol_wake(f, 1);
        int st;
        CHECK(waitpid(child, &st, 0) == child);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: the waiter's exit %d", round, st);
    }
    munmap(f, sizeof *f);
    return 0;
}

int main(void)
{
    run_case("ring_layout", ring_layout);
    run_case("ring_fill_drain_wrap", ring_fill_drain_wrap);
    run_case("record_checksum", record_checksum);
    run_case("ring_threads_stress", ring_threads_stress);
    run_case("ring_process_stress", ring_process_stress);
    run_case("region_attach_errors", region_attach_errors);
    run_case("region_ring_wakes_a_sleeper", region_ring_wakes_a_sleeper);
    run_case("fol_wake_wakes_a_waiting_thread", fol_wake_wakes_a_waiting_thread);
    return finish();
}

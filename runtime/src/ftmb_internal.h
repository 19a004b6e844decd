/*
 * Private header of the ftmb runtime: shared-memory layout of a session, log records, and the
 * per-thread state of the master. Instrumented code never includes this; it includes ftmb/ftmb.h.
 *
 * Ground rules of the per-packet path (every ftmb_ entry point called from packet processing):
 *   - no malloc, no locks of the runtime's own, no syscalls (but one to wake a relay that sleeps on
 *     the output region, _ftmb_region_ring: remote logging at a low rate, never on one host);
 *   - each thread writes only its own lines (its record ring's head, its output ring's head, its
 *     private handle); reading other threads' record counts is O(#threads) loads, never stores;
 *   - a full ring or a silent peer is the only reason to wait, and waiting is bounded: the slow
 *     path checks the peer's heartbeat and gives up on it after FTMB_PEER_TIMEOUT_MS.
 *
 * A session is two named shared-memory regions, each created by the logger that owns it:
 *   /dev/shm/ftmb-<session>.in   input logger -> master: one entry ring per input queue;
 *   /dev/shm/ftmb-<session>.out  master -> output logger: one record ring and one output ring
 *                                per master thread (both single-producer single-consumer).
 * The master attaches to both through FTMB_SESSION=<session>.
 */
#ifndef FTMB_INTERNAL_H
#define FTMB_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "ftmb/ftmb.h"
#include "ring.h"

/* ---- log records ------------------------------------------------------------------------- */

/*
 * A record is 16 bytes: a head word and a value.
 *   head bits  0..7   kind (enum _ftmb_rec_kind)
 *   head bits  8..23  checksum over (head with these bits zero, value, index in the stream)
 *   head bits 24..39  site id, low 16 bits (diagnostics); for RX: entries consumed; for an
 *                     external read (ND, source _FTMB_ND_EXTERNAL) and ORDQ: quiet operations before it
 *   head bits 40..63  object id (PALs), nondeterminism source (ND), input queue (RX)
 *   value             sequence number (PALs), the value (ND), for RX: bits 0..39 the first input
 *                     entry sequence, bits 40..63 quiet operations before it; for QUIET: a count
 * The stream index in the checksum makes a lost, duplicated or reordered record a mismatch too.
 *
 * ORD records are claims (runtime/README.md, Ordered regions: records on a change of owner): an
 * ordered access (region or atomic) of an object logs a record only when its thread takes the
 * object from another (some other thread made an access of it since this thread's previous one),
 * when the thread made quiet operations since its last loud record, or when the sequence reaches
 * a multiple of 2^16 (a renewal). Value bits 0..47: the object sequence of the access; bits
 * 48..63: the low 16 bits of the thread's run mark on the object before it (its previous access's
 * sequence + 2, 0 if none: _ftmb_ord_value). Site field: quiet operations before it (a claim is a
 * loud record). The accesses of the thread after its claim, up to its next record on the object,
 * have no record; replay tells a claim from such an access by the run mark (see runtime.c).
 *
 * Quiet operations (runtime/README.md, Time model): a receive that consumes nothing, an external
 * read that sees the value the thread's previous external read of the same variable saw, and a
 * quiet-capable ordered call (an empty ring dequeue) that returned its quiet result log no record
 * of their own. Each thread counts them, and its next loud record (an RX, an external read that
 * logs, an ORDQ) carries how many came since its previous loud record: in the record's field when
 * it fits (_FTMB_RX_QUIET_MAX, _FTMB_EXT_QUIET_MAX), else in a QUIET record published together with
 * it, right before it. A QUIET record carries the count since the thread's previous carrier (a
 * transmit after quiet receives that moved the clock writes one too). Replay hands out exactly
 * that many quiet results before it passes the carrier.
 */
struct _ftmb_record {
    uint64_t head;
    uint64_t value;
};
_Static_assert(sizeof(struct _ftmb_record) == 16 && sizeof(struct ftmb_record) == 16, "records are 16 bytes");

enum _ftmb_rec_kind {
    _FTMB_REC_LOCK = 1,         /* lock acquired: value = object sequence */
    _FTMB_REC_ORDERED = 2,      /* ordered region or atomic that takes the object (a claim, above):
                                 * value = _ftmb_ord_value, site field = quiet operations before it */
    _FTMB_REC_HELD = 3,         /* access inside a lock taken without a wrapper */
    _FTMB_REC_TRYLOCK_FAIL = 4, /* a try-acquire failed: replay fails it too */
    _FTMB_REC_ND = 5,           /* a nondeterministic value: obj field = enum _ftmb_nd_source */
    _FTMB_REC_RX = 6,           /* a receive consumed `site` input entries of queue `obj` */
    _FTMB_REC_QUIET = 7,        /* `value` quiet operations since the thread's previous quiet count */
    _FTMB_REC_ORDQ = 8,         /* a quiet-capable ordered call (ftmb_ordered_quiet_begin) that was loud:
                                 * value = object sequence, site field = quiet operations before it */
    _FTMB_REC_TX = 9,           /* a transmit after ordered accesses that logged nothing (a run's, see
                                 * ORD above) since the thread's previous record: its packets may depend
                                 * on them, and their vector covers this record (runtime.c, _ftmb_tx_records) */
};

#define _FTMB_RX_SEQ_BITS 40
#define _FTMB_RX_SEQ_MASK ((1ull << _FTMB_RX_SEQ_BITS) - 1)
#define _FTMB_RX_QUIET_MAX ((1ull << (64 - _FTMB_RX_SEQ_BITS)) - 1) /* in an RX record's value */
#define _FTMB_EXT_QUIET_MAX 0xffffull                                  /* in an external read's site */
/* ORD claims (above): the access's object sequence and the low bits of the thread's run mark. */
#define _FTMB_ORD_SEQ_BITS FTMB_ORD_SEQ_BITS
#define _FTMB_ORD_SEQ_MASK ((1ull << _FTMB_ORD_SEQ_BITS) - 1)
#define _FTMB_ORD_MARK_MASK ((uint64_t)FTMB_ORD_MARK_MASK) /* also: a run of accesses without a record ends at a multiple of it + 1 */
static inline uint64_t _ftmb_ord_value(uint64_t seq, uint64_t mark)
{
    return (seq & _FTMB_ORD_SEQ_MASK) | (mark & _FTMB_ORD_MARK_MASK) << _FTMB_ORD_SEQ_BITS;
}

enum _ftmb_nd_source {
    _FTMB_ND_CLOCK = 1, /* a real clock read by a thread that has not received input yet */
    _FTMB_ND_RAND = 2,
    _FTMB_ND_RANDOM = 3,
    _FTMB_ND_RTE_RAND = 4,
    _FTMB_ND_GETRANDOM = 5,
    _FTMB_ND_EXTERNAL = 6, /* a read of a variable only signal handlers write (ftmb_external_read) */
    _FTMB_ND_BYTES = 7,    /* ftmb_nondet_bytes: the size, then the bytes, 8 per record */
    _FTMB_ND_SLEEP = 8,    /* an interrupted sleep (ftmb_nanosleep...): value = errno; site = quiet count */
};

#define _FTMB_OBJ_BITS 24
#define _FTMB_REC_CHECK_MASK (0xffffull << 8)

/* The record format is the header's (the inline fast path writes records in the program). */
_Static_assert(_FTMB_REC_ORDERED == FTMB_REC_ORDERED && _FTMB_REC_HELD == FTMB_REC_HELD, "ftmb.h's kinds");
static inline uint64_t _ftmb_rec_head(unsigned kind, uint32_t obj, uint32_t site)
{
    return _ftmb_rec_head_of(kind, obj, site);
}

static inline unsigned _ftmb_rec_kind(uint64_t head) { return (unsigned)(head & 0xff); }
static inline uint32_t _ftmb_rec_site(uint64_t head) { return (uint32_t)((head >> 24) & 0xffff); }
static inline uint32_t _ftmb_rec_obj(uint64_t head) { return (uint32_t)(head >> 40); }

/* 16-bit check of a record at stream index `index` (head given with its check bits zero). */
static inline uint64_t _ftmb_rec_check(uint64_t head, uint64_t value, uint64_t index)
{
    return _ftmb_rec_check_of(head, value, index);
}

static inline int _ftmb_rec_valid(const struct _ftmb_record *r, uint64_t index)
{
    uint64_t bare = r->head & ~_FTMB_REC_CHECK_MASK;
    return (r->head & _FTMB_REC_CHECK_MASK) == _ftmb_rec_check(bare, r->value, index);
}

/* ---- session regions --------------------------------------------------------------------- */

#define _FTMB_IN_MAGIC 0x4e492d424d5446ull  /* "FTMB-IN" */
#define _FTMB_OUT_MAGIC 0x54554f2d424d5446ull /* "FTMB-OUT" */
/* Layout versions, one per region; ftmb_instrument/run.py reads the input region (version 3). */
#define _FTMB_IN_LAYOUT_VERSION 3 /* 3: the header's sleeper */
#define _FTMB_OUT_LAYOUT_VERSION 7 /* 5: ORD records are claims (records on a change of owner); 6: backup_live;
                                    * 7: the header's sleeper */
static inline uint32_t _ftmb_layout_version(uint64_t magic)
{
    return magic == _FTMB_IN_MAGIC ? _FTMB_IN_LAYOUT_VERSION : _FTMB_OUT_LAYOUT_VERSION;
}

enum _ftmb_master_state {
    _FTMB_MASTER_NONE = 0,     /* no master attached yet */
    _FTMB_MASTER_ATTACHED = 1, /* a master runs */
    _FTMB_MASTER_DONE = 2,     /* the master called ftmb_exit: everything it sent is published */
    _FTMB_MASTER_STOPPED = 3,  /* the master is dying of a stop signal it does not handle: a stop, not a
                                  failure (nobody takes over; the loggers finish once it is gone) */
};

/* What every region starts with: who owns it and whether it still runs. */
struct _ftmb_region_hdr {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t layout_version;
    uint64_t size;                   /* bytes of the whole region */
    _Atomic uint32_t ready;          /* set last by the owner (release); attachers acquire it */
    _Atomic int32_t owner_pid;
    _Atomic uint64_t heartbeat_ns;   /* owner's CLOCK_MONOTONIC, refreshed every loop (relaxed) */
    _Atomic int32_t master_pid;
    _Atomic uint32_t master_state;   /* enum _ftmb_master_state */
    _Atomic uint32_t master_mode;    /* enum ftmb_mode of the attached master */
    _Atomic int32_t snapshot_pid;    /* the process holding the master's newest snapshot, which takes
                                      * over if the master dies; 0: none (published with release) */
    _Atomic int32_t sleeper;         /* a relay (ftmb-relay) asleep until a producer of this region
                                      * publishes something: its pid, or 0 (_ftmb_region_ring) */
    uint32_t _pad;
};

/* A producer published something on region h (entries, records, outputs, a state, a request): if a
 * relay sleeps on the region, wake it (SIGURG, whose default action is to ignore it, so a stale pid
 * harms no one). The fence pairs with the relay's after it stores its pid and before it looks at
 * the region once more: either it sees what was published or this sees its pid. One fence and one
 * load where nobody sleeps (on one host nobody does); a system call only to end a relay's sleep. */
static inline void _ftmb_region_ring(struct _ftmb_region_hdr *h)
{
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: ordered by the fences on both sides. */
    if (atomic_load_explicit(&h->sleeper, memory_order_relaxed) == 0)
        return;
    int32_t pid = atomic_exchange_explicit(&h->sleeper, 0, memory_order_relaxed);
    if (pid > 0)
        kill(pid, SIGURG);
}

enum _ftmb_in_kind {
    _FTMB_IN_PKT = 1,  /* a packet */
    _FTMB_IN_TICK = 2, /* a clock tick of an idle queue: advances virtual time only */
    _FTMB_IN_EOF = 3,  /* the input of this queue ended */
};

/* Virtual time a receive adds after its queue's EOF entry (io.c): a constant, not the session's
 * tick, so a replay in a session with another --tick-us reads the same times. */
#define _FTMB_EOF_TICK_NS 100000ull
/* ... for at most this long after the EOF entry's time: timers that release what a program holds
 * (TX drains: 100 us in DPDK's examples) fire, periodic ones do not go on logging forever. */
#define _FTMB_EOF_SPAN_NS 10000000ull

/* One input entry. seq numbers every entry of a queue from 0; time_ns is the input logger's
 * CLOCK_REALTIME when it first served the entry (the entry's arrival, and the virtual time). */
struct _ftmb_in_entry {
    uint64_t seq;
    uint64_t time_ns;
    uint32_t len;
    uint16_t kind;
    uint16_t queue;
    uint64_t _pad;
    uint8_t data[FTMB_PKT_MAX];
};
#define _FTMB_IN_SLOT_SIZE ((sizeof(struct _ftmb_in_entry) + 63) & ~(size_t)63)
_Static_assert(sizeof(struct _ftmb_in_entry) == 32 + FTMB_PKT_MAX, "input entry layout");

struct _ftmb_in_queue {
    struct _ftmb_ring_ctl ring;              /* input logger produces, the master consumes */
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t rewind_req; /* master: bumps to ask for a rewind */
    _Atomic uint64_t rewind_pos;             /* master: serve again from this entry sequence */
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t rewind_ack; /* input logger: = rewind_req when done */
    _Atomic uint64_t retain_from;            /* master: entries before this may be forgotten */
};
_Static_assert(sizeof(struct _ftmb_in_queue) % _FTMB_CACHE_LINE == 0, "queues cache-aligned");

struct _ftmb_in_region {
    struct _ftmb_region_hdr hdr;
    uint32_t nqueues;
    uint32_t capacity;     /* entries per queue ring */
    uint64_t tsc_hz;       /* cycle rate of virtual rte_rdtsc(), the same for master and backup */
    uint64_t tick_ns;      /* an idle queue gets a tick entry this often */
    alignas(_FTMB_CACHE_LINE) struct _ftmb_in_queue queue[FTMB_MAX_QUEUES];
};

/* One output packet as the output logger sees it: stamped with the vector of record counts the
 * sending thread read at transmit time, and its per-thread output sequence number (from 1). */
struct _ftmb_out_slot {
    uint64_t out_seq;
    uint64_t in_time_ns;   /* arrival time of the input it answers, 0 if new (for latency stats) */
    uint32_t len;
    uint16_t thread;
    uint16_t nvec;         /* entries of vec that matter; 0 = nothing to wait for */
    uint32_t queue;
    uint32_t _pad;
    uint64_t vec[FTMB_MAX_THREADS];
    uint8_t data[FTMB_PKT_MAX];
};
#define _FTMB_OUT_SLOT_SIZE ((sizeof(struct _ftmb_out_slot) + 63) & ~(size_t)63)
_Static_assert(offsetof(struct _ftmb_out_slot, vec) == 32, "output slot layout");

struct _ftmb_out_thread {
    struct _ftmb_ring_ctl rec; /* records: the master thread produces, the output logger consumes;
                                * rec.head is the thread's record count, read by every sender */
    struct _ftmb_ring_ctl out; /* output packets */
    alignas(_FTMB_CACHE_LINE) _Atomic uint64_t retain_from; /* master: the newest snapshot's record
                                * count; the output logger may forget the records before it */
};

/* The output logger makes rings for FTMB_MAX_THREADS threads by default: the region is sparse
 * (never MAP_POPULATE), so the rings of threads that never exist take no memory, and the logger
 * faults in a thread's rings when nthreads first covers it. */
struct _ftmb_out_region {
    struct _ftmb_region_hdr hdr;
    uint32_t max_threads;      /* threads the output logger made rings for (--threads limits it) */
    uint32_t rec_capacity;
    uint32_t out_capacity;
    uint32_t every_ordered;    /* 1: the master logs every ordered access (no runs without records), set
                                * at creation by whoever's consumer needs each object's records to be
                                * consecutive: ftmb-relay (its export publishes by sequence) and an
                                * output logger with --follow (a follower cannot see the other
                                * threads' logs ahead of its own) */
    uint64_t tsc_hz;           /* the master's virtual cycle rate, copied into the log for replay;
                                * written before master_state (release) */
    _Atomic uint32_t nthreads; /* thread indexes the master handed out; published (release)
                                * before the thread's first record, pairs with the logger's
                                * acquire load */
    alignas(_FTMB_CACHE_LINE) struct _ftmb_out_thread thread[FTMB_MAX_THREADS];
    /* Death watch (session.c, _ftmb_master_threads_dead): robust process-shared mutexes, one per
     * thread index and one (the last, the process's) for a thread of the runtime that lives as
     * long as the process (the checkpoint coordinator, or else the keeper: runtime.c), each held
     * for its thread's lifetime and never unlocked; the kernel marks one FUTEX_OWNER_DIED in its
     * thread's do_exit (exit_mm -> mm_release -> exit_robust_list) before the address space is
     * torn down. Two sets: live[] for the session's first record master (and a snapshot of it that
     * takes over), backup_live[] for a backup that attached without a snapshot (the warm standby,
     * a follower), whose threads cannot take live[] while the master's hold them. */
    _Atomic int32_t live_pid;   /* the master whose threads hold them; 0: none, -1: retired (release,
                                 * after its own thread's lock) */
    _Atomic uint32_t live_coord; /* the process's slot counts: its thread runs (or will, and holds it) */
    _Atomic uint32_t live_backup; /* 1: live_pid's threads hold backup_live[] (written before live_pid) */
    alignas(_FTMB_CACHE_LINE) pthread_mutex_t live[FTMB_MAX_THREADS + 1];
    alignas(_FTMB_CACHE_LINE) pthread_mutex_t backup_live[FTMB_MAX_THREADS + 1];
};

/* Region helpers (session.c). */
void *_ftmb_region_create(const char *session, const char *suffix, size_t size);
void *_ftmb_region_attach(const char *session, const char *suffix, uint64_t magic, int timeout_ms,
                          size_t *size_out);
void _ftmb_region_unlink(const char *session, const char *suffix);
void _ftmb_region_set_ready(void *region);
void _ftmb_region_hdr_init(struct _ftmb_region_hdr *h, uint64_t magic, size_t size);
void _ftmb_region_populate(void *region, uint64_t off, uint64_t len);
void _ftmb_region_heartbeat(void *region);
uint64_t _ftmb_now_ns(int clock);
int _ftmb_pid_alive(int32_t pid);
int _ftmb_master_died(const struct _ftmb_region_hdr *hdr, int32_t pid);
int _ftmb_master_threads_dead(struct _ftmb_out_region *out, int32_t pid);
void _ftmb_live_hold(struct _ftmb_out_region *out, uint32_t slot, int backup);
void _ftmb_live_rehold(struct _ftmb_out_region *out, uint32_t slot, void *robust_head);
int _ftmb_peer_alive(const struct _ftmb_region_hdr *hdr, uint64_t timeout_ns);
/* A peer's heartbeat as one watcher sees it: its silence counts only the time the watcher looked
 * (session.c, _ftmb_peer_watch_alive). Zeroed to start; relaxed atomics: threads may look at once. */
struct _ftmb_peer_watch {
    _Atomic uint64_t beat, look_ns, silent_ns;
};
int _ftmb_peer_watch_alive(struct _ftmb_peer_watch *w, const struct _ftmb_region_hdr *hdr, uint64_t timeout_ns);
int _ftmb_session_gone(const struct _ftmb_region_hdr *in, const struct _ftmb_region_hdr *out);
void _ftmb_exit_if_session_gone(void);
size_t _ftmb_in_region_size(uint32_t nqueues, uint32_t capacity);
size_t _ftmb_out_region_size(uint32_t max_threads, uint32_t rec_capacity, uint32_t out_capacity);
void _ftmb_in_region_init(struct _ftmb_in_region *r, size_t size, uint32_t nqueues, uint32_t capacity,
                          uint64_t tsc_hz, uint64_t tick_ns);
void _ftmb_out_region_init(struct _ftmb_out_region *r, size_t size, uint32_t max_threads,
                           uint32_t rec_capacity, uint32_t out_capacity);
int _ftmb_valid_session_name(const char *session);
uint64_t _ftmb_calibrate_tsc_hz(void);

/* ---- the output logger core (output_logger.c): also driven directly by tests --------------- */

struct _ftmb_ol;
struct _ftmb_ol_sink {
    /* Called for each released packet, in per-thread order. */
    void (*release)(void *ctx, const struct _ftmb_out_slot *pkt);
    void *ctx;
};
struct _ftmb_ol *_ftmb_ol_new(struct _ftmb_out_region *region, struct _ftmb_ol_sink sink, FILE *diag);
void _ftmb_ol_free(struct _ftmb_ol *ol);
/* Store up to max records of thread t (verifying each); returns how many were stored. */
uint64_t _ftmb_ol_drain_records(struct _ftmb_ol *ol, uint32_t t, uint64_t max);
/* Release every packet of thread t whose vector is covered; returns how many. */
uint64_t _ftmb_ol_release(struct _ftmb_ol *ol, uint32_t t);
/* One pass over every thread: drain all records, release what is covered. */
uint64_t _ftmb_ol_poll(struct _ftmb_ol *ol);
/* The master died: store every record it published (with the mutation check on: drop them). */
void _ftmb_ol_master_died(struct _ftmb_ol *ol);
uint64_t _ftmb_ol_received(const struct _ftmb_ol *ol, uint32_t t);
uint64_t _ftmb_ol_released_seq(const struct _ftmb_ol *ol, uint32_t t);
uint64_t _ftmb_ol_pending(struct _ftmb_ol *ol);      /* output packets not yet released */
uint64_t _ftmb_ol_corrupt(const struct _ftmb_ol *ol); /* corrupt records seen */
uint64_t _ftmb_ol_duplicates(const struct _ftmb_ol *ol);
/* Duplicates whose bytes differ from the released packet of the same thread and output sequence. */
uint64_t _ftmb_ol_mismatches(const struct _ftmb_ol *ol);
/* The records of thread t it keeps: *n of them, the first being record _ftmb_ol_base(ol, t). */
const struct _ftmb_record *_ftmb_ol_log(const struct _ftmb_ol *ol, uint32_t t, uint64_t *n);
uint64_t _ftmb_ol_base(const struct _ftmb_ol *ol, uint32_t t);
int _ftmb_ol_write_log(const struct _ftmb_ol *ol, const char *path);

/* ---- the log file the output logger writes and replay reads --------------------------------- */

#define _FTMB_LOG_MAGIC 0x34474f4c424d5446ull     /* "FTMBLOG4" */
#define _FTMB_LOG_MAGIC_OLD 0x33474f4c424d5446ull /* "FTMBLOG3": the same without hdr_check */
struct _ftmb_log_file_hdr {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t nthreads;
    uint64_t tsc_hz;                  /* the recording master's virtual cycle rate */
    uint64_t count[FTMB_MAX_THREADS]; /* each thread's record count (the index after its last record) */
    uint64_t base[FTMB_MAX_THREADS];  /* the index of its first record here (earlier ones were collected);
                                       * then count[0] - base[0] records of thread 0, then thread 1 ... */
    uint64_t hdr_check;               /* _ftmb_log_hdr_check: records carry their own checks, the header this */
};
_Static_assert(sizeof(struct _ftmb_log_file_hdr) == 32 + 16 * FTMB_MAX_THREADS, "log header layout");

/* FNV-1a (64 bit) of the header's bytes before hdr_check: an edited tsc_hz, count or base is refused
 * when the log is loaded instead of replaying at a wrong rate or from wrong records. */
static inline uint64_t _ftmb_log_hdr_check(const struct _ftmb_log_file_hdr *h)
{
    const unsigned char *p = (const unsigned char *)h;
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof *h - sizeof h->hdr_check; i++)
        x = (x ^ p[i]) * 0x100000001b3ull;
    return x;
}

/* ---- runtime internals shared by the core and the DPDK adapter ---------------------------- */

struct _ftmb_thread;
struct _ftmb_thread *_ftmb_self_slow(void);
/* initial-exec: one %fs-relative load, and no __tls_get_addr call that would make every PAL entry point
 * save registers (libftmb.so, which tests dlopen, fits in the static TLS surplus glibc keeps). */
extern _Thread_local struct _ftmb_thread *_ftmb_self __attribute__((tls_model("initial-exec")));
/* Hidden (here and in rt.h): every user is linked into the same executable or library, so the
 * per-access paths read it with one PC-relative load instead of going through the GOT. */
extern int _ftmb_mode_now __attribute__((visibility("hidden")));

static inline struct _ftmb_thread *_ftmb_me(void)
{
    struct _ftmb_thread *t = _ftmb_self;
    return __builtin_expect(t != NULL, 1) ? t : _ftmb_self_slow();
}

/* Claim the next thread index (spawn wrappers, in the spawning thread) and adopt it (the child). */
uint32_t _ftmb_claim_thread_index(void);
void _ftmb_adopt_thread_index(uint32_t index);

/* Session input/output in the form the packet adapters share: copy-in and copy-out of bytes. */
struct _ftmb_rx_view {
    const uint8_t *data;
    uint32_t len;
    uint64_t time_ns;
};
/* Receive up to n packets of queue q into views valid until _ftmb_rx_finish; -1 if no session. */
int _ftmb_rx_begin(uint16_t queue, struct _ftmb_rx_view *views, uint16_t n);
void _ftmb_rx_finish(uint16_t queue);
/* Transmit of npkts packets: 1 if a session output ring exists (then _ftmb_tx_put each packet and
 * _ftmb_tx_end after the last), else 0. */
int _ftmb_tx_begin(uint16_t queue, unsigned npkts);
void _ftmb_tx_put(uint16_t queue, const void *data, uint32_t len, uint64_t in_time_ns);
void _ftmb_tx_end(void);
/* Replay support: serve a queue again from an entry sequence; let the logger forget before one. */
int _ftmb_input_rewind(uint16_t queue, uint64_t pos);
/* The same in two steps (a valid queue): every request, then every wait (io.c). */
void _ftmb_input_rewind_request(uint16_t queue, uint64_t pos);
int _ftmb_input_rewind_wait(uint16_t queue);
void _ftmb_input_retain_from(uint16_t queue, uint64_t seq);

#endif /* FTMB_INTERNAL_H */

"""The record fast path that ftmb/ftmb.h puts inline in the rewritten program (ABI version 4).

A held access, an ordered region and a generic atomic (`ftmb_atomic_*_N`) are `static inline`
functions of the header: their common case (record mode, a thread that receives input, room in its
record ring, an uncontended object) runs in the program with one thread-local pointer load
(`ftmb_fast_thread`, initial-exec TLS that the runtime sets at the thread's receives) and no stores
but the record's, its ring head and the object's word. Every other case (passthrough, replay, the
handover, a thread that does not receive and so carries the checkpoints' in-operation mark, a full
ring, a contended object, a bad id) is a call to the entry's `<name>_slow` in the runtime, which
handles every case. With obj and site compile-time constants at every rewritten call, the record's
head and the object's offset fold into the code.

PRELUDE is the C text of the shared part: the thread's view (`struct ftmb_fast`, the layout of the
runtime's record-ring producer, runtime/src/rt.h asserts it), the record format the fast path writes
(runtime/src/ftmb_internal.h uses these definitions), and the helpers. The rest are the entries'
`fast` bodies (spec.py); their parameters carry a trailing `_` so that no program's globals are
shadowed.
"""

from __future__ import annotations

PRELUDE = r"""
/* --- the record fast path, inline in the program (ABI v4; ftmb_instrument/abi/fast_path.py) --- */
/* A record of a thread's log: 16 bytes, head = kind | 16-bit check << 8 | site << 24 | obj << 40. */
struct ftmb_record {
    ftmb_u64 head;
    ftmb_u64 value;
};
#define FTMB_REC_ORDERED 2 /* a claim of an object by an ordered region or a logged atomic (below) */
#define FTMB_REC_HELD 3    /* an access under a lock taken without a wrapper: value = the sequence */
/* A claim's value: the access's object sequence (bits 0..47) and the low 16 bits of the thread's
 * run mark on the object before it (bits 48..63); runtime/README.md, records on a change of owner. */
#define FTMB_ORD_SEQ_BITS 48
#define FTMB_ORD_MARK_MASK 0xffffu
/* The record's head without its check bits. */
static __inline__ __attribute__((always_inline)) ftmb_u64 _ftmb_rec_head_of(unsigned kind, ftmb_u32 obj,
                                                                            ftmb_u32 site)
{
    return (ftmb_u64)kind | ((ftmb_u64)(ftmb_u16)site << 24) | ((ftmb_u64)obj << 40);
}
/* The 16-bit check (in the head's bits 8..23) of a record at stream index `index`. */
static __inline__ __attribute__((always_inline)) ftmb_u64 _ftmb_rec_check_of(ftmb_u64 head, ftmb_u64 value,
                                                                             ftmb_u64 index)
{
    ftmb_u64 x = ((head ^ (index << 1)) * 0x9e3779b97f4a7c15ul) ^ value;
    x *= 0xd6e8feb86659fd93ul;
    return (x >> 48) << 8;
}

/* The calling thread's record ring, as its producer: the runtime's own view (rt.h asserts the
 * layout), set while the thread may take the fast path (record mode, a thread that receives
 * input), else NULL. Only the thread itself writes it. */
struct ftmb_fast {
    ftmb_u64 *head;            /* the ring's published head, the thread's record count (release store) */
    struct ftmb_record *slots; /* the ring's slots */
    ftmb_u64 mask;             /* slots - 1 */
    ftmb_u32 slot_size;        /* (16) */
    ftmb_u64 local;            /* the next record's stream index */
    ftmb_u64 cache;            /* the consumer's tail, as last read: room while local - cache <= mask */
    ftmb_u64 *objs;            /* the objects' words: obj's is objs[obj * 8] (one per cache line) */
    ftmb_u64 *own;             /* the thread's run marks: own[obj] = its latest access's sequence + 2 */
    ftmb_u64 quiet;            /* quiet operations since its last loud record */
    ftmb_u64 every;            /* every ordered access logs a claim (a relay or a follower session) */
    ftmb_u64 run_at;           /* local + 1 at its latest access that logged nothing (a run's): the
                                * next transmit logs a record first if no record came since */
};
extern __thread struct ftmb_fast *ftmb_fast_thread __attribute__((tls_model("initial-exec")));

/* The thread's view if the fast path may log an operation on obj now, else NULL. */
static __inline__ __attribute__((always_inline)) struct ftmb_fast *_ftmb_fast_room(ftmb_obj_t obj)
{
    struct ftmb_fast *f = ftmb_fast_thread;
    if (__builtin_expect(f != 0 && obj < FTMB_MAX_OBJECTS && f->local - f->cache <= f->mask, 1))
        return f;
    return 0;
}
/* Write the record at the ring's next slot and publish it (release: the record before the count). */
static __inline__ __attribute__((always_inline)) void _ftmb_fast_emit(struct ftmb_fast *f,
                                                                     struct ftmb_record *slot, ftmb_u64 local,
                                                                     ftmb_u64 head, ftmb_u64 value)
{
    slot->head = head | _ftmb_rec_check_of(head, value, local);
    slot->value = value;
    f->local = local + 1;
    __atomic_store_n(f->head, local + 1, __ATOMIC_RELEASE);
}
/* A held access: the object's sequence (a load and a store: its lock is held exclusively), logged.
 * 1 if done. The slot is read before the word's store, which may alias the view. */
static __inline__ __attribute__((always_inline)) int _ftmb_fast_held(ftmb_obj_t obj, ftmb_site_t site)
{
    struct ftmb_fast *f = _ftmb_fast_room(obj);
    struct ftmb_record *slot;
    ftmb_u64 local, s, *w;
    if (__builtin_expect(f == 0, 0))
        return 0;
    local = f->local;
    slot = f->slots + (local & f->mask);
    w = f->objs + (ftmb_size_t)obj * 8;
    s = __atomic_load_n(w, __ATOMIC_RELAXED);
    __atomic_store_n(w, s + 1, __ATOMIC_RELAXED);
    _ftmb_fast_emit(f, slot, local, _ftmb_rec_head_of(FTMB_REC_HELD, obj, site), s);
    return 1;
}
/* Take obj's sequence lock ((seq << 1) | locked) with one acquire CAS; log a claim unless the
 * thread's run on obj goes on (its own access was the object's previous one, no quiet operation
 * since its last loud record, no renewal at a multiple of 2^16: runtime.c, run_continues; then it
 * notes the record count in run_at). The word, or NULL when nothing was done (quiet operations to carry, a held or contended word: the
 * slow path). The site is not logged (a claim's site field carries the quiet count, 0 here). */
static __inline__ __attribute__((always_inline)) ftmb_u64 *_ftmb_fast_seq_lock(ftmb_obj_t obj, ftmb_site_t site)
{
    struct ftmb_fast *f = _ftmb_fast_room(obj);
    ftmb_u64 *w, v, local, seq, mark;
    (void)site;
    if (__builtin_expect(f == 0 || f->quiet != 0, 0))
        return 0;
    w = f->objs + (ftmb_size_t)obj * 8;
    v = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (__builtin_expect(v & 1, 0) ||
        __builtin_expect(!__atomic_compare_exchange_n(w, &v, v | 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
        return 0;
    seq = v >> 1;
    mark = f->own[obj];
    f->own[obj] = seq + 2;
    local = f->local;
    if (__builtin_expect(mark == seq + 1 && (seq & FTMB_ORD_MARK_MASK) != 0 && f->every == 0, 1)) {
        f->run_at = local + 1; /* (a transmit before the next record logs one: runtime.c, _ftmb_tx_records) */
        return w;
    }
    _ftmb_fast_emit(f, f->slots + (local & f->mask), local, _ftmb_rec_head_of(FTMB_REC_ORDERED, obj, 0),
                    (seq & ((((ftmb_u64)1) << FTMB_ORD_SEQ_BITS) - 1)) |
                        ((mark & FTMB_ORD_MARK_MASK) << FTMB_ORD_SEQ_BITS));
    return w;
}
/* Release the sequence lock, one sequence on (after the record's publication). */
static __inline__ __attribute__((always_inline)) void _ftmb_fast_seq_unlock(ftmb_u64 *w)
{
    __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}
/* ftmb_ordered_end of a thread that may take the fast path: its begin took the lock here or in the
 * slow path, which then left nothing else to undo. 1 if done. */
static __inline__ __attribute__((always_inline)) int _ftmb_fast_seq_end(ftmb_obj_t obj)
{
    struct ftmb_fast *f = ftmb_fast_thread;
    if (__builtin_expect(f == 0 || obj >= FTMB_MAX_OBJECTS, 0))
        return 0;
    _ftmb_fast_seq_unlock(f->objs + (ftmb_size_t)obj * 8);
    return 1;
}
"""

HELD = "if (__builtin_expect(_ftmb_fast_held(obj_, site_), 1))\n        return;"
ORDERED_BEGIN = "if (__builtin_expect(_ftmb_fast_seq_lock(obj_, site_) != 0, 1))\n        return;"
ORDERED_END = "if (__builtin_expect(_ftmb_fast_seq_end(obj_), 1))\n        return;"

# Logged atomics run inside the object's sequence lock as a plain load and a release store (the
# runtime's general path does the same: runtime/README.md, Record path and memory ordering).


def _locked(unused: str, *lines: str) -> str:
    """The body of a logged atomic: the sequence lock, the operation, the unlock (declarations first:
    the header also compiles as C90)."""
    body = "\n".join(f"        {line}" for line in lines)
    return ("ftmb_u64 *w_ = _ftmb_fast_seq_lock(obj_, site_);\n"
            + "".join(f"    (void){p};\n" for p in unused.split())
            + "    if (__builtin_expect(w_ != 0, 1)) {\n"
            f"{body}\n"
            "    }")


def atomic_load(t: str) -> str:
    return _locked("memorder_", f"{t} v_ = __atomic_load_n((const volatile {t} *)ptr_, __ATOMIC_RELAXED);",
                                             "_ftmb_fast_seq_unlock(w_);", "return v_;")


def atomic_store(t: str) -> str:
    return _locked("memorder_", f"__atomic_store_n((volatile {t} *)ptr_, val_, __ATOMIC_RELEASE);",
                                             "_ftmb_fast_seq_unlock(w_);", "return;")


def atomic_exchange(t: str) -> str:
    return _locked("memorder_", f"{t} old_ = __atomic_load_n((volatile {t} *)ptr_, __ATOMIC_RELAXED);",
                                             f"__atomic_store_n((volatile {t} *)ptr_, val_, __ATOMIC_RELEASE);",
                                             "_ftmb_fast_seq_unlock(w_);", "return old_;")


def atomic_compare_exchange(t: str) -> str:
    # logged, a weak CAS never fails spuriously: replay could not reproduce that
    return _locked("weak_ success_memorder_ failure_memorder_",
                   f"{t} cur_ = __atomic_load_n((volatile {t} *)ptr_, __ATOMIC_RELAXED);",
                   f"_Bool ok_ = cur_ == *({t} *)expected_;",
                   "if (ok_)",
                   f"    __atomic_store_n((volatile {t} *)ptr_, desired_, __ATOMIC_RELEASE);",
                   "else",
                   f"    *({t} *)expected_ = cur_;",
                   "_ftmb_fast_seq_unlock(w_);", "return ok_;")


_RMW = {"add": "+", "sub": "-", "and": "&", "or": "|", "xor": "^"}


def atomic_rmw(t: str, op: str, fetch_first: bool) -> str:
    return _locked("memorder_", f"{t} old_ = __atomic_load_n((volatile {t} *)ptr_, __ATOMIC_RELAXED);",
                                             f"{t} new_ = ({t})(old_ {_RMW[op]} val_);",
                                             f"__atomic_store_n((volatile {t} *)ptr_, new_, __ATOMIC_RELEASE);",
                                             "_ftmb_fast_seq_unlock(w_);",
                                             f"return {'old_' if fetch_first else 'new_'};")

"""Property test of ordered logging and parallel release, driving the real C code through cffi.

Hypothesis generates interleavings of record creation and transmits on several master threads
(thread identities switched on one OS thread) and arrival orders at the output logger (which
thread's records it drains, how many, and which thread's packets it tries to release). Checked:
- a transmitted packet's vector is exactly every thread's count of records created so far (the
  sender reads all counts; here everything created before the transmit happened-before it);
- the output logger never releases a packet before every record its vector covers has arrived;
- each thread's packets leave in order, each once; after a final drain every packet has left.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

cffi = pytest.importorskip("cffi")

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
NTHREADS = 4  # thread 0 (the initializing thread) and three more

CDEF = """
struct ftmb_pkt;
struct _ftmb_out_slot {
    uint64_t out_seq; uint64_t in_time_ns; uint32_t len; uint16_t thread; uint16_t nvec;
    uint32_t queue; uint32_t _pad; uint64_t vec[32]; uint8_t data[2048];
};
struct _ftmb_ol_sink { void (*release)(void *ctx, const struct _ftmb_out_slot *pkt); void *ctx; };
struct _ftmb_ol;
int ftmb_init(void);
int ftmb_mode(void);
void ftmb_held_access_slow(uint32_t obj, uint32_t site); /* (ftmb_held_access is inline in ftmb.h) */
void ftmb_ordered_begin_slow(uint32_t obj, uint32_t site);
void ftmb_ordered_end_slow(uint32_t obj);
int ftmb_pthread_mutex_lock(volatile void *lock, uint32_t obj, uint32_t site);
int ftmb_pthread_mutex_unlock(volatile void *lock, uint32_t obj, uint32_t site);
uint64_t ftmb_atomic_fetch_add_8_slow(volatile void *ptr, uint64_t val, int memorder, uint32_t obj, uint32_t site);
struct ftmb_pkt *ftmb_pkt_alloc(void);
void *ftmb_pkt_data(struct ftmb_pkt *pkt);
void ftmb_pkt_set_len(struct ftmb_pkt *pkt, uint32_t len);
uint16_t ftmb_pkt_tx_burst(uint16_t queue_id, struct ftmb_pkt **pkts, uint16_t nb_pkts);
uint32_t _ftmb_claim_thread_index(void);
void _ftmb_adopt_thread_index(uint32_t index);
void *_ftmb_region_create(const char *session, const char *suffix, size_t size);
void _ftmb_region_unlink(const char *session, const char *suffix);
void _ftmb_region_set_ready(void *region);
void _ftmb_region_heartbeat(void *region);
size_t _ftmb_in_region_size(uint32_t nqueues, uint32_t capacity);
size_t _ftmb_out_region_size(uint32_t max_threads, uint32_t rec_capacity, uint32_t out_capacity);
void _ftmb_in_region_init(void *r, size_t size, uint32_t nqueues, uint32_t capacity, uint64_t tsc_hz,
                          uint64_t tick_ns);
void _ftmb_out_region_init(void *r, size_t size, uint32_t max_threads, uint32_t rec_capacity,
                           uint32_t out_capacity);
struct _ftmb_ol *_ftmb_ol_new(void *region, struct _ftmb_ol_sink sink, void *diag);
uint64_t _ftmb_ol_drain_records(struct _ftmb_ol *ol, uint32_t t, uint64_t max);
uint64_t _ftmb_ol_release(struct _ftmb_ol *ol, uint32_t t);
uint64_t _ftmb_ol_poll(struct _ftmb_ol *ol);
uint64_t _ftmb_ol_received(const struct _ftmb_ol *ol, uint32_t t);
uint64_t _ftmb_ol_pending(struct _ftmb_ol *ol);
uint64_t _ftmb_ol_corrupt(const struct _ftmb_ol *ol);
"""


class Harness:
    """One session in this process: the master runtime in record mode and an output-logger core."""

    def __init__(self):
        subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "build/libftmb.so"], check=True,
                       capture_output=True, timeout=600)
        self.ffi = cffi.FFI()
        self.ffi.cdef(CDEF)
        # RTLD_NODELETE: ftmb_init starts the runtime's keeper thread, which lives as long as this
        # process; cffi unloads a library when its object is collected (at the latest in the
        # interpreter's last collection at exit), and the keeper's code would go with it (SIGSEGV:
        # the suite ran, then exited 139).
        self.lib = self.ffi.dlopen(str(RUNTIME / "build" / "libftmb.so"), self.ffi.RTLD_NOW | self.ffi.RTLD_NODELETE)
        lib, ffi = self.lib, self.ffi
        self.session = f"prop-{uuid.uuid4().hex[:12]}".encode()
        in_size = lib._ftmb_in_region_size(1, 64)
        out_size = lib._ftmb_out_region_size(NTHREADS, 4096, 4096)
        self.in_region = lib._ftmb_region_create(self.session, b"in", in_size)
        self.out_region = lib._ftmb_region_create(self.session, b"out", out_size)
        assert self.in_region != ffi.NULL and self.out_region != ffi.NULL
        lib._ftmb_in_region_init(self.in_region, in_size, 1, 64, 10**9, 10**5)
        lib._ftmb_out_region_init(self.out_region, out_size, NTHREADS, 4096, 4096)
        lib._ftmb_region_set_ready(self.in_region)
        lib._ftmb_region_set_ready(self.out_region)
        self.released: list[tuple[int, int, tuple[int, ...], int]] = []
        self.on_release = None

        @ffi.callback("void(void *, const struct _ftmb_out_slot *)")
        def release(_ctx, slot):
            vec = tuple(slot.vec[i] for i in range(slot.nvec))
            pid = int.from_bytes(bytes(ffi.buffer(slot.data, 8)), "little")
            self.on_release(slot.thread, slot.out_seq, vec, pid)

        self._release_cb = release  # keep alive
        self.ol = lib._ftmb_ol_new(self.out_region, {"release": release, "ctx": ffi.NULL}, ffi.NULL)
        saved = {k: os.environ.get(k) for k in ("FTMB_MODE", "FTMB_SESSION", "FTMB_ORDERED_CLAIMS")}
        os.environ["FTMB_ORDERED_CLAIMS"] = "1"  # the model below logs ordered accesses as claims
        os.environ["FTMB_MODE"] = "record"
        os.environ["FTMB_SESSION"] = self.session.decode()
        try:
            assert lib.ftmb_init() == 0
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert lib.ftmb_mode() == 1
        assert [lib._ftmb_claim_thread_index() for _ in range(NTHREADS - 1)] == list(range(1, NTHREADS))
        self.mutex = ffi.new("char[64]")  # zeroed: PTHREAD_MUTEX_INITIALIZER on glibc
        self.word = ffi.new("uint64_t *")
        self.next_packet_id = 1
        self.last_by: dict[int, int] = {}  # object -> the thread of its latest ordered access or atomic
        self.run_open: set[int] = set()  # threads whose latest ordered access or atomic logged nothing (a
        # run's) after their latest record: their next transmit logs a TX record first

    def heartbeat(self):
        self.lib._ftmb_region_heartbeat(self.in_region)
        self.lib._ftmb_region_heartbeat(self.out_region)

    def record(self, thread: int, how: str) -> int:
        """One PAL of `how` by `thread`; the records it logs: a held access and a lock always, an
        ordered access or an atomic when its thread takes the object from another (records on a
        change of owner: a claim), none while the thread's run on the object goes on."""
        lib = self.lib
        obj = {"ordered": 8, "atomic": 10}.get(how)
        logged = int(obj is None or self.last_by.get(obj) != thread)
        if obj is not None:
            self.last_by[obj] = thread
        (self.run_open.discard if logged else self.run_open.add)(thread)
        lib._ftmb_adopt_thread_index(thread)
        if how == "held":
            lib.ftmb_held_access_slow(7, 1)
        elif how == "ordered":
            lib.ftmb_ordered_begin_slow(8, 2)
            lib.ftmb_ordered_end_slow(8)
        elif how == "lock":
            lib.ftmb_pthread_mutex_lock(self.mutex, 9, 3)
            lib.ftmb_pthread_mutex_unlock(self.mutex, 9, 4)
        else:
            lib.ftmb_atomic_fetch_add_8_slow(self.word, 1, 5, 10, 5)
        return logged

    def transmit_logs(self, thread: int) -> int:
        """The records a transmit of `thread` logs before it reads the vector: a TX record after a run."""
        logged = int(thread in self.run_open)
        self.run_open.discard(thread)
        return logged

    def transmit(self, thread: int) -> int:
        lib, ffi = self.lib, self.ffi
        lib._ftmb_adopt_thread_index(thread)
        pkt = lib.ftmb_pkt_alloc()
        pid = self.next_packet_id
        self.next_packet_id += 1
        ffi.memmove(lib.ftmb_pkt_data(pkt), pid.to_bytes(8, "little"), 8)
        lib.ftmb_pkt_set_len(pkt, 60)
        pkts = ffi.new("struct ftmb_pkt *[1]", [pkt])
        assert lib.ftmb_pkt_tx_burst(0, pkts, 1) == 1
        return pid

    def drain_everything(self):
        while self.lib._ftmb_ol_poll(self.ol):
            pass


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.lib._ftmb_region_unlink(h.session, b"in")
    h.lib._ftmb_region_unlink(h.session, b"out")


threads = st.integers(0, NTHREADS - 1)
ops = st.one_of(
    st.tuples(st.just("record"), threads, st.sampled_from(["held", "ordered", "lock", "atomic"])),
    st.tuples(st.just("transmit"), threads),
    st.tuples(st.just("drain"), threads, st.integers(0, 5)),
    st.tuples(st.just("release"), threads),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(ops, max_size=60))
def test_release_rule_holds_for_any_interleaving_and_arrival_order(harness, steps):
    h, lib = harness, harness.lib
    h.heartbeat()
    h.released.clear()
    h.on_release = None
    h.drain_everything()  # earlier examples leave nothing behind
    assert lib._ftmb_ol_pending(h.ol) == 0
    created = [lib._ftmb_ol_received(h.ol, t) for t in range(NTHREADS)]  # caught up: = counts made
    arrived = list(created)
    expected_vec: dict[int, tuple[int, ...]] = {}
    sent_by: dict[int, list[int]] = {t: [] for t in range(NTHREADS)}
    left_by: dict[int, list[int]] = {t: [] for t in range(NTHREADS)}

    def on_release(thread, out_seq, vec, pid):
        assert vec == expected_vec[pid], "the vector is not the record counts at transmit time"
        for i, v in enumerate(vec):
            assert v <= arrived[i], f"released packet {pid} before record {v} of thread {i} arrived"
        left_by[thread].append(pid)

    h.on_release = on_release
    for op in steps:
        if op[0] == "record":
            created[op[1]] += h.record(op[1], op[2])
        elif op[0] == "transmit":
            pid_next = h.next_packet_id
            created[op[1]] += h.transmit_logs(op[1])
            expected_vec[pid_next] = tuple(created)
            assert h.transmit(op[1]) == pid_next
            sent_by[op[1]].append(pid_next)
        elif op[0] == "drain":
            arrived[op[1]] += lib._ftmb_ol_drain_records(h.ol, op[1], op[2])
            assert arrived[op[1]] <= created[op[1]]
        else:
            lib._ftmb_ol_release(h.ol, op[1])
        # a thread's released packets are a prefix of what it sent, in order
        for t in range(NTHREADS):
            assert left_by[t] == sent_by[t][: len(left_by[t])]
    # eventually: once every record has arrived, everything is released, exactly once
    for t in range(NTHREADS):
        arrived[t] += lib._ftmb_ol_drain_records(h.ol, t, 2**63)
    assert arrived == created
    for t in range(NTHREADS):
        lib._ftmb_ol_release(h.ol, t)
    assert left_by == sent_by
    assert lib._ftmb_ol_pending(h.ol) == 0
    assert lib._ftmb_ol_corrupt(h.ol) == 0

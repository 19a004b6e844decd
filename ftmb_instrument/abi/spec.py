"""The single source of truth of the runtime ABI: every call instrumented code may make.

`python -m ftmb_instrument.abi` renders this table into the C header
`runtime/include/ftmb/ftmb.h` and the rewriter's emit table `ftmb_instrument/abi/emit_table.py`;
tests/test_runtime_abi.py fails when either checked-in file differs from what it renders.

Each entry point is an `Entry`:
- `name`: the C symbol (always `ftmb_` prefixed);
- `ret`, `params`: C types as they appear in the header; the header includes no other header, so
  only the `ftmb_` integer typedefs, `void *` and forward-declared structs are used. Types are the
  same as the wrapped call's on Linux/LP64 (e.g. `long` for `time_t`, `int` for `clockid_t`);
- `kind`: what the rewriter is replacing (see KINDS);
- `wraps`: the calls the rewriter replaces by this entry point. The arguments keep their order, and
  entries of kinds `lock`, `atomic` and `ordered` take the compile-time ids in TRAILING_IDS last;
- `args`: for wrapped calls whose arguments differ from the entry's, a template of the entry's
  arguments: `$0`, `$1`... are the original call's arguments, anything else is a literal (e.g. C11
  `atomic_fetch_add(obj, v)` becomes `ftmb_atomic_fetch_add_4($0, $1, 5, obj, site)`: 5 is
  __ATOMIC_SEQ_CST); the trailing ids still follow;
- `library`: `core` (libftmb, usable by any pthread program), `dpdk` (libftmb_dpdk, the mbuf and
  EAL adapter linked only into DPDK programs) or `pcap` (libftmb_pcap, the libpcap adapter linked
  only into programs that link -lpcap);
- `doc`: one line for the header and the table;
- `fast`: for the record fast path's entries (held accesses, ordered regions, the generic atomics),
  the C statements of its common case, which the header puts in a `static inline` of the entry's
  name (parameters suffixed `_`; they return when they are done). Otherwise the inline calls
  `<name>_slow`, the runtime's out-of-line function that handles every case (fast_path.py).

Bump ABI_VERSION whenever a signature or a meaning changes: the header then references
`ftmb_abi_version_<N>`, which only a runtime built from the same table defines, so an object
instrumented against another version fails at link time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import fast_path

ABI_VERSION = 5  # 5: ftmb_ordered_end_scope, ftmb_ordered_reenter/reexit(_scope); 4: struct ftmb_fast's run_at (a transmit after a run logs a TX record)

# Compile-time ids the rewriter appends to lock, atomic and ordered calls: `obj` names the shared
# object (dense, 0 <= obj < MAX_OBJECTS, one id per object, one synchronization kind per id),
# `site` names the source location (diagnostics only; replay divergence reports print it).
TRAILING_IDS = (("ftmb_obj_t", "obj"), ("ftmb_site_t", "site"))

LIMITS = {
    "FTMB_MAX_THREADS": 32,  # deterministic thread indexes 0..31 (0 is the thread calling ftmb_init)
    "FTMB_MAX_OBJECTS": 65536,  # object ids the rewriter may hand out
    "FTMB_MAX_QUEUES": 32,  # input queues of a session
    "FTMB_PKT_MAX": 2048,  # largest packet carried between the loggers and the master
}

MODES = (
    ("FTMB_MODE_PASSTHROUGH", 0, "instrumentation compiled in, nothing logged (baseline)"),
    ("FTMB_MODE_RECORD", 1, "master: log PALs and nondeterministic values, stamp outputs"),
    ("FTMB_MODE_REPLAY", 2, "recovery: follow a recorded log; ordered accesses wait their turn"),
)

KINDS = {
    "init": "runtime set-up and queries",
    "ordered": "an access to a shared object that no lock or atomic protects",
    "lock": "lock acquire / try-acquire / release; the order is recorded inside the lock",
    "atomic": "an atomic operation, performed and ordered in one step",
    "nondet": "a nondeterministic value (time, randomness, an external input); same signature as the original "
              "where it wraps a call",
    "packet_io": "packet receive and transmit",
    "spawn": "thread creation; every worker gets a deterministic thread index, and outside passthrough a start "
             "routine no instrumented file registered as a thread root is refused",
    "alloc": "program state allocated from the checkpointable arena",
    "join": "a wait for threads to end: the waiting thread sleeps instead of spinning",
}

FORWARD_STRUCTS = (
    "ftmb_pkt", "rte_mbuf", "rte_mempool", "rte_eth_rxconf", "rte_eth_dev_tx_buffer",
    "timespec", "timeval", "pcap", "pcap_pkthdr", "pcap_stat",
)


@dataclass(frozen=True)
class Entry:
    name: str
    ret: str
    params: tuple[tuple[str, str], ...]
    kind: str
    doc: str
    wraps: tuple[str, ...] = ()
    library: str = "core"
    trailing_ids: tuple[str, ...] = field(default=())
    args: tuple[tuple[str, str], ...] = field(default=())
    fast: str = ""

    @property
    def slow(self) -> str:
        """The runtime's symbol for this entry: its own name, or `<name>_slow` behind an inline fast path."""
        return f"{self.name}_slow" if self.fast else self.name

    @property
    def all_params(self) -> tuple[tuple[str, str], ...]:
        ids = tuple(p for p in TRAILING_IDS if p[1] in self.trailing_ids)
        return self.params + ids


def _e(name, ret, params, kind, doc, wraps=(), library="core", ids=(), args=None, fast=""):
    args = tuple(sorted((args or {}).items()))
    wraps = tuple(wraps) + tuple(call for call, _ in args if call not in wraps)
    return Entry(name, ret, tuple(params), kind, doc, wraps, library, tuple(ids), args, fast)


SEQ_CST = "5"  # __ATOMIC_SEQ_CST, the order of C11 calls without _explicit and of __sync builtins


OBJ_SITE = ("obj", "site")


def _init_entries():
    return [
        _e("ftmb_init", "int", [], "init",
           "Set up the runtime from FTMB_MODE/FTMB_SESSION; 0 on success, -1 after one line on stderr."),
        _e("ftmb_exit", "void", [], "init",
           "Flush this process's streams and tell the loggers the master is done (also run atexit)."),
        _e("ftmb_mode", "int", [], "init", "The mode chosen at run time (enum ftmb_mode)."),
        _e("ftmb_thread_index", "ftmb_u32", [], "init", "The calling thread's deterministic index."),
        _e("ftmb_input_done", "int", [("ftmb_u16", "queue_id")], "init",
           "1 once the input of queue_id has ended (or its logger died) and was all received."),
        _e("ftmb_register_file", "void",
           [("const ftmb_u32 *", "sites"), ("const char *const *", "where"), ("ftmb_u32", "nsites"),
            ("void (*const *)(void)", "roots"), ("ftmb_u32", "nroots")], "init",
           "Each instrumented file calls it from a constructor: it names its nsites site ids (\"file:line\", static "
           "strings) for diagnostics and lists the nroots thread roots it defines (spawn wrappers start no others)."),
    ]


def _ordered_entries():
    return [
        _e("ftmb_ordered_begin", "void", [], "ordered",
           "Start an access to obj that nothing else orders: take obj's next sequence number.",
           ids=OBJ_SITE, fast=fast_path.ORDERED_BEGIN),
        _e("ftmb_ordered_end", "void", [], "ordered", "End the access begun on obj.", ids=("obj",),
           fast=fast_path.ORDERED_END),
        _e("ftmb_ordered_end_scope", "void", [("const ftmb_obj_t *", "held")], "ordered",
           "The cleanup of a block's variable holding obj (__attribute__((cleanup))): ends the access begun on "
           "*held however control leaves the block (a statement that returns, breaks, continues or jumps by goto)."),
        _e("ftmb_ordered_reenter", "void", [], "ordered",
           "Start an access to obj, an object that a call inside one of its regions may order again: inside a "
           "region of obj the thread already holds, the access is part of that one (nothing taken, logged or "
           "waited for).",
           ids=OBJ_SITE),
        _e("ftmb_ordered_reexit", "void", [], "ordered",
           "End the access begun by ftmb_ordered_reenter on obj (the outermost one releases obj).", ids=("obj",)),
        _e("ftmb_ordered_reexit_scope", "void", [("const ftmb_obj_t *", "held")], "ordered",
           "ftmb_ordered_end_scope for a reentrant object: ftmb_ordered_reexit(*held) however control leaves "
           "the block."),
        _e("ftmb_ordered_quiet_begin", "int", [], "ordered",
           "Start an ordered access to obj by a call that writes nothing when it returns its quiet result (an "
           "empty ring dequeue); 1: do not make the call, it returned its quiet result (replay), 0: make it and "
           "call ftmb_ordered_quiet_end.",
           ids=OBJ_SITE),
        _e("ftmb_ordered_quiet_end", "void", [("int", "quiet")], "ordered",
           "End the access begun by ftmb_ordered_quiet_begin; quiet: the call returned its quiet result (record: "
           "counted, not logged, obj's sequence not advanced).",
           ids=OBJ_SITE),
        _e("ftmb_held_access", "void", [], "ordered",
           "Log an access to obj under a lock the caller holds that was not taken by an ftmb_ wrapper.",
           ids=OBJ_SITE, fast=fast_path.HELD),
    ]


def _lock_entries():
    out = []
    families = [
        ("pthread_mutex", ["lock", "trylock", "unlock"]),
        ("pthread_spin", ["lock", "trylock", "unlock"]),
        ("pthread_rwlock", ["rdlock", "wrlock", "tryrdlock", "trywrlock", "unlock"]),
    ]
    for fam, ops in families:
        for op in ops:
            out.append(_e(f"ftmb_{fam}_{op}", "int", [("volatile void *", "lock")], "lock",
                          f"{fam}_{op} on lock, ordered as object obj.",
                          wraps=(f"{fam}_{op}",), ids=OBJ_SITE))
    out.append(_e("ftmb_rte_spinlock_lock", "void", [("volatile void *", "sl")], "lock",
                  "rte_spinlock_lock, ordered as object obj.", wraps=("rte_spinlock_lock",), ids=OBJ_SITE))
    out.append(_e("ftmb_rte_spinlock_trylock", "int", [("volatile void *", "sl")], "lock",
                  "rte_spinlock_trylock, ordered as object obj.", wraps=("rte_spinlock_trylock",),
                  ids=OBJ_SITE))
    out.append(_e("ftmb_rte_spinlock_unlock", "void", [("volatile void *", "sl")], "lock",
                  "rte_spinlock_unlock.", wraps=("rte_spinlock_unlock",), ids=OBJ_SITE))
    for op, ret in (("read_lock", "void"), ("read_trylock", "int"), ("read_unlock", "void"),
                    ("write_lock", "void"), ("write_trylock", "int"), ("write_unlock", "void")):
        out.append(_e(f"ftmb_rte_rwlock_{op}", ret, [("volatile void *", "rwl")], "lock",
                      f"rte_rwlock_{op}, ordered as object obj.", wraps=(f"rte_rwlock_{op}",), library="dpdk",
                      ids=OBJ_SITE))
    # A condition wait returns holding its mutex: the re-acquisition is ordered as the mutex's object.
    out.append(_e("ftmb_pthread_cond_wait", "int", [("void *", "cond"), ("volatile void *", "mutex")], "lock",
                  "pthread_cond_wait; its return (the mutex taken again) is ordered as the mutex's object obj.",
                  wraps=("pthread_cond_wait",), ids=OBJ_SITE))
    out.append(_e("ftmb_pthread_cond_timedwait", "int",
                  [("void *", "cond"), ("volatile void *", "mutex"), ("const struct timespec *", "abstime")], "lock",
                  "pthread_cond_timedwait; ordered like ftmb_pthread_cond_wait, its result (0 or ETIMEDOUT) logged.",
                  wraps=("pthread_cond_timedwait",), ids=OBJ_SITE))
    # Semaphores: the order in which waits take tokens, as acquisitions of the semaphore's object.
    out.append(_e("ftmb_sem_wait", "int", [("void *", "sem")], "lock",
                  "sem_wait; the order of successful waits is recorded as object obj.", wraps=("sem_wait",),
                  ids=OBJ_SITE))
    out.append(_e("ftmb_sem_trywait", "int", [("void *", "sem")], "lock",
                  "sem_trywait; a failure is logged and fails again in replay.", wraps=("sem_trywait",), ids=OBJ_SITE))
    out.append(_e("ftmb_sem_timedwait", "int", [("void *", "sem"), ("const struct timespec *", "abstime")], "lock",
                  "sem_timedwait; a timeout is logged and times out again in replay.", wraps=("sem_timedwait",),
                  ids=OBJ_SITE))
    out.append(_e("ftmb_sem_post", "int", [("void *", "sem")], "lock", "sem_post.", wraps=("sem_post",),
                  ids=OBJ_SITE))
    return out


ATOMIC_RMW = ("add", "sub", "and", "or", "xor")


def _atomic_entries():
    out = []
    for n in (1, 2, 4, 8):
        u = f"ftmb_u{8 * n}"
        # the generic builtin and its sized library form (__atomic_load_n -> __atomic_load_4)
        gcc = lambda op: (f"__atomic_{op}", f"__atomic_{op.removesuffix('_n')}_{n}")  # noqa: E731
        out.append(_e(f"ftmb_atomic_load_{n}", u, [("const volatile void *", "ptr"), ("int", "memorder")],
                      "atomic", f"__atomic_load_n on {n} bytes.", wraps=gcc("load_n") + ("atomic_load_explicit",),
                      ids=OBJ_SITE, args={"atomic_load": f"$0, {SEQ_CST}"}, fast=fast_path.atomic_load(u)))
        out.append(_e(f"ftmb_atomic_store_{n}", "void",
                      [("volatile void *", "ptr"), (u, "val"), ("int", "memorder")], "atomic",
                      f"__atomic_store_n on {n} bytes.", wraps=gcc("store_n") + ("atomic_store_explicit",),
                      ids=OBJ_SITE, args={"atomic_store": f"$0, $1, {SEQ_CST}"}, fast=fast_path.atomic_store(u)))
        out.append(_e(f"ftmb_atomic_exchange_{n}", u,
                      [("volatile void *", "ptr"), (u, "val"), ("int", "memorder")], "atomic",
                      f"__atomic_exchange_n on {n} bytes.",
                      wraps=gcc("exchange_n") + ("atomic_exchange_explicit",), ids=OBJ_SITE,
                      args={"atomic_exchange": f"$0, $1, {SEQ_CST}"}, fast=fast_path.atomic_exchange(u)))
        out.append(_e(f"ftmb_atomic_compare_exchange_{n}", "_Bool",
                      [("volatile void *", "ptr"), ("void *", "expected"), (u, "desired"), ("_Bool", "weak"),
                       ("int", "success_memorder"), ("int", "failure_memorder")], "atomic",
                      f"__atomic_compare_exchange_n on {n} bytes (a weak one never fails spuriously when logged).",
                      wraps=gcc("compare_exchange_n"), ids=OBJ_SITE,
                      args={"atomic_compare_exchange_strong_explicit": "$0, $1, $2, 0, $3, $4",
                            "atomic_compare_exchange_weak_explicit": "$0, $1, $2, 1, $3, $4",
                            "atomic_compare_exchange_strong": f"$0, $1, $2, 0, {SEQ_CST}, {SEQ_CST}",
                            "atomic_compare_exchange_weak": f"$0, $1, $2, 1, {SEQ_CST}, {SEQ_CST}",
                            # oldval is passed by value: a compound literal holds it (typeof does not
                            # evaluate $0 a second time)
                            "__sync_bool_compare_and_swap":
                                f"$0, (void *)&(__typeof__(*($0))){{ $1 }}, $2, 0, {SEQ_CST}, {SEQ_CST}"},
                      fast=fast_path.atomic_compare_exchange(u)))
        for op in ATOMIC_RMW:
            c11 = {f"atomic_fetch_{op}": f"$0, $1, {SEQ_CST}", f"__sync_fetch_and_{op}": f"$0, $1, {SEQ_CST}"}
            out.append(_e(f"ftmb_atomic_fetch_{op}_{n}", u,
                          [("volatile void *", "ptr"), (u, "val"), ("int", "memorder")], "atomic",
                          f"__atomic_fetch_{op} on {n} bytes.",
                          wraps=gcc(f"fetch_{op}") + (f"atomic_fetch_{op}_explicit",), ids=OBJ_SITE, args=c11,
                          fast=fast_path.atomic_rmw(u, op, fetch_first=True)))
            out.append(_e(f"ftmb_atomic_{op}_fetch_{n}", u,
                          [("volatile void *", "ptr"), (u, "val"), ("int", "memorder")], "atomic",
                          f"__atomic_{op}_fetch on {n} bytes.",
                          wraps=gcc(f"{op}_fetch"), ids=OBJ_SITE,
                          args={f"__sync_{op}_and_fetch": f"$0, $1, {SEQ_CST}"},
                          fast=fast_path.atomic_rmw(u, op, fetch_first=False)))
    for bits in (16, 32, 64):
        i, u, t = f"ftmb_i{bits}", f"ftmb_u{bits}", f"rte_atomic{bits}"
        v = ("volatile void *", "v")
        table = [
            ("add", "void", [v, (i, "inc")]), ("sub", "void", [v, (i, "dec")]),
            ("inc", "void", [v]), ("dec", "void", [v]),
            ("add_return", i, [v, (i, "inc")]), ("sub_return", i, [v, (i, "dec")]),
            ("inc_and_test", "int", [v]), ("dec_and_test", "int", [v]),
            ("test_and_set", "int", [v]), ("read", i, [("const volatile void *", "v")]),
            ("set", "void", [v, (i, "new_value")]), ("clear", "void", [v]),
            ("cmpset", "int", [("volatile void *", "dst"), (u, "exp"), (u, "src")]),
        ]
        for op, ret, params in table:
            out.append(_e(f"ftmb_{t}_{op}", ret, params, "atomic", f"{t}_{op}.",
                          wraps=(f"{t}_{op}",), ids=OBJ_SITE))
    return out


def _nondet_entries():
    return [
        _e("ftmb_time", "long", [("long *", "tloc")], "nondet", "time(): virtual time.", wraps=("time",)),
        _e("ftmb_clock_gettime", "int", [("int", "clockid"), ("struct timespec *", "tp")], "nondet",
           "clock_gettime(): virtual time.", wraps=("clock_gettime",)),
        _e("ftmb_gettimeofday", "int", [("struct timeval *", "tv"), ("void *", "tz")], "nondet",
           "gettimeofday(): virtual time.", wraps=("gettimeofday",)),
        _e("ftmb_rte_rdtsc", "ftmb_u64", [], "nondet", "rte_rdtsc(): virtual cycles.",
           wraps=("rte_rdtsc", "rte_rdtsc_precise", "rte_get_tsc_cycles", "rte_get_timer_cycles")),
        _e("ftmb_rte_get_tsc_hz", "ftmb_u64", [], "nondet", "rte_get_tsc_hz(): the session's cycle rate.",
           wraps=("rte_get_tsc_hz", "rte_get_timer_hz")),
        _e("ftmb_rand", "int", [], "nondet", "rand(), logged.", wraps=("rand",)),
        _e("ftmb_random", "long", [], "nondet", "random(), logged.", wraps=("random", "lrand48")),
        _e("ftmb_rte_rand", "ftmb_u64", [], "nondet", "rte_rand(), logged.", wraps=("rte_rand",), library="dpdk"),
        _e("ftmb_getrandom", "long", [("void *", "buf"), ("ftmb_size_t", "buflen"), ("unsigned", "flags")],
           "nondet", "getrandom(), logged 8 bytes per record.", wraps=("getrandom",)),
        _e("ftmb_nondet_bytes", "void", [("void *", "p"), ("ftmb_size_t", "size")], "nondet",
           "The size bytes at p were just produced by a library call whose result differs between processes of "
           "one binary (a pid, a MAC address): log them (record) or overwrite them with the logged ones (replay)."),
        _e("ftmb_nanosleep", "int", [("const struct timespec *", "req"), ("struct timespec *", "rem")], "nondet",
           "nanosleep(): sleeps in record mode; a replay returns at once (time is virtual). A completed sleep is a "
           "quiet operation, an interrupted one logs its errno (replayed with *rem zeroed).", wraps=("nanosleep",)),
        _e("ftmb_clock_nanosleep", "int", [("int", "clockid"), ("int", "flags"), ("const struct timespec *", "req"),
                                           ("struct timespec *", "rem")], "nondet",
           "clock_nanosleep(): as ftmb_nanosleep; an absolute deadline is one on the session's clock.",
           wraps=("clock_nanosleep",)),
        _e("ftmb_usleep", "int", [("unsigned", "usec")], "nondet", "usleep(): as ftmb_nanosleep.", wraps=("usleep",)),
        _e("ftmb_sleep", "unsigned", [("unsigned", "seconds")], "nondet",
           "sleep(): as ftmb_nanosleep; an interrupted sleep reports every second left.", wraps=("sleep",)),
        _e("ftmb_external_read", "const volatile void *", [("const volatile void *", "p"), ("ftmb_size_t", "size")],
           "nondet", "Read a variable only signal handlers write (size 1, 2, 4 or 8): where the value to use is "
           "(logged in record mode, from the log in replay; p itself in passthrough)."),
    ]


def _io_entries():
    burst = lambda p: [("ftmb_u16", "port_id"), ("ftmb_u16", "queue_id"), ("struct rte_mbuf **", p),  # noqa: E731
                       ("const ftmb_u16", "nb_pkts")]
    return [
        _e("ftmb_pkt_rx_burst", "ftmb_u16",
           [("ftmb_u16", "queue_id"), ("struct ftmb_pkt **", "pkts"), ("ftmb_u16", "nb_pkts")], "packet_io",
           "Receive up to nb_pkts opaque packets of input queue queue_id (non-DPDK programs)."),
        _e("ftmb_pkt_tx_burst", "ftmb_u16",
           [("ftmb_u16", "queue_id"), ("struct ftmb_pkt **", "pkts"), ("ftmb_u16", "nb_pkts")], "packet_io",
           "Transmit opaque packets; the runtime takes them all (returns nb_pkts)."),
        _e("ftmb_pkt_alloc", "struct ftmb_pkt *", [], "packet_io", "A new empty packet (NULL if none left)."),
        _e("ftmb_pkt_free", "void", [("struct ftmb_pkt *", "pkt")], "packet_io", "Drop a packet."),
        _e("ftmb_pkt_data", "void *", [("struct ftmb_pkt *", "pkt")], "packet_io",
           "The packet's bytes (FTMB_PKT_MAX of room)."),
        _e("ftmb_pkt_len", "ftmb_u32", [("const struct ftmb_pkt *", "pkt")], "packet_io", "Packet length."),
        _e("ftmb_pkt_set_len", "void", [("struct ftmb_pkt *", "pkt"), ("ftmb_u32", "len")], "packet_io",
           "Set the packet length (at most FTMB_PKT_MAX)."),
        _e("ftmb_rx_burst", "ftmb_u16", burst("rx_pkts"), "packet_io", "rte_eth_rx_burst.",
           wraps=("rte_eth_rx_burst",), library="dpdk"),
        _e("ftmb_tx_burst", "ftmb_u16", burst("tx_pkts"), "packet_io", "rte_eth_tx_burst.",
           wraps=("rte_eth_tx_burst",), library="dpdk"),
        _e("ftmb_tx_buffer", "ftmb_u16",
           [("ftmb_u16", "port_id"), ("ftmb_u16", "queue_id"), ("struct rte_eth_dev_tx_buffer *", "buffer"),
            ("struct rte_mbuf *", "tx_pkt")], "packet_io", "rte_eth_tx_buffer.",
           wraps=("rte_eth_tx_buffer",), library="dpdk"),
        _e("ftmb_tx_buffer_flush", "ftmb_u16",
           [("ftmb_u16", "port_id"), ("ftmb_u16", "queue_id"), ("struct rte_eth_dev_tx_buffer *", "buffer")],
           "packet_io", "rte_eth_tx_buffer_flush.", wraps=("rte_eth_tx_buffer_flush",), library="dpdk"),
        _e("ftmb_eth_rx_queue_setup", "int",
           [("ftmb_u16", "port_id"), ("ftmb_u16", "rx_queue_id"), ("ftmb_u16", "nb_rx_desc"),
            ("unsigned", "socket_id"), ("const struct rte_eth_rxconf *", "rx_conf"),
            ("struct rte_mempool *", "mb_pool")], "packet_io",
           "rte_eth_rx_queue_setup; remembers the pool session input is copied into.",
           wraps=("rte_eth_rx_queue_setup",), library="dpdk"),
    ]


def _pcap_entries():
    """libftmb_pcap: libpcap handles opened in a session are session input queues (in open order)."""
    h = ("struct pcap *", "p")
    handler = ("void (*)(ftmb_u8 *, const struct pcap_pkthdr *, const ftmb_u8 *)", "callback")

    def e(name, ret, params, doc):
        return _e(f"ftmb_{name}", ret, params, "packet_io", doc, wraps=(name,), library="pcap")

    return [
        e("pcap_open_live", "struct pcap *",
          [("const char *", "device"), ("int", "snaplen"), ("int", "promisc"), ("int", "to_ms"), ("char *", "errbuf")],
          "pcap_open_live; in a session the next session input queue instead of the device."),
        e("pcap_open_offline", "struct pcap *", [("const char *", "fname"), ("char *", "errbuf")],
          "pcap_open_offline; in a session the next session input queue instead of the file."),
        e("pcap_create", "struct pcap *", [("const char *", "source"), ("char *", "errbuf")],
          "pcap_create; in a session the handle becomes the next session input queue."),
        e("pcap_activate", "int", [h], "pcap_activate; in a session nothing to open (0)."),
        e("pcap_next", "const ftmb_u8 *", [h, ("struct pcap_pkthdr *", "h")],
          "pcap_next; in a session the next packet of the handle's queue, ts = its arrival time."),
        e("pcap_next_ex", "int", [h, ("struct pcap_pkthdr **", "pkt_header"), ("const ftmb_u8 **", "pkt_data")],
          "pcap_next_ex; in a session from the handle's queue."),
        e("pcap_dispatch", "int", [h, ("int", "cnt"), handler, ("ftmb_u8 *", "user")],
          "pcap_dispatch; in a session one received burst, the handler run in the calling thread."),
        e("pcap_loop", "int", [h, ("int", "cnt"), handler, ("ftmb_u8 *", "user")],
          "pcap_loop; in a session from the handle's queue, the handler run in the calling thread."),
        e("pcap_inject", "int", [h, ("const void *", "buf"), ("ftmb_size_t", "size")],
          "pcap_inject; in a session an output held by the release rule."),
        e("pcap_sendpacket", "int", [h, ("const ftmb_u8 *", "buf"), ("int", "size")],
          "pcap_sendpacket; in a session an output held by the release rule."),
        e("pcap_breakloop", "void", [h], "pcap_breakloop; also ends a session receive's wait."),
        e("pcap_stats", "int", [h, ("struct pcap_stat *", "ps")],
          "pcap_stats; in a session the packets the handle received (none dropped)."),
        e("pcap_fileno", "int", [h], "pcap_fileno; in a session a descriptor that is always readable."),
        e("pcap_get_selectable_fd", "int", [h],
          "pcap_get_selectable_fd; in a session a descriptor that is always readable."),
        e("pcap_datalink", "int", [h], "pcap_datalink; in a session Ethernet (DLT_EN10MB)."),
        e("pcap_setnonblock", "int", [h, ("int", "nonblock"), ("char *", "errbuf")],
          "pcap_setnonblock; in a session a receive without input returns at once."),
        e("pcap_close", "void", [h], "pcap_close; in a session forgets the queue's handle."),
    ]


def _spawn_entries():
    return [
        _e("ftmb_pthread_create", "int",
           [("void *", "thread"), ("const void *", "attr"), ("void *(*)(void *)", "start_routine"),
            ("void *", "arg")], "spawn", "pthread_create; the new thread gets the next thread index.",
           wraps=("pthread_create",)),
        _e("ftmb_rte_eal_remote_launch", "int",
           [("int (*)(void *)", "f"), ("void *", "arg"), ("unsigned", "worker_id")], "spawn",
           "rte_eal_remote_launch; the worker gets the next thread index.",
           wraps=("rte_eal_remote_launch",), library="dpdk"),
        _e("ftmb_rte_eal_mp_remote_launch", "int",
           [("int (*)(void *)", "f"), ("void *", "arg"), ("int", "call_main")], "spawn",
           "rte_eal_mp_remote_launch; workers get indexes in lcore order, the main lcore keeps 0.",
           wraps=("rte_eal_mp_remote_launch",), library="dpdk"),
        _e("ftmb_rte_eal_mp_wait_lcore", "void", [], "join",
           "rte_eal_mp_wait_lcore; the main lcore sleeps while its workers run (DPDK's spins).",
           wraps=("rte_eal_mp_wait_lcore",), library="dpdk"),
        _e("ftmb_rte_eal_wait_lcore", "int", [("unsigned", "worker_id")], "join",
           "rte_eal_wait_lcore; the caller sleeps while the worker runs (DPDK's spins).",
           wraps=("rte_eal_wait_lcore",), library="dpdk"),
    ]


def _alloc_entries():
    """Each allocation entry takes the wrapped call's arguments in order, every one of them kept
    (tests/test_rewrite_alloc.py checks each family). free(), realloc(), reallocarray() and
    malloc_usable_size() are not rewritten: the runtime interposes them at link time and sends arena
    pointers to the arena, others to the C library (runtime/src/arena.c)."""
    T, S, U = ("const char *", "type"), ("ftmb_size_t", "size"), ("unsigned", "align")
    SOCK = ("int", "socket")
    return [
        _e("ftmb_state_alloc", "void *", [S], "alloc", "malloc from the arena.", wraps=("malloc",)),
        _e("ftmb_state_calloc", "void *", [("ftmb_size_t", "nmemb"), S], "alloc",
           "calloc from the arena.", wraps=("calloc",)),
        _e("ftmb_state_realloc", "void *", [("void *", "ptr"), S], "alloc",
           "realloc: within the arena for an arena pointer, else the C library's (what the interposed realloc "
           "does)."),
        _e("ftmb_state_aligned_alloc", "void *", [("ftmb_size_t", "alignment"), S],
           "alloc", "aligned_alloc / memalign from the arena.", wraps=("aligned_alloc", "memalign")),
        _e("ftmb_state_valloc", "void *", [S], "alloc", "valloc from the arena (page-aligned).", wraps=("valloc",)),
        _e("ftmb_state_pvalloc", "void *", [S], "alloc",
           "pvalloc from the arena (page-aligned, size rounded up to pages).", wraps=("pvalloc",)),
        _e("ftmb_state_strdup", "char *", [("const char *", "s")], "alloc", "strdup into the arena.",
           wraps=("strdup",)),
        _e("ftmb_state_strndup", "char *", [("const char *", "s"), ("ftmb_size_t", "n")], "alloc",
           "strndup into the arena.", wraps=("strndup",)),
        _e("ftmb_state_free", "void", [("void *", "ptr")], "alloc",
           "free: into the arena for an arena pointer, else the C library's (what the interposed free does)."),
        _e("ftmb_rte_malloc", "void *", [T, S, U], "alloc", "rte_malloc from the arena.", wraps=("rte_malloc",)),
        _e("ftmb_rte_malloc_socket", "void *", [T, S, U, SOCK], "alloc",
           "rte_malloc_socket from the arena: NULL where DPDK would not serve the socket, else whole pages bound "
           "to its NUMA node.", wraps=("rte_malloc_socket",)),
        _e("ftmb_rte_zmalloc", "void *", [T, S, U], "alloc", "rte_zmalloc from the arena.", wraps=("rte_zmalloc",)),
        _e("ftmb_rte_zmalloc_socket", "void *", [T, S, U, SOCK], "alloc",
           "rte_zmalloc_socket from the arena (the socket as for ftmb_rte_malloc_socket).",
           wraps=("rte_zmalloc_socket",)),
        _e("ftmb_rte_calloc", "void *", [T, ("ftmb_size_t", "num"), S, U], "alloc",
           "rte_calloc from the arena.", wraps=("rte_calloc",)),
        _e("ftmb_rte_calloc_socket", "void *", [T, ("ftmb_size_t", "num"), S, U, SOCK], "alloc",
           "rte_calloc_socket from the arena (the socket as for ftmb_rte_malloc_socket).",
           wraps=("rte_calloc_socket",)),
        _e("ftmb_rte_realloc", "void *", [("void *", "ptr"), S, U], "alloc",
           "rte_realloc of an arena pointer (the rewriter passes others to rte_realloc).", wraps=("rte_realloc",)),
        _e("ftmb_rte_realloc_socket", "void *", [("void *", "ptr"), S, U, SOCK], "alloc",
           "rte_realloc_socket of an arena pointer (others go to rte_realloc_socket).",
           wraps=("rte_realloc_socket",)),
        _e("ftmb_rte_free", "void", [("void *", "ptr")], "alloc",
           "rte_free of an arena pointer (the rewriter passes others to rte_free).", wraps=("rte_free",)),
        _e("ftmb_state_contains", "int", [("const void *", "ptr")], "alloc",
           "1 if ptr lies in the arena (the part a checkpoint captures)."),
    ]


ENTRIES: tuple[Entry, ...] = tuple(
    _init_entries() + _ordered_entries() + _lock_entries() + _atomic_entries() + _nondet_entries()
    + _io_entries() + _pcap_entries() + _spawn_entries() + _alloc_entries()
)

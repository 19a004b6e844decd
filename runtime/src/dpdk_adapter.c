/*
 * libftmb_dpdk: the DPDK side of the ABI (mbuf receive and transmit, tx buffers, EAL launches,
 * rte_rand). Compiled only where DPDK is installed and linked only into DPDK programs; the core
 * runtime knows nothing of mbufs.
 *
 * Inside a session (FTMB_SESSION set) receive and transmit go to the loggers, not to the port:
 *   - each (port, rx queue) set up through ftmb_eth_rx_queue_setup gets the next session input
 *     queue, in set-up order (deterministic: set-up runs before the workers); its mempool is where
 *     received packets are copied into mbufs;
 *   - a transmit copies each mbuf (all segments) into the thread's output ring and frees it;
 *   - RX and TX callbacks registered on the port (rte_eth_add_rx_callback, rte_eth_add_first_rx_callback,
 *     rte_eth_add_tx_callback) run on those bursts, as inside rte_eth_rx_burst/rte_eth_tx_burst.
 * Without a session every call goes to the real rte_eth_* function (passthrough on real ports).
 */
#define _GNU_SOURCE
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_mempool.h>
#include <rte_memory.h>
#include <rte_random.h>
#include <rte_rwlock.h>

#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

uint64_t _ftmb_nd_logged(unsigned source, uint64_t (*real)(void));

struct rxq_map {
    uint16_t port, queue;
    struct rte_mempool *pool;
};

static struct rxq_map rxq[FTMB_MAX_QUEUES];
static unsigned nrxq;
static int in_time_offset = -1; /* mbuf dynamic field holding the input arrival time */

static int session_queue(uint16_t port, uint16_t queue)
{
    for (unsigned i = 0; i < nrxq; i++)
        if (rxq[i].port == port && rxq[i].queue == queue)
            return (int)i;
    return -1;
}

int ftmb_eth_rx_queue_setup(ftmb_u16 port_id, ftmb_u16 rx_queue_id, ftmb_u16 nb_rx_desc, unsigned socket_id,
                            const struct rte_eth_rxconf *rx_conf, struct rte_mempool *mb_pool)
{
    if (session_queue(port_id, rx_queue_id) < 0) {
        if (nrxq == FTMB_MAX_QUEUES) {
            fprintf(stderr, "ftmb: more than %d receive queues set up\n", FTMB_MAX_QUEUES);
            return -ENOSPC;
        }
        rxq[nrxq++] = (struct rxq_map){port_id, rx_queue_id, mb_pool};
    }
    if (in_time_offset < 0) {
        static const struct rte_mbuf_dynfield desc = {
            .name = "ftmb_in_time", .size = sizeof(uint64_t), .align = __alignof__(uint64_t)};
        in_time_offset = rte_mbuf_dynfield_register(&desc);
    }
    return rte_eth_rx_queue_setup(port_id, rx_queue_id, nb_rx_desc, socket_id, rx_conf, mb_pool);
}

/*
 * Callbacks registered on a port run inside rte_eth_rx_burst/rte_eth_tx_burst, which a session
 * bypasses. ethdev exports what those inline functions call (rte_eth_call_rx_callbacks and
 * rte_eth_call_tx_callbacks, DPDK_23 ABI) with the queue's callback list in rte_eth_fp_ops, so the
 * session runs the same lists, in registration order, with each callback's user parameter; adding
 * and removing callbacks stays ethdev's business. The list head is DPDK's plain pointer, read the
 * way ethdev reads it: relaxed, because ethdev publishes a callback with a release store and its
 * fields are then reached through this pointer (a dependency).
 */
static uint16_t rx_callbacks(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n, uint16_t max)
{
    void *cb = __atomic_load_n(&rte_eth_fp_ops[port].rxq.clbk[queue], __ATOMIC_RELAXED);
    return cb ? rte_eth_call_rx_callbacks(port, queue, pkts, n, max, cb) : n;
}

static uint16_t tx_callbacks(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    void *cb = __atomic_load_n(&rte_eth_fp_ops[port].txq.clbk[queue], __ATOMIC_RELAXED);
    return cb ? rte_eth_call_tx_callbacks(port, queue, pkts, n, cb) : n;
}

/* Fill up to nb_pkts mbufs from the session's input queue sq; the number filled. */
static uint16_t session_rx(int sq, uint16_t port_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
    struct _ftmb_rx_view views[64];
    uint16_t want = nb_pkts < 64 ? nb_pkts : 64;
    /* Allocate first: running out of mbufs must look like an empty poll, not lose entries. */
    if (want == 0 || rte_pktmbuf_alloc_bulk(rxq[sq].pool, rx_pkts, want) != 0)
        return 0;
    int n = _ftmb_rx_begin((uint16_t)sq, views, want);
    if (n < 0)
        n = 0;
    for (int i = 0; i < n; i++) {
        struct rte_mbuf *m = rx_pkts[i];
        uint32_t len = views[i].len;
        if (len > rte_pktmbuf_tailroom(m))
            len = rte_pktmbuf_tailroom(m);
        memcpy(rte_pktmbuf_mtod(m, void *), views[i].data, len);
        m->data_len = (uint16_t)len;
        m->pkt_len = len;
        m->port = port_id;
        if (in_time_offset >= 0)
            *RTE_MBUF_DYNFIELD(m, in_time_offset, uint64_t *) = views[i].time_ns;
    }
    _ftmb_rx_finish((uint16_t)sq);
    for (int i = n; i < want; i++)
        rte_pktmbuf_free(rx_pkts[i]);
    return (uint16_t)n;
}

ftmb_u16 ftmb_rx_burst(ftmb_u16 port_id, ftmb_u16 queue_id, struct rte_mbuf **rx_pkts, const ftmb_u16 nb_pkts)
{
    if (_ftmb_rt.standby) /* packet I/O is the master's: a program that polls from main waits here */
        _ftmb_standby_takeover();
    if (!_ftmb_rt.in)
        return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
    int sq = session_queue(port_id, queue_id);
    if (sq < 0)
        _ftmb_fatal("rx on port %u queue %u, which was not set up through ftmb_eth_rx_queue_setup", port_id,
                    queue_id);
    /* As in rte_eth_rx_burst, the callbacks see every poll, empty ones too; they run after the
     * runtime's receive, outside any runtime operation (their own logged accesses are the program's). */
    return rx_callbacks(port_id, queue_id, rx_pkts, session_rx(sq, port_id, rx_pkts, nb_pkts), nb_pkts);
}

ftmb_u16 ftmb_tx_burst(ftmb_u16 port_id, ftmb_u16 queue_id, struct rte_mbuf **tx_pkts, const ftmb_u16 nb_pkts)
{
    /* Without a session, or once the output logger is gone (reported once; no fault tolerance
     * from then on), packets leave through the port itself: the middlebox keeps forwarding.
     * Relaxed: out_dead guards no data (see rt.h). */
    if (_ftmb_rt.standby)
        _ftmb_standby_takeover();
    if (!_ftmb_rt.out || atomic_load_explicit(&_ftmb_rt.out_dead, memory_order_relaxed))
        return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
    /* Before the packets are stamped: records the callbacks make are covered by the vector. As in
     * rte_eth_tx_burst, their count is what is sent; the caller keeps the rest. */
    uint16_t n = tx_callbacks(port_id, queue_id, tx_pkts, nb_pkts);
    if (_ftmb_tx_begin((uint16_t)(port_id << 8 | queue_id), n)) {
        uint8_t flat[FTMB_PKT_MAX];
        for (uint16_t i = 0; i < n; i++) {
            struct rte_mbuf *m = tx_pkts[i];
            uint32_t len = m->pkt_len < FTMB_PKT_MAX ? m->pkt_len : FTMB_PKT_MAX;
            const void *data = rte_pktmbuf_read(m, 0, len, flat);
            uint64_t t = in_time_offset >= 0 ? *RTE_MBUF_DYNFIELD(m, in_time_offset, uint64_t *) : 0;
            _ftmb_tx_put((uint16_t)(port_id << 8 | queue_id), data, len, t);
        }
        _ftmb_tx_end();
    }
    for (uint16_t i = 0; i < n; i++)
        rte_pktmbuf_free(tx_pkts[i]);
    return n;
}

ftmb_u16 ftmb_tx_buffer_flush(ftmb_u16 port_id, ftmb_u16 queue_id, struct rte_eth_dev_tx_buffer *buffer)
{
    uint16_t to_send = buffer->length;
    if (to_send == 0)
        return 0;
    uint16_t sent = ftmb_tx_burst(port_id, queue_id, buffer->pkts, to_send);
    buffer->length = 0;
    if (sent != to_send)
        buffer->error_callback(&buffer->pkts[sent], (uint16_t)(to_send - sent), buffer->error_userdata);
    return sent;
}

ftmb_u16 ftmb_tx_buffer(ftmb_u16 port_id, ftmb_u16 queue_id, struct rte_eth_dev_tx_buffer *buffer,
                        struct rte_mbuf *tx_pkt)
{
    buffer->pkts[buffer->length++] = tx_pkt;
    if (buffer->length < buffer->size)
        return 0;
    return ftmb_tx_buffer_flush(port_id, queue_id, buffer);
}

struct launch_ctx {
    int (*f)(void *);
    void *arg;
    uint32_t index;
};

static int launch_trampoline(void *p)
{
    struct launch_ctx c = *(struct launch_ctx *)p;
    free(p);
    _ftmb_adopt_thread_index(c.index);
    int ret = c.f(c.arg);
    _ftmb_thread_finished(_ftmb_self);
    return ret;
}

/*
 * A checkpoint forks the master, and the fork copies one page-table entry for every page the
 * process has written (checkpoint.c). DPDK's default mbuf pool is a FIFO ring: a freed mbuf goes
 * to the back, so over a run every mbuf of the pool gets written, however few packets are in
 * flight (packet_ordering: its receiving and its sending lcore differ, so the per-lcore caches do
 * not recycle; 24 MiB of its 144 MiB pool written after 6,000 packets, the fork's CPU time 1.6x
 * l2fwd's). A LIFO pool hands out the mbufs freed last, so the written pages stay those of the
 * packets in flight. Under the runtime (a session, or a replay), pools that the program creates
 * without naming their ops (rte_pktmbuf_pool_create) use DPDK's lock-free stack, lf_stack (no lock
 * that a preempted or parked lcore could hold), unless the command line chose
 * (--mbuf-pool-ops-name) or the driver is not there. DPDK promises no order of a pool's free
 * mbufs, so which one a get returns is not the program's to depend on. Called by ftmb_init, right
 * after rte_eal_init, before the program creates its pools.
 */
void _ftmb_dpdk_after_eal(void)
{
    if (rte_mbuf_user_mempool_ops() != NULL)
        return;
    for (uint32_t i = 0; i < rte_mempool_ops_table.num_ops; i++)
        if (strcmp(rte_mempool_ops_table.ops[i].name, "lf_stack") == 0) {
            (void)rte_mbuf_set_user_mempool_ops("lf_stack"); /* (failing, DPDK's default stays) */
            return;
        }
}

/*
 * Checkpoints fork the master, and the child must keep DPDK's memory as it was (checkpoint.c).
 * Without hugepages DPDK maps its memory MAP_SHARED from a memfd, so the child would see the master
 * change it: remap each contiguous chunk MAP_PRIVATE over the same file range (the contents are the
 * file's, so nothing moves) before the first worker runs.
 */
static int remap_chunk(const struct rte_memseg_list *msl, const struct rte_memseg *ms, size_t len, void *arg)
{
    int *failed = arg;
    int fd = rte_memseg_get_fd_thread_unsafe(ms);
    size_t off = 0, last_off = 0;
    if (fd < 0 || rte_memseg_get_fd_offset_thread_unsafe(ms, &off) != 0)
        return 0; /* anonymous private memory: a fork already copies it on write */
    const struct rte_memseg *last = ms + (len / msl->page_sz) - 1;
    if (rte_memseg_get_fd_thread_unsafe(last) != fd || rte_memseg_get_fd_offset_thread_unsafe(last, &last_off) != 0 ||
        last_off != off + len - last->len) {
        *failed = 1;
        return -1;
    }
    if (mmap(ms->addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, (off_t)off) != ms->addr) {
        *failed = 1;
        return -1;
    }
    return 0;
}

/*
 * The other way round for the page descriptors (one struct rte_memseg per 4 KiB page: 6 MiB for
 * `--no-huge -m 512`): with --no-shconf DPDK keeps them in private anonymous memory that it writes
 * once at initialization, so every fork copied their ~1,500 page-table entries (two fifths of a DPDK
 * app's anonymous pages). Without hugepages DPDK's memory is fixed at initialization (no-huge is
 * its legacy mode: no segment is ever allocated or freed), so the descriptors never change again:
 * move them into shared memory (same address, same contents), which a fork does not copy. Only the
 * whole pages of the element array, which its mapping holds alone.
 */
static int share_descriptors(const struct rte_memseg_list *msl, void *arg)
{
    int *failed = arg;
    const struct rte_fbarray *a = &msl->memseg_arr;
    long page = sysconf(_SC_PAGESIZE);
    size_t len = ((size_t)a->len * a->elt_sz) / (size_t)page * (size_t)page;
    if (msl->external || !a->data || len == 0 || (uintptr_t)a->data % (uintptr_t)page)
        return 0;
    void *shared = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        *failed = 1;
        return -1;
    }
    memcpy(shared, a->data, len);
    /* Replaces the private pages in one step: a thread reading them meanwhile sees the same bytes. */
    if (mremap(shared, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, a->data) != a->data) {
        munmap(shared, len);
        *failed = 1;
        return -1;
    }
    return 0;
}

static void dpdk_memory_private(void)
{
    static int done;
    const char *ms = getenv("FTMB_CHECKPOINT_MS");
    if (done || _ftmb_mode_now != FTMB_MODE_RECORD || !ms || !*ms)
        return;
    done = 1;
    int failed = 0;
    if (rte_memseg_contig_walk(remap_chunk, &failed) != 0 || failed)
        _ftmb_fatal("checkpoints: cannot remap DPDK's memory private (hugepages without a private mapping?)");
    if (!rte_eal_has_hugepages() && (rte_memseg_list_walk(share_descriptors, &failed) != 0 || failed))
        _ftmb_fatal("checkpoints: cannot move DPDK's page descriptors into shared memory");
}

static int launch(int (*f)(void *), void *arg, unsigned worker_id)
{
    _ftmb_me(); /* the launcher holds its index before its workers do */
    struct launch_ctx *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (struct launch_ctx){f, arg, _ftmb_claim_thread_index()};
    int rc = rte_eal_remote_launch(launch_trampoline, c, worker_id);
    if (rc != 0)
        free(c);
    return rc;
}

int ftmb_rte_eal_remote_launch(int (*f)(void *), void *arg, unsigned worker_id)
{
    dpdk_memory_private();
    _ftmb_spawn_begin((void (*)(void))f, "rte_eal_remote_launch");
    return launch(f, arg, worker_id);
}

int ftmb_rte_eal_mp_remote_launch(int (*f)(void *), void *arg, int call_main)
{
    dpdk_memory_private();
    _ftmb_spawn_begin((void (*)(void))f, "rte_eal_mp_remote_launch");
    unsigned lc;
    RTE_LCORE_FOREACH_WORKER(lc)
        if (rte_eal_get_lcore_state(lc) != WAIT)
            return -EBUSY;
    RTE_LCORE_FOREACH_WORKER(lc) {
        int rc = launch(f, arg, lc);
        if (rc != 0)
            return rc;
    }
    if (call_main == CALL_MAIN)
        f(arg);
    return 0;
}

/* DPDK's waits for a worker spin (rte_pause) until it returns: a main lcore that launched its
 * workers with SKIP_MAIN (examples/nat, many of DPDK's apps) takes a whole CPU for nothing, which a
 * follower or a backup sharing its host's CPUs with its workers, the loggers or the relays does not
 * have: on a 2-CPU machine it took as much as the follower's worker lcore (bench/RESULTS.md, Relays
 * that sleep). Here the waiting lcore sleeps 200 µs between looks, then DPDK's wait returns at once.
 * A checkpoint's signal ends a sleep early (EINTR): the loop looks again. */
static void sleep_while_running(unsigned worker_id)
{
    struct timespec nap = {0, 200000};
    while (rte_eal_get_lcore_state(worker_id) == RUNNING)
        nanosleep(&nap, NULL);
}

void ftmb_rte_eal_mp_wait_lcore(void)
{
    unsigned lc;
    RTE_LCORE_FOREACH_WORKER(lc)
        sleep_while_running(lc);
    rte_eal_mp_wait_lcore();
}

int ftmb_rte_eal_wait_lcore(unsigned worker_id)
{
    if (worker_id < RTE_MAX_LCORE && worker_id != rte_get_main_lcore())
        sleep_while_running(worker_id);
    return rte_eal_wait_lcore(worker_id);
}

/* rte_rwlock: DPDK's own inline functions, ordered like the core's lock wrappers. */
static int rw_read(volatile void *l) { rte_rwlock_read_lock((rte_rwlock_t *)l); return 0; }
static int rw_write(volatile void *l) { rte_rwlock_write_lock((rte_rwlock_t *)l); return 0; }
static int rw_try_read(volatile void *l) { return rte_rwlock_read_trylock((rte_rwlock_t *)l) == 0 ? 0 : EBUSY; }
static int rw_try_write(volatile void *l) { return rte_rwlock_write_trylock((rte_rwlock_t *)l) == 0 ? 0 : EBUSY; }

void ftmb_rte_rwlock_read_lock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    _ftmb_locked_acquire(rw_read, rw_read, rwl, obj, site, 0, 1);
}
int ftmb_rte_rwlock_read_trylock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    return _ftmb_locked_acquire(rw_try_read, rw_read, rwl, obj, site, 1, 1) == 0 ? 0 : -EBUSY;
}
void ftmb_rte_rwlock_read_unlock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    (void)obj;
    (void)site;
    rte_rwlock_read_unlock((rte_rwlock_t *)rwl);
}
void ftmb_rte_rwlock_write_lock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    _ftmb_locked_acquire(rw_write, rw_write, rwl, obj, site, 0, 0);
}
int ftmb_rte_rwlock_write_trylock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    return _ftmb_locked_acquire(rw_try_write, rw_write, rwl, obj, site, 1, 0) == 0 ? 0 : -EBUSY;
}
void ftmb_rte_rwlock_write_unlock(volatile void *rwl, ftmb_obj_t obj, ftmb_site_t site)
{
    (void)obj;
    (void)site;
    rte_rwlock_write_unlock((rte_rwlock_t *)rwl);
}

static uint64_t real_rte_rand(void) { return rte_rand(); }

ftmb_u64 ftmb_rte_rand(void) { return _ftmb_nd_logged(_FTMB_ND_RTE_RAND, real_rte_rand); }

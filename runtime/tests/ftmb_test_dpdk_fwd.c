/*
 * ftmb-test-dpdk-fwd: an l2fwd-shaped DPDK forwarder written against the ABI's DPDK entry points
 * (the adapter in libftmb_dpdk). Port 0, one queue per worker lcore; each worker receives with
 * ftmb_rx_burst, counts packets atomically, and sends through a tx buffer (ftmb_tx_buffer and
 * ftmb_tx_buffer_flush, drained on a virtual-time timer like l2fwd's).
 *
 * usage: ftmb-test-dpdk-fwd EAL_ARGS...   e.g. --no-huge -m 256 --no-pci --no-shconf
 *                                              --vdev net_null0 -l 0-1
 * Inside a session (FTMB_SESSION) packets come from the input logger and go to the output logger;
 * workers stop when their input ends. Prints "forwarded N packets" and "mbuf pool ops NAME" (the
 * pool's driver: the runtime's choice, dpdk_adapter.c). Once every worker has flushed,
 * every mbuf must be back in the pool (its ring plus the lcore caches, counted exactly: a leak or a
 * double free in the adapter's receive or transmit shows here). Exit 0, or 1 on set-up errors or
 * when the pool does not add up.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rwlock.h>

#include "ftmb/ftmb.h"

#define BURST 32
#define OBJ_FORWARDED 1
#define OBJ_BURSTS 2

static unsigned long long forwarded;
static rte_rwlock_t bursts_lock = RTE_RWLOCK_INITIALIZER;
static unsigned long long bursts; /* written under the write lock, read under the read lock */
static struct rte_eth_dev_tx_buffer *tx_buffers[RTE_MAX_LCORE];

static int worker(void *arg)
{
    (void)arg;
    unsigned lcore = rte_lcore_id();
    uint16_t queue = (uint16_t)rte_lcore_index((int)lcore);
    struct rte_eth_dev_tx_buffer *buf = tx_buffers[lcore];
    ftmb_u64 drain = (ftmb_rte_get_tsc_hz() + 9999) / 10000; /* 100 us, like l2fwd */
    ftmb_u64 last = ftmb_rte_rdtsc();
    struct rte_mbuf *pkts[BURST];
    for (;;) {
        ftmb_u64 now = ftmb_rte_rdtsc();
        if (now - last > drain) {
            ftmb_tx_buffer_flush(0, queue, buf);
            last = now;
        }
        uint16_t n = ftmb_rx_burst(0, queue, pkts, BURST);
        if (n == 0) {
            if (ftmb_input_done(queue))
                break;
            rte_pause();
            continue;
        }
        ftmb_atomic_fetch_add_8(&forwarded, n, __ATOMIC_RELAXED, OBJ_FORWARDED, 1);
        ftmb_rte_rwlock_read_lock(&bursts_lock, OBJ_BURSTS, 2);
        unsigned long long seen = bursts;
        ftmb_rte_rwlock_read_unlock(&bursts_lock, OBJ_BURSTS, 3);
        if (seen % 4 == 0 || ftmb_rte_rwlock_write_trylock(&bursts_lock, OBJ_BURSTS, 4) != 0)
            ftmb_rte_rwlock_write_lock(&bursts_lock, OBJ_BURSTS, 5);
        bursts++;
        ftmb_rte_rwlock_write_unlock(&bursts_lock, OBJ_BURSTS, 6);
        for (uint16_t i = 0; i < n; i++)
            ftmb_tx_buffer(0, queue, buf, pkts[i]);
    }
    ftmb_tx_buffer_flush(0, queue, buf);
    return 0;
}

/* The thread roots, registered the way the rewriter's constructor registers an instrumented file's. */
static void (*const roots[])(void) = {(void (*)(void))worker};
__attribute__((constructor)) static void register_roots(void) { ftmb_register_file(NULL, NULL, 0, roots, 1); }

int main(int argc, char **argv)
{
    if (rte_eal_init(argc, argv) < 0) {
        fprintf(stderr, "ftmb-test-dpdk-fwd: EAL initialization failed\n");
        return 1;
    }
    if (ftmb_init() != 0)
        return 1;
    unsigned nq = rte_lcore_count();
    if (rte_eth_dev_count_avail() < 1) {
        fprintf(stderr, "ftmb-test-dpdk-fwd: no port (add --vdev net_null0)\n");
        return 1;
    }
    struct rte_mempool *pool = rte_pktmbuf_pool_create("mbufs", 4095, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                       (int)rte_socket_id());
    struct rte_eth_conf conf = {0};
    if (!pool || rte_eth_dev_configure(0, (uint16_t)nq, (uint16_t)nq, &conf) != 0) {
        fprintf(stderr, "ftmb-test-dpdk-fwd: cannot configure port 0\n");
        return 1;
    }
    for (uint16_t q = 0; q < nq; q++)
        if (ftmb_eth_rx_queue_setup(0, q, 256, rte_socket_id(), NULL, pool) != 0 ||
            rte_eth_tx_queue_setup(0, q, 256, rte_socket_id(), NULL) != 0) {
            fprintf(stderr, "ftmb-test-dpdk-fwd: cannot set up queue %u\n", q);
            return 1;
        }
    unsigned lcore;
    RTE_LCORE_FOREACH(lcore) {
        tx_buffers[lcore] = rte_zmalloc("txbuf", RTE_ETH_TX_BUFFER_SIZE(BURST), 0);
        rte_eth_tx_buffer_init(tx_buffers[lcore], BURST);
    }
    if (rte_eth_dev_start(0) != 0) {
        fprintf(stderr, "ftmb-test-dpdk-fwd: cannot start port 0\n");
        return 1;
    }
    ftmb_rte_eal_mp_remote_launch(worker, NULL, CALL_MAIN);
    rte_eal_mp_wait_lcore();
    ftmb_exit();
    printf("forwarded %llu packets\nmbuf pool ops %s\n", forwarded, rte_mempool_get_ops(pool->ops_index)->name);
    /* Not rte_mempool_avail_count: it caps its sum at the pool's size, which would hide a double free. */
    unsigned free_mbufs = rte_mempool_get_ops(pool->ops_index)->get_count(pool);
    for (unsigned lc = 0; lc < RTE_MAX_LCORE; lc++)
        free_mbufs += pool->local_cache ? pool->local_cache[lc].len : 0;
    if (free_mbufs != pool->size) {
        fprintf(stderr, "ftmb-test-dpdk-fwd: %u of the pool's %u mbufs are free after the run\n", free_mbufs,
                pool->size);
        return 1;
    }
    rte_eth_dev_stop(0);
    rte_eal_cleanup();
    return 0;
}

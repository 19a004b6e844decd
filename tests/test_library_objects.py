"""Library objects in the analysis: calls on a library handle are accesses of the handle's object,
and lcores that make them concurrently get the ordered strategy. Event devices are named by an
integer id, not a pointer: the model names one object for them (`object = "rte_event_dev"` in
apimodels/dpdk.toml)."""

from __future__ import annotations

import re
import textwrap

from analyzer_util import dpdk_cflags, var

from ftmb_instrument.frontend import from_files
from ftmb_instrument.plan import PlanOptions
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

EVENTDEV = r"""
#include <stdint.h>
#include <stdlib.h>
#include <rte_eal.h>
#include <rte_eventdev.h>
#include <rte_lcore.h>

static uint8_t dev;
static uint64_t forwarded[RTE_MAX_LCORE];

static int worker(void *arg)
{
    uint8_t port = (uint8_t)(uintptr_t)arg;
    struct rte_event ev[16];

    for (;;) {
        uint16_t n = rte_event_dequeue_burst(dev, port, ev, 16, 0);
        for (uint16_t i = 0; i < n; i++) {
            ev[i].queue_id++;
            ev[i].op = RTE_EVENT_OP_FORWARD;
        }
        forwarded[rte_lcore_id()] += rte_event_enqueue_burst(dev, port, ev, n);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct rte_event_dev_config config = { .nb_event_queues = 2, .nb_event_ports = 2 };

    if (rte_eal_init(argc, argv) < 0 || rte_event_dev_configure(dev, &config) < 0)
        return EXIT_FAILURE;
    for (uint8_t p = 0; p < 2; p++)
        if (rte_event_port_setup(dev, p, NULL) < 0 || rte_event_port_link(dev, p, NULL, NULL, 0) < 0)
            return EXIT_FAILURE;
    rte_event_dev_start(dev);
    uintptr_t port = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore)
        rte_eal_remote_launch(worker, (void *)port++, lcore);
    rte_eal_mp_wait_lcore();
    return 0;
}
"""


def _plan(tmp_path, source: str):
    path = tmp_path / "prog.c"
    path.write_text(textwrap.dedent(source))
    return make_plan(from_files([path], ["-std=gnu11", *dpdk_cflags()]), load_semantics(), str(tmp_path),
                     PlanOptions(), jobs=1)


def test_lcores_sharing_an_event_device_are_ordered(tmp_path):
    report, plan = _plan(tmp_path, EVENTDEV)
    v = var(report, "rte_event_dev")
    assert (v.cls, v.protection, v.scope) == ("shared_rw", "atomic", "heap"), v
    workers = {a.loc.split(":")[1] for a in v.accesses if "worker" in a.threads and a.concurrent}
    assert len(workers) == 2, v.accesses  # the dequeue and the enqueue
    assert var(report, "dev").cls == "shared_ro"  # the id itself is only read
    (obj,) = [o for o in plan.objects if o.name == "rte_event_dev"]
    assert obj.strategy == "ordered"
    (text,) = [r.text.decode() for r in apply_plan(plan)]
    for call in ("rte_event_dequeue_burst", "rte_event_enqueue_burst"):
        assert re.search(rf"ftmb_ordered_begin\({obj.obj}, \d+\)(?:, \d+\))?;[^;]*\b{call}\(", text), call
    # main configures the device before the launch: nothing to order there
    assert not re.search(r"ftmb_ordered_begin\(\d+, \d+\)(?:, \d+\))?;[^;]*\brte_event_(dev_configure|port_setup)\(",
                         text)


def test_one_lcore_on_an_event_device_is_not_ordered(tmp_path):
    report, plan = _plan(tmp_path, EVENTDEV.replace("RTE_LCORE_FOREACH_WORKER(lcore)\n",
                                                    "lcore = rte_get_next_lcore(-1, 1, 0);\n"))
    # heap objects are reported only when they are shared
    assert "rte_event_dev" not in {v.name for v in report.variables}
    assert not [o for o in plan.objects if o.name == "rte_event_dev"]


DISTRIBUTOR = r"""
#include <stdint.h>
#include <rte_distributor.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

static struct rte_distributor *dist;

static int worker(void *arg)
{
    struct rte_mbuf *bufs[8];
    unsigned n = 0;

    (void)arg;
    for (;;) {
        rte_distributor_request_pkt(dist, 0, bufs, n);
        int got;
        while ((got = rte_distributor_poll_pkt(dist, 0, bufs)) < 0)
            ;
        n = (unsigned)got;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct rte_mbuf *bufs[32];

    if (rte_eal_init(argc, argv) < 0)
        return 1;
    dist = rte_distributor_create("d", rte_socket_id(), 1, RTE_DIST_ALG_BURST);
    rte_eal_remote_launch(worker, NULL, rte_get_next_lcore(-1, 1, 0));
    for (;;) {
        rte_distributor_process(dist, bufs, 0);
        rte_distributor_returned_pkts(dist, bufs, 32);
    }
}
"""


def test_a_distributor_is_refused_not_hung(tmp_path):
    """Its handshakes wait inside the library for the other lcore's call on the same handle, which
    the ordered region keeps out: with the calls ordered the record deadlocks (seen with gdb: the
    worker spinning in rte_distributor_request_pkt inside the region, the distributor lcore waiting
    in ftmb_ordered_begin for its process). So the calls that wait are unreplayable."""
    _, plan = _plan(tmp_path, DISTRIBUTOR)
    refused = sorted(re.match(r"(\w+)\(\)", p.message).group(1) for p in plan.errors)
    assert refused == ["rte_distributor_process", "rte_distributor_request_pkt"], [p.message for p in plan.errors]
    assert all("deadlock" in p.message for p in plan.errors)

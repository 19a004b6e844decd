"""`ftmb-instrument traffic OUT.pcap`: write a seeded, realistic client/server trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import traffic
from ..report.output import replacing
from . import app, stderr

HELP = """Write a deterministic trace of concurrent client/server flows to OUT.pcap.

TCP connections (handshake, data both ways, FIN or RST teardown or left open) and UDP exchanges;
heavy-tailed flow sizes, Poisson arrivals. Every packet carries a unique tag (its index in the
file: TCP timestamp TSval or the first four bytes of a UDP payload). The same options always give
a byte-identical file. A regular OUT is written to a temporary name and renamed when complete (a
symlink's target is replaced, a device or FIFO is written directly).

Exit codes: 0 written; 1 bad option value or unwritable output; 2 usage error.
"""


@app.command("traffic", help=HELP)
def traffic_command(
    out: Annotated[Path, typer.Argument(help="The pcap file to write.", show_default=False)],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    flows: Annotated[int, typer.Option(help="Number of flows.")] = 200,
    packets: Annotated[int, typer.Option(help="Exact number of packets.")] = 5000,
    duration: Annotated[float, typer.Option("--duration", help="Span of flow start times, seconds.")] = 1.0,
    udp_fraction: Annotated[float, typer.Option(help="Fraction of flows that are UDP.")] = 0.2,
    rst_fraction: Annotated[float, typer.Option(help="Fraction of TCP flows ending with a RST.")] = 0.2,
    open_fraction: Annotated[float, typer.Option(help="Fraction of TCP flows never closed.")] = 0.1,
    clients: Annotated[str, typer.Option(help="Client prefix (IPv4/len).")] = "10.0.0.0/16",
    server: Annotated[Optional[list[str]], typer.Option(
        "--server", help="A server address (repeatable; default: 198.51.100.10-13).")] = None,
    microsecond: Annotated[bool, typer.Option(help="Microsecond pcap timestamps (default nanosecond).")] = False,
) -> None:
    with replacing(out) as name:
        summary = traffic.generate(name, seed=seed, flows=flows, packets=packets, duration_s=duration,
                                   udp_fraction=udp_fraction, rst_fraction=rst_fraction,
                                   open_fraction=open_fraction, clients=clients,
                                   servers=tuple(server) if server else traffic.DEFAULT_SERVERS,
                                   nanosecond=not microsecond)
    stderr.print(f"{out}: {summary.packets} packets, {summary.flows} flows ({summary.tcp_flows} TCP: "
                 f"{summary.fin_closed} FIN, {summary.rst_closed} RST, {summary.left_open} open; "
                 f"{summary.udp_flows} UDP), largest flow {summary.largest_flow} packets, "
                 f"{summary.duration_ns / 1e9:.3f} s", markup=False, soft_wrap=True)

"""`ftmb-instrument config`: how other builds compile and link against the ftmb runtime."""

from __future__ import annotations

from typing import Annotated

import typer

from ..bundle import ensure_runtime, runtime_paths
from ..errors import InputError
from . import app

HELP = """Print the flags that build instrumented code against the ftmb runtime, pkg-config style:
`--cflags` (the include directory of <ftmb/ftmb.h>) and `--libs` (libftmb, and with --dpdk
libftmb_dpdk, with --pcap libftmb_pcap before it; put them before the DPDK and system libraries,
e.g. before -lpcap). `--libs` builds the runtime
from its sources first when needed (into runtime/build in a checkout, or for an installed tool the
user's cache, $XDG_CACHE_HOME/ftmb-instrument/; $FTMB_RUNTIME_BUILD overrides both).

Example: gcc $(ftmb-instrument config --cflags) prog.c $(ftmb-instrument config --libs) -o prog

Exit codes: 0 printed; 1 the runtime could not be built; 2 usage error.
"""


@app.command("config", help=HELP)
def config_cmd(
    cflags: Annotated[bool, typer.Option("--cflags", help="Compiler flags.")] = False,
    libs: Annotated[bool, typer.Option("--libs", help="Linker flags (builds the runtime when needed).")] = False,
    dpdk: Annotated[bool, typer.Option("--dpdk", help="Include the DPDK adapter library in --libs.")] = False,
    pcap: Annotated[bool, typer.Option("--pcap", help="Include the libpcap adapter library in --libs.")] = False,
) -> None:
    if not (cflags or libs):
        raise InputError("nothing to print: give --cflags and/or --libs")
    out = []
    if cflags:
        out.append(f"-I{runtime_paths()['include']}")
    if libs:
        p = ensure_runtime(dpdk, pcap=pcap)
        out += ([str(p["dpdk"])] if dpdk else []) + ([str(p["pcap"])] if pcap else []) + [str(p["core"]), "-pthread"]
    typer.echo(" ".join(out))

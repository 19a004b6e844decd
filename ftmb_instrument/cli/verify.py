"""`ftmb-instrument verify`: the oracle of a failover run's released output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import run as runlib
from .. import verify as verifylib
from ..errors import FtmbError
from . import app

HELP = """Check the packets a failover run released (OUT of `run --kill-master-at`) against an
uninterrupted run of the same instrumented program on the same input (run here, in record mode):
every packet the program forwards is released exactly once (no loss, no duplicate); with one
queue the released stream is byte for byte the uninterrupted one; and with --example the
example's invariants hold on the released output (nat, firewall, lb, ids, flowmon). Give the program and
its arguments after `--`, as for `run`.

`run` writes a manifest beside its output (OUT.ftmb.json): when it is there, verify takes the
program (unless given after `--`), the queues (unless --queues) and the input logger's rate and
tick from it, so the reference run is served as the failover run was.

Exit codes: 0 no violation; 1 violations (listed) or a failed reference run; 2 usage error.
"""


@app.command("verify", help=HELP, context_settings={"allow_extra_args": True})
def verify_command(
    ctx: typer.Context,
    input_pcap: Annotated[Path, typer.Option("--in", "-i", help="The run's input (pcap).", show_default=False)],
    released: Annotated[Path, typer.Option("--released", "-r", help="The run's released output (pcap).",
                                           show_default=False)],
    queues: Annotated[Optional[int], typer.Option(min=1, help="Session input queues of the run (default: the "
                                                   "run's manifest, else 1).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Most master threads of the reference run, as for "
                                                   "run (default: as many as the runtime allows).")] = None,
    example: Annotated[Optional[str], typer.Option(help="Check this example's invariants: nat, firewall, "
                                                   "lb, ids or flowmon.")] = None,
) -> None:
    nf_argv = list((ctx.obj or {}).get("clang_args", [])) + list(ctx.args)
    manifest = runlib.read_manifest(released)
    if manifest is not None:
        nf_argv = nf_argv or list(manifest["program"])
        queues = manifest["queues"] if queues is None else queues
    if not nf_argv:
        raise FtmbError(f"no program: give it after -- (no run manifest {runlib.manifest_path(released)})")
    queues = 1 if queues is None else queues
    if example is not None and example not in verifylib.CHECKERS:
        raise typer.BadParameter(f"{example}: expected one of {', '.join(verifylib.CHECKERS)}",
                                 param_hint="--example")
    argv_opts = nf_argv[nf_argv.index("--") + 1:] if "--" in nf_argv else []
    v = verifylib.verify(nf_argv, input_pcap, released, queues=queues, threads=threads, example=example,
                         example_args=argv_opts, **verifylib.run_conditions(released))
    console = Console(highlight=False)
    if manifest is not None:
        console.print(f"conditions from {runlib.manifest_path(released)}: {len(nf_argv) and nf_argv[0]}, "
                      f"{queues} queue{'s' if queues != 1 else ''}, rate {manifest['rate'] or 'unlimited'}, "
                      f"tick {manifest['tick_us'] or 'default'}", markup=False, soft_wrap=True)
    console.print(f"released {v.released} packets; violations: {len(v.violations)}")
    for x in v.violations[:50]:
        console.print(f"  {x}", markup=False)
    if not v.ok:
        raise FtmbError(v.replay_failure or f"{len(v.violations)} violations")

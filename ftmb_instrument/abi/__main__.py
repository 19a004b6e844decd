"""`python -m ftmb_instrument.abi [--check] [--root DIR]`: write (or check) the generated ABI files.

Exit codes: 0 written / up to date, 1 a checked file differs (its path is printed), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .generate import OUTPUTS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftmb_instrument.abi", description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="repository root")
    args = ap.parse_args(argv)
    root = Path(args.root)
    stale = []
    for rel, render in OUTPUTS.items():
        path = root / rel
        text = render()
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for rel in stale:
        print(f"{rel}: differs from ftmb_instrument/abi/spec.py; run `python -m ftmb_instrument.abi`",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

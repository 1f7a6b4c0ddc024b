"""Command-line plumbing shared by the pipeline's tools (canvit-train, canvit-eval, dinov3-probes).

- `dispatch`: each subcommand lives in its own module with `main(argv) -> int`; the dispatcher imports only
  the one that runs, so `--help` stays fast and one subcommand's heavy imports never slow another.
- `int_at_least`, `float_in`, `store_dir`: argparse `type=` validators whose errors name the argument and the
  valid range (or what is wrong).
- `pick_device`: the `--device` flag's meaning (default / "auto": cuda if available, else cpu); given the
  parser, a bad name is a usage error (exit 2). Imports torch lazily, so this module (and `canvit_results`)
  stays importable without it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import torch


def dispatch(prog: str, description: str, commands: Mapping[str, tuple[str, str]], argv: Sequence[str] | None = None,
             examples: Sequence[str] = ()) -> int:
    """Run `prog SUBCOMMAND ...`. `commands` maps a name to ("package.module", one-line help); `examples`
    are command lines shown under "examples:" in the usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(len(n) for n in commands)
    listing = "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, h) in commands.items())
    usage = f"usage: {prog} SUBCOMMAND [ARGS...]\n\n{description}\n\nsubcommands:\n{listing}\n\n" \
            f"`{prog} SUBCOMMAND --help` explains each one."
    if examples:
        usage += "\n\nexamples:\n" + "\n".join(f"  {e}" for e in examples)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown subcommand {name!r}; choose one of: {', '.join(commands)}\n", file=sys.stderr)
        print(usage, file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    return int(module.main(rest) or 0)


def store_dir(v: str) -> str:
    """argparse `type=` of a `--results DIR` flag: a results store that exists as a folder or will be made.

    A path naming a file is refused at once (else a long job fails at its first write).
    """
    import os

    if v and os.path.exists(v) and not os.path.isdir(v):
        raise argparse.ArgumentTypeError(f"{v!r} is a file, not a results store folder")
    return v


def int_at_least(lo: int, name: str | None = None) -> Callable[[str], int]:
    """argparse `type=`: an integer >= `lo`.

    The error reads "`name` must be an integer >= lo, got X" (or "expected an integer >= lo, got X" without a
    name; argparse prefixes "argument --flag:" either way).
    """
    what = f"{name} must be" if name else "expected"

    def parse(v: str) -> int:
        try:
            x = int(v)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{what} an integer >= {lo}, got {v!r}") from None
        if x < lo:
            raise argparse.ArgumentTypeError(f"{what} an integer >= {lo}, got {x}")
        return x

    parse.__name__ = f"integer >= {lo}"  # argparse names the type in "invalid <type> value" fallbacks
    return parse


def float_in(lo: float, hi: float, name: str | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[str], float]:
    """argparse `type=`: a float in the interval [lo, hi] (`lo_open` / `hi_open` exclude an end; NaN never passes).

    The error reads "`name` must be in [lo, hi), got X" (interval brackets as configured).
    """
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    what = f"{name} must be" if name else "expected a number"

    def parse(v: str) -> float:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{what} in {interval}, got {v!r}") from None
        ok = not math.isnan(x) and (lo < x if lo_open else lo <= x) and (x < hi if hi_open else x <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"{what} in {interval}, got {x:g}")
        return x

    parse.__name__ = f"number in {interval}"
    return parse


def pick_device(name: str | None, flag: str = "--device", parser: argparse.ArgumentParser | None = None
                ) -> torch.device:
    """The torch device a `--device NAME` flag asks for. None or "auto": cuda if available, else cpu.

    A name torch does not know, or cuda on a machine without it, exits with one line naming `flag`
    (SystemExit, no traceback) instead of failing deep inside the first `.to(device)`; with `parser`, through
    `parser.error` (usage, "PROG: error: ...", exit status 2).
    """
    import torch

    def fail(msg: str) -> NoReturn:
        if parser is not None:
            parser.error(msg)
        raise SystemExit(msg)

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        fail(f"{flag} {name}: not a torch device (e.g. cpu, cuda, cuda:1, auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"{flag} {name}: CUDA is not available on this machine (use {flag} cpu)")
    return dev

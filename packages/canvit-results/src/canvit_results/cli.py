"""Command-line plumbing shared by the pipeline's tools (canvit-train, canvit-eval, dinov3-probes).

- `dispatch`: each subcommand lives in its own module with `main(argv) -> int`; the dispatcher imports only
  the one that runs, so `--help` stays fast and one subcommand's heavy imports never slow another.
- `run_main`: what every entry point runs through (dispatch uses it): Ctrl-C ends a command with one line
  ("PROG: interrupted at <where>; run the same command to resume") and exit status 130, never a traceback.
- `int_at_least`, `float_in`, `store_dir`, `output_dir`, `output_file`: argparse `type=` validators whose
  errors name the argument and the valid range (or what is wrong). The output ones check, before any work,
  that the location is (or can be made) a folder / file this user can write.
- `default_workers()`: the default of every `--workers` / `--loader-workers` flag, min(8, CPUs).
- `HelpFormatter`: argparse help that shows every flag's default and keeps the epilog's examples as written.
- `pick_device`: the `--device` flag's meaning (default / "auto": cuda if available, else cpu); given the
  parser, a bad name is a usage error (exit 2). Imports torch lazily, so this module (and `canvit_results`)
  stays importable without it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import signal
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
    return run_main(f"{prog} {name}", module.main, rest,
                    resume_hint=getattr(module, "RESUME_HINT", "run the same command to resume"))


def _where(snapshot: list[str], tb) -> str:
    """The place a Ctrl-C interrupted: the progress bars running then (desc n/total), else the innermost
    frame of our own code."""
    if snapshot:
        return ", ".join(snapshot)
    import traceback

    ours = [f for f in traceback.extract_tb(tb) if any(f"{os.sep}{p}{os.sep}" in f.filename for p in _OUR_PACKAGES)]
    if ours:
        f = ours[-1]
        return f"{f.name} ({os.path.basename(f.filename)}:{f.lineno})"
    return time_now()


_OUR_PACKAGES = ("canvit_model", "canvit_results", "canvit_data", "canvit_train", "canvit_eval", "dinov3_probes",
                 "paper")


def time_now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S UTC")


def _bars() -> list[str]:
    """desc n/total of every open tqdm bar (what the user was watching)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of every long command
        return []
    out = []
    for bar in list(getattr(tqdm, "_instances", ())):
        if getattr(bar, "disable", False):
            continue
        total = f"/{bar.total}" if bar.total else ""
        out.append(f"{(bar.desc or 'progress').rstrip(': ')} {bar.n}{total}")
    return out


def run_main(prog: str, main: Callable[[list[str]], int | None], argv: Sequence[str],
             resume_hint: str = "run the same command to resume") -> int:
    """`main(argv)` with Ctrl-C turned into one line on stderr and exit status 130.

    A SIGINT handler snapshots the open progress bars at the moment of the interrupt (they close while the
    exception unwinds) and raises KeyboardInterrupt as Python's default handler does; a command that installs
    its own handler (pretrain checkpoints first) keeps it for its own span. Set CANVIT_TRACEBACK=1 for the
    traceback.
    """
    snapshot: list[str] = []

    def on_sigint(signum: int, frame: object) -> None:
        snapshot[:] = _bars()
        raise KeyboardInterrupt

    previous = None
    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: keep Python's handler
        previous = None
    try:
        return int(main(list(argv)) or 0)
    except KeyboardInterrupt as e:
        if os.environ.get("CANVIT_TRACEBACK"):
            raise
        print(f"\n{prog}: interrupted at {_where(snapshot or _bars(), e.__traceback__)}; {resume_hint}",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def resolved_location(spec: str | os.PathLike[str]) -> str:
    """A local file or folder as its resolved absolute path (what outputs record, so a resume from another
    working directory, or with the path spelled another way, matches); anything else (a hub id) as given."""
    from pathlib import Path

    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else str(spec)


def same_location(stored: object, now: str) -> bool:
    """`stored` (as an earlier run recorded it, maybe relative) names the same thing as `now` (resolved_location'd)."""
    return stored == now or (isinstance(stored, str) and resolved_location(stored) == now)


def default_workers() -> int:
    """min(8, CPUs): the default worker-process count (8 on a 2-core box oversubscribes and warns)."""
    return max(1, min(8, os.cpu_count() or 1))


def _worth_showing(default: object) -> bool:
    return default is not None and default is not False and default != argparse.SUPPRESS and default != ""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default (unless it already says one, or it has none worth saying);
    description and epilog keep their line breaks (examples)."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and action.nargs != 0 and _worth_showing(action.default):
            import copy

            action = copy.copy(action)
            action.help = "(default: %(default)s)"  # a flag without help still states its default
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not _worth_showing(action.default):
            return text
        if action.option_strings and action.nargs != 0:
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def _creatable(path: str) -> str | None:
    """Why a folder cannot be made at `path` by this user (None: it can): walks up to the nearest existing
    ancestor, which must be a writable folder."""
    p = os.path.abspath(os.path.expanduser(path))
    parent = p
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        return f"{parent} is a file, so nothing can be created under it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable by this user"
    return None


def output_dir(v: str) -> str:
    """argparse `type=` of an output folder flag: an existing writable folder, or one that can be created.

    Checked when the flags are parsed, so a long job never fails at its first write after hours of work.
    The empty string passes (flags where '' means "do not write").
    """
    if not v:
        return v
    p = os.path.expanduser(v)
    if os.path.exists(p):
        if not os.path.isdir(p):
            raise argparse.ArgumentTypeError(f"{v!r} is a file, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{v!r} is not writable by this user")
        return v
    why = _creatable(p)
    if why:
        raise argparse.ArgumentTypeError(f"cannot create {v!r}: {why}")
    return v


def output_file(v: str) -> str:
    """argparse `type=` of an output file flag: a writable file, or one whose folder exists or can be made."""
    if not v:
        return v
    p = os.path.expanduser(v)
    if os.path.isdir(p):
        raise argparse.ArgumentTypeError(f"{v!r} is a folder, not a file")
    if os.path.exists(p):
        if not os.access(p, os.W_OK):
            raise argparse.ArgumentTypeError(f"{v!r} is not writable by this user")
        return v
    why = _creatable(os.path.dirname(os.path.abspath(p)))
    if why:
        raise argparse.ArgumentTypeError(f"cannot create {v!r}: {why}")
    return v


def store_dir(v: str) -> str:
    """argparse `type=` of a `--results DIR` flag: a results store that exists as a writable folder or can be
    made (a file, or a path under a file, is refused at once, not after the evaluation ran)."""
    try:
        return output_dir(v)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (results store)") from None


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

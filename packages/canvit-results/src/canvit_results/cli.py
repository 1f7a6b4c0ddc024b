"""Subcommand dispatch shared by the pipeline's command-line tools (canvit-train, canvit-eval, dinov3-probes).

Each subcommand lives in its own module with `main(argv) -> int`; the dispatcher imports only the one
that runs, so `--help` stays fast and one subcommand's heavy imports never slow another.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence


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

"""The shared subcommand dispatcher: --help lists the subcommands and shows examples; bad names exit 2."""

import pytest
from canvit_results import dispatch

COMMANDS = {"one": ("json", "first"), "two": ("json", "second")}


def test_help_lists_subcommands_and_examples(capsys):
    assert dispatch("tool", "A tool.", COMMANDS, ["--help"], examples=["tool one --x 1"]) == 0
    out = capsys.readouterr().out
    assert "one  first" in out and "two  second" in out
    assert out.rstrip().endswith("examples:\n  tool one --x 1")


def test_no_arguments_and_unknown_subcommand_exit_2(capsys):
    assert dispatch("tool", "A tool.", COMMANDS, []) == 2
    assert dispatch("tool", "A tool.", COMMANDS, ["three"]) == 2
    assert "unknown subcommand 'three'" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["canvit_train.cli", "canvit_eval.cli", "dinov3_probes.cli"])
def test_every_pipeline_cli_shows_an_example(module, capsys):
    import importlib

    assert importlib.import_module(module).main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and out.count("\n  ") > 2

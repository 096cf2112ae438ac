"""One meaning of -o across the command line: where the command writes its result."""

from __future__ import annotations

import argparse

import pytest

from curator.cli import build_parser, main

pytestmark = pytest.mark.unit

#: commands that write a result somewhere and so take -o/--output
WRITERS = {"run", "submit", "report", "index", "train-type-head", "train-tag-head", "generate", "watch",
           "feedback"}


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                out[full] = sub
                out.update(commands(sub, full))
    return out


def test_dash_o_is_output_everywhere_and_only_where_a_command_writes():
    seen = set()
    for name, sub in commands(build_parser()).items():
        visible = [a for a in sub._actions if a.help != argparse.SUPPRESS]
        for a in visible:
            assert ("-o" in a.option_strings) == ("--output" in a.option_strings), (name, a.option_strings)
            # no second spelling of an output option on show
            assert not set(a.option_strings) & {"--out", "--output-file", "--dest"}, (name, a.option_strings)
            # `--index` names an index to read (generate, search); it is never where a command writes
            assert "--index" not in a.option_strings or a.dest != "output", (name, a.option_strings)
        if any("--output" in a.option_strings for a in visible):
            seen.add(name)
            out = next(a for a in visible if "--output" in a.option_strings)
            assert out.dest == "output" and out.help, name
        positional = [a for a in visible if not a.option_strings and a.dest == "run"]
        for a in positional:
            assert a.metavar == "RUN" and "run folder" in a.help, name
    assert seen == WRITERS


def test_old_spellings_parse_to_output_with_a_note(capsys):
    parser = build_parser()
    args = parser.parse_args(["train-type-head", "RUN", "--labels", "l.csv", "--out", "head.pt"])
    assert args.output == "head.pt"
    assert "--out is deprecated, use -o/--output" in capsys.readouterr().err
    args = parser.parse_args(["index", "RUN", "--index", "s3://b/ix"])
    assert args.output == "s3://b/ix"
    assert "--index is deprecated" in capsys.readouterr().err
    args = parser.parse_args(["train-type-head", "RUN", "--labels", "l.csv", "-o", "h.pt"])
    assert args.output == "h.pt" and capsys.readouterr().err == ""


def test_the_help_says_what_dash_o_means(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "-o/--output is where a command writes its result" in text

"""The CLI's own documentation: every command's --help shows an example and every option says what it does;
one syntax (commas) for every --batch list."""

from __future__ import annotations

import click
import pytest

from conftest import assert_one_line_error, run_cli
from vit_edge.bench_cli import parse_batches
from vit_edge.cli import make_cli
from vit_edge.convert.tensorrt.options import parse_batch_profile


def _commands(command, path=("vit-edge",)):
    """Every command and subcommand, with the words that invoke it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(make_cli()))


def test_the_walk_finds_every_command():
    names = {" ".join(path[1:]) for path, _ in COMMANDS}
    assert {"convert", "validate", "predict", "data", "info", "bench", "build-engine", "debug"} <= names


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p[1:]) or "vit-edge")
def test_help_shows_an_example(path):
    result = run_cli(*path[1:], "--help")
    assert result.code == 0, result.err
    # the example block survives click's rewrapping (\b): each command line on a line of its own
    example = result.out.split("Example:", 1)
    assert len(example) == 2, result.out
    lines = [line.strip() for line in example[1].splitlines()]
    assert lines[1].startswith("vit-edge "), result.out


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p[1:]) or "vit-edge" for p, _ in COMMANDS])
def test_every_option_has_help(path, command):
    missing = [param.opts[0] for param in command.params
               if isinstance(param, click.Option) and param.name != "help" and not (param.help or "").strip()]
    assert not missing, f"{' '.join(path)}: options without help: {missing}"


# ---------------------------------------------------------------- --batch lists


@pytest.mark.parametrize("comma,colon,expected", [("1,8,32", "1:8:32", (1, 8, 32)), ("2,2,2", "2:2:2", (2, 2, 2))])
def test_tensorrt_batch_reads_commas_and_the_old_colons_alike(comma, colon, expected):
    assert parse_batch_profile(None, None, comma) == parse_batch_profile(None, None, colon) == expected
    assert parse_batch_profile(None, None, "8") == (8, 8, 8)  # one size: a fixed batch (what DLA needs)


def test_bench_batch_reads_the_same_spellings():
    assert parse_batches(None, None, "1,8,32") == parse_batches(None, None, "1:8:32") == [1, 8, 32]
    assert parse_batches(None, None, "1,8,8") == [1, 8]  # a size given twice is measured once


@pytest.mark.parametrize("args,needles", [
    (("bench", "demo", "--batch", "0"), ("--batch", "positive integers", "1,8")),
    (("bench", "demo", "--batch", "a,b"), ("--batch", "comma-separated", "'a,b'")),
    (("bench", "demo", "--batch", "1,8:32"), ("--batch", "comma-separated")),  # one separator, not a mix
    (("build-engine", "nothere", "--batch", "0"), ("--batch", "MIN,OPT,MAX", "'0'")),
    (("build-engine", "nothere", "--batch", "a,b"), ("--batch", "MIN,OPT,MAX", "'a,b'")),
    (("build-engine", "nothere", "--batch", "8,1,32"), ("--batch", "MIN <= OPT <= MAX")),
    (("build-engine", "nothere", "--batch", "1,8"), ("--batch", "MIN,OPT,MAX")),
    (("convert", "--target", "tensorrt", "--batch", "a,b"), ("--batch", "MIN,OPT,MAX")),
], ids=lambda v: " ".join(v) if isinstance(v[0], str) and v[0] in ("bench", "build-engine", "convert") else None)
def test_bad_batch_lists_are_one_line_errors(tmp_path, args, needles):
    # --out in a fresh folder: the option is refused while parsing, before convert could write anything
    result = run_cli(*args, *(("--out", tmp_path / "x") if args[0] == "convert" else ()))
    assert_one_line_error(result, 2, *needles)
    assert not (tmp_path / "x").exists()

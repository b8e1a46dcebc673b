"""Argument parsing shared by the CLI and the benchmarks: stage lists, option types."""

from __future__ import annotations

import argparse

import pytest

from hotpatch.cli._options import argument_type
from hotpatch.errors import ConfigError
from hotpatch.patch import check_stages, parse_stages


def test_parse_stages_reads_n_and_f_of_each_stage():
    assert parse_stages("1,3:121,61") == ([1, 3], [121, 61])
    assert parse_stages("1,2,3:9,6,3") == ([1, 2, 3], [9, 6, 3])


@pytest.mark.parametrize("text, message", [
    ("1,3", "give the stages as N,N:F,F"),
    ("1,x:3,2", "give the stages as N,N:F,F"),
    ("1:9", "two or more cuts"),
    ("1,3:9", "one f per cut"),
    ("3,1:9,6", "n must increase"),
    ("1,3:6,9", "f must not"),
])
def test_parse_stages_names_the_expected_form(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_stages(text)


def test_check_stages_validates_values_not_text():
    assert check_stages([1, 3], [9, 6]) == ((1, 3), (9, 6))
    assert check_stages([2], [5]) == (2, 5)
    with pytest.raises(ConfigError, match="one f per cut"):
        check_stages([1, 3], [9])


def test_argument_type_shows_the_parsers_own_message():
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument("--stages", type=argument_type(parse_stages))
    with pytest.raises(argparse.ArgumentError, match="n must increase"):
        parser.parse_args(["--stages", "3,1:9,6"])
    assert parser.parse_args(["--stages", "1,3:9,6"]).stages == ([1, 3], [9, 6])

"""Every command's ``--help``: ends with examples that parse, and an option that several commands
share means the same on each (the commands other modules add are checked as soon as they are
registered in ``hotpatch.cli.COMMANDS``)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections import defaultdict

import pytest
import torch

from hotpatch.cli import COMMANDS, build_parser, main

#: Options whose text differs by command on purpose: each command writes its own kind of result,
#: which the metavar names (OUT.pt, OUT.png, OUT.npz).
PER_COMMAND = {"-o", "--output"}
#: Commands that never run a model (so they have no --threads).
WITHOUT_A_MODEL: set[str] = {"recipes"}  # lists and prints recipe files; builds no model


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help(name: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_ends_with_examples_of_that_command_that_parse(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    text = _help(name, capsys)
    head, _, tail = text.rpartition("examples:\n")
    assert head, f"hotpatch {name} --help has no examples"
    lines = [line.strip() for line in tail.strip().splitlines()]
    assert 1 <= len(lines) <= 2 and all(line.startswith(f"hotpatch {name} ") for line in lines), lines
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])  # an example that does not parse exits here
        assert args.command == name


def _meaning(text: str) -> str:
    """The part of a help text that says what the option is: up to the first " (", ";" or ","."""
    return re.split(r" \(|;|,", text.lower(), maxsplit=1)[0].strip()


def test_an_option_means_the_same_on_every_command():
    seen = defaultdict(list)  # (flag, a list of values to try?) -> [(command, action)]
    for name, parser in _commands().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                tries = isinstance(action.metavar, str) and action.metavar.endswith(",..")
                seen[(flag, tries)].append((name, action))
    problems = []
    for (flag, _), uses in seen.items():
        if len(uses) < 2 or flag in PER_COMMAND or flag in ("--debug", "--quiet"):
            continue
        meanings = {name: _meaning(a.help or "") for name, a in uses}
        shortest = min(meanings.values(), key=len)
        if not shortest or any(shortest not in m for m in meanings.values()):
            problems.append(f"{flag}: {meanings}")
        kinds = {(type(a).__name__, a.nargs, a.const, tuple(a.choices or ()) if flag != "--pipeline" else None)
                 for _, a in uses}
        if len(kinds) > 1:
            problems.append(f"{flag} takes different values: {kinds}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("flag", ["--threads", "--batch", "--json"])
def test_shared_options_have_one_help_text(flag):
    texts = {}
    for name, parser in _commands().items():
        for action in parser._actions:
            if flag in action.option_strings and action.help != argparse.SUPPRESS:
                texts[name] = re.sub(r" \(default: [^;)]*[;)].*$", "", action.help)
    assert len(texts) >= 2 and len(set(texts.values())) == 1, texts


def test_every_command_that_runs_a_model_takes_threads_for_the_whole_command(tmp_path, monkeypatch):
    for name, parser in _commands().items():
        flags = {f for a in parser._actions for f in a.option_strings}
        assert ("--threads" in flags) == (name not in WITHOUT_A_MODEL), name
    import hotpatch.cli.patch as patch_command

    during = []
    real = patch_command.save
    monkeypatch.setattr(patch_command, "save", lambda *a, **k: during.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    rc = main(["--quiet", "patch", "mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set",
               "num_heads=2", "--n", "1", "--f", "3", "--threads", str(before + 1), "-o", str(tmp_path / "p.pt")])
    assert rc == 0 and during == [before + 1] and torch.get_num_threads() == before


def test_old_spellings_still_work_and_say_what_replaced_them(capsys):
    parser = build_parser()
    args = parser.parse_args(["tune", "mixste", "--data", "d.npz", "--budget", "0.5", "-o", "t.pt", "--report", "r.json"])
    assert args.json == "r.json" and "--report is deprecated; use --json" in capsys.readouterr().err
    args = parser.parse_args(["finetune", "mixste", "--data", "d.npz", "--n", "1", "--f", "3", "--epochs", "1",
                              "-o", "h.pt", "--warmup", "7"])
    assert args.warmup == 7 and "--warmup is deprecated; use --warmup-steps" in capsys.readouterr().err
    assert parser.parse_args(["train", "mixste", "--data", "d.npz", "--epochs", "1", "-o", "b.pt",
                              "--warmup-steps", "5"]).warmup == 5

"""``hotpatch recipes [NAME]``: the installed recipes with their paper numbers, or one recipe's file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hotpatch.atomic import write_text
from hotpatch.cli._options import add_json_option, check_outputs, consoles
from hotpatch.patch import stage_text
from hotpatch.recipe import Recipe, families, find, installed


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "recipes", help="list the recipes (architecture, HoT setting, the paper's numbers), or print one",
        description="List the installed recipe files with their HoT setting and the paper's params, FLOPs and "
                    "error (quoted from the papers, not measured), or with NAME print that recipe's file: copy it, "
                    "change it and pass the copy as TARGET to any command.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a recipe name or .toml file to print")
    add_json_option(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    out, _ = consoles(args.quiet)
    check_outputs(args)
    chosen = [find(args.name)] if args.name else list(installed().values())
    if args.json:
        text = json.dumps([_record(r) for r in chosen], indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
            return 0
        write_text(args.json, text)
    if args.name:
        out.print(f"# {chosen[0].name}: {chosen[0].path}", highlight=False, markup=False)
        out.print(chosen[0].text().rstrip("\n"), highlight=False, markup=False)
    else:
        out.print(table(chosen))
        out.print("* the family's default (`hotpatch profile mixste`). The numbers are quoted from the papers "
                  "([paper] in each file: its source, PCK/AUC), not measured. `hotpatch recipes NAME` prints a recipe.",
                  highlight=False, markup=False)
    if args.json:
        out.print(f"wrote {args.json}", highlight=False, markup=False)
    return 0


def setting_text(hot: dict[str, Any]) -> str:
    """``n=3 f=81 seq2seq tpc+tra`` from a recipe's ``[hot]``."""
    kept = f"f={stage_text(hot['f'])}" if "f" in hot else f"keep={stage_text(hot['keep'])}"
    pipeline = hot.get("pipeline", "seq2seq")
    recover = hot.get("recover", "tra") if pipeline != "seq2frame" else None
    parts = [f"n={stage_text(hot['n'])}", kept, pipeline, hot.get("prune", "tpc") + (f"+{recover}" if recover else "")]
    return " ".join(parts)


def _pair(paper: dict[str, Any], key: str, digits: int) -> str:
    before, after = paper.get("original", {}).get(key), paper.get(key)
    if before is None and after is None:
        return "-"
    return " → ".join("-" if v is None else f"{v:.{digits}f}" for v in (before, after))


_DATASETS = {"Human3.6M": "H36M", "MPI-INF-3DHP": "3DHP"}


def table(chosen: list[Recipe]) -> Any:
    from rich import box
    from rich.table import Table

    defaults = {find(f).name for f in families()}
    grid = Table(title="hotpatch recipes (numbers: the papers', original → with HoT)", title_justify="left",
                 box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("recipe", "F", "HoT setting", "params M", "FLOPs G", "MPJPE mm", "data"):
        grid.add_column(column, justify="right" if column in ("F", "params M", "FLOPs G", "MPJPE mm") else "left",
                        no_wrap=True)
    for r in chosen:
        paper = r.section("paper")
        grid.add_row(r.name + (" *" if r.name in defaults else ""), str(r.input["frames"]), setting_text(r.settings()),
                     _pair(paper, "params_m", 2), _pair(paper, "flops_g", 2), _pair(paper, "mpjpe_mm", 1),
                     _DATASETS.get(data := paper.get("dataset", "-").split(",")[0], data))
    return grid


def _record(r: Recipe) -> dict[str, Any]:
    return {"name": r.name, "family": r.family, "path": str(r.path), "installed": r.installed,
            "architecture": r.architecture, "input": r.input, "hot": r.settings(), "paper": r.section("paper"),
            "finetune": r.section("finetune"), "checkpoint": r.section("checkpoint")}

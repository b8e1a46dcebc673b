"""Reproduce the Param / FLOPs columns of the HoT paper's tables through ``hotpatch.apply``.

For every row with Param and FLOPs values in Tables 1, 2, 3, 6, 10, 11, 12 and 13 (and the
interpolation rows of Table 5) this prints the paper's value, ours and the relative
difference. Host models come from ``hotpatch.models`` (MixSTE, MotionBERT-Lite, MHFormer)
or ``benchmarks.baselines`` (the other Table 6 models); every HoT / TPC row is the recipe
patched by the generic ``hotpatch`` rewrite (``prepare(model).patch(n, f, ...)``, the same
code path as ``hotpatch.apply``). FLOPs follow the paper: 2 x MACs of Linear/Conv layers,
batch 1, one F-frame clip; params are all parameter elements.

    python benchmarks/reproduce_paper.py [--json results.json] [--tolerance 0.5] [--only mixste]

Exit status 1 if any row is off by more than ``--tolerance`` percent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from benchmarks import baselines  # noqa: E402
from hotpatch.atomic import write_text  # noqa: E402
from hotpatch.profile import profile  # noqa: E402
from hotpatch.models import get  # noqa: E402

S2S = dict(pipeline="seq2seq", recover="tra", prune_pos_embed=True)  # HoT: TPC + TRA
S2F = dict(pipeline="seq2frame")  # TPC only, centre frame kept


@dataclass(frozen=True)
class Row:
    table: str
    method: str
    host: str  # recipe name or "baseline:<name>"
    build: tuple = ()  # build overrides as (key, value) pairs
    patch: tuple | None = None  # patch settings as (key, value) pairs; None = the host itself
    params: float = 0.0  # paper, M
    flops: float = 0.0  # paper, G


def _p(n: int, f: int, **kw) -> tuple:
    return tuple(sorted({"n": n, "f": f, **kw}.items()))


MIX = "mixste"
MB = ("variant", "lite"),
ROWS: list[Row] = [
    # Table 1: seq2seq (*) and seq2frame (dagger)
    Row("1", "MixSTE (*)", MIX, (), None, 33.78, 277.25),
    Row("1", "HoT w. MixSTE (*)", MIX, (), _p(3, 81, **S2S), 35.00, 167.52),
    Row("1", "MixSTE (†)", MIX, (), None, 33.78, 277.25),
    Row("1", "TPC w. MixSTE (†)", MIX, (), _p(3, 81, **S2F), 33.78, 161.73),
    Row("1", "MotionBERT (*)", "motionbert", MB, None, 16.00, 131.09),
    Row("1", "HoT w. MotionBERT (*)", "motionbert", MB, _p(1, 81, **S2S), 16.35, 63.21),
    Row("1", "MotionBERT (†)", "motionbert", MB, None, 16.00, 131.09),
    Row("1", "TPC w. MotionBERT (†)", "motionbert", MB, _p(1, 81, **S2F), 16.00, 61.04),
    # Table 2: n under seq2frame, f = 61
    Row("2", "MixSTE", MIX, (), None, 33.78, 277.25),
    *[Row("2", f"TPC w. MixSTE, n={n}", MIX, (), _p(n, 61, **S2F), 33.78, fl)
      for n, fl in ((2, 121.52), (3, 147.47), (5, 199.38), (7, 251.29))],
    # Table 3: f under seq2seq, n = 3
    Row("3", "MixSTE", MIX, (), None, 33.78, 277.25),
    *[Row("3", f"HoT w. MixSTE, f={f}", MIX, (), _p(3, f, **S2S), pm, fl)
      for f, pm, fl in ((9, 34.96, 114.90), (16, 34.97, 120.01), (61, 34.99, 152.90),
                        (81, 35.00, 167.52), (135, 35.03, 206.98))],
    # Table 5: token recovery design (n = 3, f = 81)
    Row("5", "MixSTE", MIX, (), None, 33.78, 277.25),
    Row("5", "Ours, Nearest Interpolation", MIX, (), _p(3, 81, pipeline="seq2seq", recover="nearest"), 33.78, 161.73),
    Row("5", "Ours, Linear Interpolation", MIX, (), _p(3, 81, pipeline="seq2seq", recover="linear"), 33.78, 161.73),
    Row("5", "Ours, the Proposed TRA", MIX, (), _p(3, 81, **S2S), 35.00, 167.52),
    # Table 6: comparison with SOTA VPTs
    *[Row("6", label, f"baseline:{name}", (), None, *baselines.PAPER_TABLE6[name])
      for label, name in (("PoseFormer", "poseformer"), ("Strided", "strided"), ("P-STMO", "pstmo"),
                          ("STCFormer", "stcformer"))],
    Row("6", "MHFormer", "mhformer", (), None, 31.52, 14.15),
    Row("6", "TPC w. MHFormer", "mhformer", (), _p(1, 117, **S2F), 31.52, 8.22),
    Row("6", "MixSTE", MIX, (), None, 33.78, 277.25),
    Row("6", "HoT w. MixSTE", MIX, (), _p(3, 81, **S2S), 35.00, 167.52),
    Row("6", "TPC w. MixSTE (n=7, f=61)", MIX, (), _p(7, 61, **S2F), 33.78, 251.29),
    Row("6", "MotionBERT", "motionbert", MB, None, 16.00, 131.09),
    Row("6", "MotionBERT*", "motionbert", MB, None, 16.00, 131.09),
    Row("6", "HoT w. MotionBERT", "motionbert", MB, _p(1, 81, **S2S), 16.35, 63.21),
    Row("6", "TPC w. MotionBERT (n=2, f=121)", "motionbert", MB, _p(2, 121, **S2F), 16.00, 91.38),
    # Table 10: MixSTE at shorter clips vs HoT
    Row("10", "MixSTE F=81", MIX, (("frames", 81),), None, 33.70, 92.42),
    Row("10", "MixSTE F=147", MIX, (("frames", 147),), None, 33.73, 167.72),
    Row("10", "MixSTE F=243", MIX, (), None, 33.78, 277.25),
    Row("10", "HoT w. MixSTE", MIX, (), _p(3, 81, **S2S), 35.00, 167.52),
    Row("10", "TPC w. MixSTE", MIX, (), _p(3, 81, **S2F), 33.78, 161.73),
    # Table 11: number of recovered tokens f'
    Row("11", "MixSTE", MIX, (), None, 33.78, 277.25),
    *[Row("11", f"HoT w. MixSTE (f'={fr})", MIX, (), _p(3, 81, recover_frames=fr, **S2S), pm, fl)
      for fr, pm, fl in ((9, 34.88, 163.33), (27, 34.89, 163.66), (81, 34.92, 164.62))],
    Row("11", "HoT w. MixSTE (f'=243)", MIX, (), _p(3, 81, **S2S), 35.00, 167.52),
    # Table 12: n under seq2seq, f = 81
    Row("12", "MixSTE", MIX, (), None, 33.78, 277.25),
    *[Row("12", f"HoT w. MixSTE, n={n}", MIX, (), _p(n, 81, **S2S), 35.00, fl)
      for n, fl in ((1, 121.31), (2, 144.42), (3, 167.52), (4, 190.62), (5, 213.72), (6, 236.82),
                    (7, 259.93))],
    # Table 13: f under seq2frame, n = 3
    Row("13", "MixSTE", MIX, (), None, 33.78, 277.25),
    *[Row("13", f"TPC w. MixSTE, f={f}", MIX, (), _p(3, f, **S2F), 33.78, fl)
      for f, fl in ((9, 110.39), (16, 115.38), (27, 123.23), (61, 147.47), (81, 161.73),
                    (121, 190.26), (135, 200.24))],
]


def measure(model: torch.nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """(params in M, paper-convention FLOPs in G) of one batch-1 clip."""
    result = profile(model, example, counters=("paper",), fps=False, memory=False)
    return result.params / 1e6, result.flops["paper"].value / 1e9


def _host(row: Row) -> tuple[torch.nn.Module, torch.Tensor]:
    if row.host.startswith("baseline:"):
        builder, shape = baselines.BASELINES[row.host.split(":", 1)[1]]
        return builder().eval(), torch.randn(shape)
    recipe = get(row.host)
    build = dict(row.build)
    model = recipe.build(**build).eval()
    d = recipe.DEFAULTS
    frames = build.get("frames", d["frames"])
    return model, torch.randn(1, frames, d["joints"], d["channels"])


class Measurer:
    """Measures rows, building each host once, preparing it once (``hotpatch.prepare``) and
    measuring each (host, patch) setting once, in whatever order rows are asked for."""

    def __init__(self) -> None:
        self.hosts: dict[tuple, tuple] = {}
        self.prepared: dict[tuple, hotpatch.Prepared] = {}
        self.cache: dict[tuple, tuple[float, float]] = {}

    def row(self, row: Row, log=print) -> dict:
        """The paper's values of ``row``, ours and the differences in %."""
        key = (row.host, row.build)
        if key not in self.hosts:
            self.hosts[key] = _host(row)
        model, example = self.hosts[key]
        measured_key = key + (row.patch,)
        if measured_key not in self.cache:
            start = time.perf_counter()
            if row.patch is None:
                self.cache[measured_key] = measure(model, example)
            else:
                if key not in self.prepared:
                    self.prepared[key] = hotpatch.prepare(model, example_input=example)
                patched = self.prepared[key].patch(**dict(row.patch))
                self.cache[measured_key] = measure(patched, example)
            log(f"  measured {row.method} ({time.perf_counter() - start:.1f}s)")
        params, flops = self.cache[measured_key]
        return {
            **asdict(row), "build": dict(row.build), "patch": dict(row.patch) if row.patch else None,
            "params_ours": params, "flops_ours": flops,
            "params_diff_pct": 100 * (params - row.params) / row.params,
            "flops_diff_pct": 100 * (flops - row.flops) / row.flops,
        }


def run(rows: list[Row], log=print) -> list[dict]:
    measurer = Measurer()
    return [measurer.row(row, log) for row in rows]


def render(results: list[dict], tolerance: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="HoT paper: Param (M) and FLOPs (G), paper vs hotpatch")
    for col in ("Table", "Method", "Param paper", "Param ours", "Δ%", "FLOPs paper", "FLOPs ours", "Δ%"):
        table.add_column(col, justify="left" if col in ("Table", "Method") else "right")

    def pct(x: float) -> str:
        text = f"{x:+.3f}"
        return f"[red]{text}[/red]" if abs(x) > tolerance else text

    for r in results:
        table.add_row(r["table"], r["method"], f"{r['params']:.2f}", f"{r['params_ours']:.3f}",
                      pct(r["params_diff_pct"]), f"{r['flops']:.2f}", f"{r['flops_ours']:.3f}",
                      pct(r["flops_diff_pct"]))
    Console(width=max(120, Console().width)).print(table)


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "# HoT paper: Param / FLOPs reproduction",
        "",
        f"Produced by `{command}` (torch {torch.__version__}). FLOPs = 2 x MACs of Linear/Conv layers, "
        "batch 1, one clip; every HoT/TPC row is the recipe patched by `hotpatch`.",
        "",
        "| Table | Method | Param (M) paper | ours | Δ% | FLOPs (G) paper | ours | Δ% |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['table']} | {r['method']} | {r['params']:.2f} | {r['params_ours']:.3f} | "
            f"{r['params_diff_pct']:+.3f} | {r['flops']:.2f} | {r['flops_ours']:.3f} | {r['flops_diff_pct']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows to this JSON file ('-' for stdout)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed |difference| in %% (0.5)")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument("--only", help="only rows whose host contains this text (e.g. mixste)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [r for r in ROWS if not args.only or args.only in r.host]
    results = run(rows, log=lambda m: print(m, file=sys.stderr))
    render(results, args.tolerance)
    worst = max(max(abs(r["params_diff_pct"]), abs(r["flops_diff_pct"])) for r in results)
    print(f"{len(results)} rows; largest |difference| {worst:.3f}% (tolerance {args.tolerance}%)")
    if args.markdown:
        command = "python benchmarks/reproduce_paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_text(args.markdown, markdown(results, command.strip()))
    if args.json:
        text = json.dumps({"rows": results, "torch": torch.__version__}, indent=2)
        if args.json == "-":
            print(text)
        else:
            write_text(args.json, text)
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

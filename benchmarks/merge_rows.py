"""The token-merging rows of ``benchmarks/accuracy.py`` (issue 22): merge + unmerge and merge +
linear against TPC + linear and uniform sampling + linear at the same FLOPs.

Levels: the single cut (n, f) (about −33% FLOPs), the cut at ``--extra-n`` (about −50%) and the
two-stage schedule at the single cut's FLOPs. At the first level every merge weighting
(``merge-density``, ``merge-mean``) meets every parameter-free recovery that can follow it
(``unmerge-pure``, ``unmerge-linear``, ``linear``); the variants with the lowest MPJPE there
(on the shared split) are the ones the other levels, seq2frame and the fine-tunes use, and the
report says which won and by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hotpatch

WEIGHTINGS = ("merge-density", "merge-mean")
UNMERGES = ("unmerge-pure", "unmerge-linear")
ZR = "none (zero-retraining)"


def label(prune: str, recover: str | None) -> str:
    names = {"tpc": "TPC", "uniform": "uniform sampling"}
    text = names.get(prune, prune)
    return f"{text} + {recover}" if recover else text


def variant_rows(ev: Callable[..., None], original: Any, n: int, f: int, s2s: Any) -> list[str]:
    """Every weighting × recovery at the single cut; returns their keys."""
    keys = []
    for prune in WEIGHTINGS:
        for rec in (*UNMERGES, "linear"):
            key = f"{prune}_{rec}"
            ev(key, hotpatch.apply(original, n, f, prune=prune, recover=rec), s2s,
               label(prune, rec), "seq2seq", prune, rec, ZR)
            keys.append(key)
    return keys


def winners(results: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The weighting and the unmerge variant with the lowest MPJPE at the single cut: the
    weighting by its best row, the unmerge variant by its best weighting."""
    best = min(((w, r) for w in WEIGHTINGS for r in UNMERGES), key=lambda wr: results[f"{wr[0]}_{wr[1]}"]["mpjpe"])
    weighting = min(WEIGHTINGS, key=lambda w: min(results[f"{w}_{r}"]["mpjpe"] for r in (*UNMERGES, "linear")))
    return weighting, best[1]


def level_rows(ev: Callable[..., None], original: Any, ns: Any, fs: Any, what: str, suffix: str,
               weighting: str, unmerge: str, s2s: Any, s2f: Any, uniform: bool = True) -> list[str]:
    """merge + unmerge, merge + linear (and uniform + linear) at one level, plus merge seq2frame."""
    keys = []
    settings = [(weighting, unmerge), (weighting, "linear")] + ([("uniform", "linear")] if uniform else [])
    for prune, rec in settings:
        key = f"{prune}_{rec}_{suffix}"
        ev(key, hotpatch.apply(original, ns, fs, prune=prune, recover=rec), s2s,
           f"{label(prune, rec)} ({what})", "seq2seq", prune, rec, ZR)
        keys.append(key)
    key = f"{weighting}_s2f_{suffix}"
    ev(key, hotpatch.apply(original, ns, fs, prune=weighting, pipeline="seq2frame"), s2f,
       f"{weighting} ({what})", "seq2frame", weighting, "–", ZR)
    return keys + [key]


def _f(x: float) -> str:
    return f"{x:.1f}"


def level_keys(suffix: str, weighting: str, unmerge: str) -> tuple[str, str]:
    """The merge + unmerge and merge + linear keys of a level ("ft": the fine-tunes)."""
    if suffix == "ft":
        return "merge_ft", "mergelinear_ft"
    tail = f"_{suffix}" if suffix else ""
    return f"{weighting}_{unmerge}{tail}", f"{weighting}_linear{tail}"


def claims(results: dict[str, dict[str, Any]], levels: list[tuple[str, str, str, str]], weighting: str,
           unmerge: str) -> list[str]:
    """Plain comparisons: each level's merge rows against TPC + linear and uniform + linear.

    ``levels``: (name, TPC + linear key, uniform + linear key, merge suffix: "" for the single
    cut, "ft" for the fine-tunes).
    """
    out = []
    other_w = next(w for w in WEIGHTINGS if w != weighting)
    other_u = next(u for u in UNMERGES if u != unmerge)
    if all(f"{w}_{u}" in results for w in WEIGHTINGS for u in UNMERGES):
        dw = results[f"{other_w}_{unmerge}"]["mpjpe"] - results[f"{weighting}_{unmerge}"]["mpjpe"]
        du = results[f"{weighting}_{other_u}"]["mpjpe"] - results[f"{weighting}_{unmerge}"]["mpjpe"]
        out.append(f"- Variants (single cut): {other_w} − {weighting} = {dw:+.2f} mm with {unmerge}; "
                   f"{other_u} − {unmerge} = {du:+.2f} mm with {weighting} (positive: the chosen one is better).")
    for name, tpc_key, uni_key, suffix in levels:
        mu_key, ml_key = level_keys(suffix, weighting, unmerge)
        mu, ml, tpc, uni = (results.get(k) for k in (mu_key, ml_key, tpc_key, uni_key))
        if not (mu and ml and tpc and uni):
            continue
        best_other = min(tpc["mpjpe"], uni["mpjpe"])
        merge_best = min(mu["mpjpe"], ml["mpjpe"])
        verdict = ("merging has the lowest error" if merge_best < best_other - 0.05 else
                   "merging does not beat both" if merge_best > best_other + 0.05 else "the same to 0.05 mm")
        out.append(f"- {name} ({mu['flops_pct']:+.1f}% FLOPs): {weighting} + {unmerge} {_f(mu['mpjpe'])} mm, "
                   f"{weighting} + linear {_f(ml['mpjpe'])} mm, TPC + linear {_f(tpc['mpjpe'])} mm, uniform + linear "
                   f"{_f(uni['mpjpe'])} mm ({tpc['flops_pct']:+.1f}%): {verdict} "
                   f"({merge_best - best_other:+.2f} mm against the better of TPC and uniform).")
    return out

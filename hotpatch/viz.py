"""Plots for choosing and understanding HoT settings (matplotlib, the ``plot`` extra).

* :func:`pareto_plot` — a sweep's error (MPJPE, or latency) against paper FLOPs, the Pareto
  front drawn and labelled, the original marked.
* :func:`tune_plot` — every candidate of ``hotpatch.tune`` (FLOPs against calibration MPJPE,
  coloured by the round it reached), the chosen one and the original marked.
* :func:`kept_frames_plot` — one clip's motion over time with the frames each pruner keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hotpatch.errors import ConfigError
from hotpatch.render import pyplot, save_figure
from hotpatch.autotune import TuneResult, ranked
from hotpatch.sweep import SweepResult, pareto_front

__all__ = ["joint_speed", "kept_frames_plot", "pareto_plot", "tune_plot"]


def pareto_plot(result: SweepResult, path: str | Path, *, title: str = "") -> Path:
    """Write a PNG of ``result``: every setting, the front (line + labels) and the original."""
    plt = pyplot()
    path = Path(path)
    key = result.error_name
    ylabel = "MPJPE (mm, zero retraining)" if key == "mpjpe" else "latency (ms)"

    def y(r):
        return r.metrics.get("mpjpe") if key == "mpjpe" else r.latency_ms

    rows = [r for r in result.rows if r.flops is not None and y(r) is not None]
    if not rows:
        raise ConfigError("nothing to plot: the sweep measured neither latency nor accuracy; drop --no-latency "
                          "or pass --data")
    fig, ax = plt.subplots(figsize=(9.6, 6), dpi=100)
    ax.scatter([r.flops / 1e9 for r in rows], [y(r) for r in rows], s=28, color="0.6", label="settings", zorder=2)
    front = [r for r in result.frontier if y(r) is not None]
    orig = result.original
    line = sorted(front + ([orig] if orig.pareto else []), key=lambda r: r.flops)
    if line:
        ax.plot([r.flops / 1e9 for r in line], [y(r) for r in line], "-o", color="tab:red", ms=6, lw=1.8,
                label="Pareto front", zorder=3)
        for r in front:
            ax.annotate(r.label, (r.flops / 1e9, y(r)), textcoords="offset points", xytext=(6, 6), fontsize=8,
                        color="tab:red")
    if orig.flops is not None and y(orig) is not None:
        ax.scatter([orig.flops / 1e9], [y(orig)], marker="*", s=220, color="tab:blue", label="original", zorder=4)
        ax.annotate("original", (orig.flops / 1e9, y(orig)), textcoords="offset points", xytext=(6, -12),
                    fontsize=8, color="tab:blue")
    ax.set_xlabel("paper FLOPs per clip (G)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"hotpatch sweep: {ylabel.split(' (')[0]} vs FLOPs", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)  # no "+1.592e2" offsets: values as they are
    ax.legend(loc="best", fontsize=9)
    return save_figure(plt, fig, path)


def tune_plot(result: TuneResult, path: str | Path, *, title: str = "") -> Path:
    """Write a PNG of a tune search: every candidate's paper FLOPs against its calibration MPJPE
    minus the original's on the same windows (those of the last round it reached; colours tell
    which), the Pareto front of the last round, the budget, the chosen setting and the original."""
    plt = pyplot()
    path = Path(path)
    base = result.original.get("errors") or []
    if len(base) < len(result.rounds):
        raise ConfigError("the tune result has no error of the original per round; nothing to compare with")

    def y(c) -> float:
        return c.errors[-1] - base[len(c.errors) - 1]

    fig, ax = plt.subplots(figsize=(12, 6), dpi=100)
    cmap = plt.get_cmap("viridis")
    count = len(result.rounds)
    for r in result.rounds:
        rows = [c for c in result.candidates if len(c.errors) == r.index + 1 and c.flops is not None]
        ax.scatter([c.flops / 1e9 for c in rows], [y(c) for c in rows], s=30, zorder=2,
                   color=cmap(r.index / max(1, count - 1)),
                   label=f"last scored in round {r.index} ({r.windows} windows): {len(rows)}")
    last = [c for c in ranked(result.candidates) if len(c.errors) == count and c.flops is not None]
    front = [c for c, on in zip(last, pareto_front([(c.flops, y(c)) for c in last])) if on]
    if len(front) > 1:
        front.sort(key=lambda c: c.flops)
        ax.plot([c.flops / 1e9 for c in front], [y(c) for c in front], "-", color="0.5", lw=1, zorder=1)
    chosen, orig = result.chosen, result.original
    ax.scatter([chosen.flops / 1e9], [y(chosen)], marker="D", s=110, facecolor="none", edgecolor="tab:red",
               lw=2, zorder=4, label=f"chosen: {chosen.label}")
    ax.annotate(chosen.label, (chosen.flops / 1e9, y(chosen)), textcoords="offset points", xytext=(8, 8),
                fontsize=8, color="tab:red")
    if orig.get("flops"):
        ax.scatter([orig["flops"] / 1e9], [0.0], marker="*", s=220, color="tab:blue", zorder=4,
                   label=f"original ({orig['mpjpe']:.1f} mm on the last round's {result.rounds[-1].windows} windows)")
    if result.budget is not None:
        ax.axvline(result.limit / 1e9, color="tab:red", ls="--", lw=1, alpha=0.6,
                   label=f"budget ({result.budget:g} of the original)")
    ax.set_xlabel("paper FLOPs per clip (G)")
    ax.set_ylabel("calibration MPJPE − original's on the same windows (mm)")
    ax.set_title(title or "hotpatch tune: zero-retraining error vs FLOPs", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
    return save_figure(plt, fig, path)


def joint_speed(positions: np.ndarray) -> np.ndarray:
    """Mean joint speed per frame (T,) of (T, J, D) positions, in units per frame (frame 0 copies frame 1)."""
    p = np.asarray(positions, dtype=np.float64)
    if len(p) < 2:
        return np.zeros(len(p))
    v = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(axis=-1)
    return np.concatenate([v[:1], v])


def kept_frames_plot(
    path: str | Path,
    speed: np.ndarray,
    kept: Mapping[str, Sequence[int] | Sequence[Sequence[int]]],
    *,
    start: int = 0,
    title: str = "",
    ylabel: str = "mean joint speed",
) -> Path:
    """One panel per pruner: the motion signal over the window's frames, kept frames marked.

    ``speed``: (F,) signal of the window; ``kept``: pruner name -> kept frame indices (0..F-1),
    or one list per pruning stage (multi-stage pruning: each stage marked in its own colour,
    the last one, whose tokens reach the recovery, in red); ``start``: the window's first
    frame in the clip (for the x axis).
    """
    plt = pyplot()
    path = Path(path)
    frames = np.arange(start, start + len(speed))
    top = speed.max() * 1.05 if speed.max() > 0 else 1
    fig, axes = plt.subplots(len(kept), 1, figsize=(12, 2.2 * len(kept) + 0.6), dpi=100, sharex=True, squeeze=False)
    for ax, (name, value) in zip(axes[:, 0], kept.items()):
        stages = _stages(value)
        ax.plot(frames, speed, color="0.35", lw=1.3, label=ylabel)
        colours = _STAGE_COLOURS[-len(stages):] if len(stages) <= len(_STAGE_COLOURS) else ["tab:red"] * len(stages)
        for s, (idx, colour) in enumerate(zip(stages, colours)):
            last = s == len(stages) - 1
            what = f"kept by {name}" if len(stages) == 1 else f"stage {s + 1}: {name} keeps"
            if last:
                ax.vlines(frames[idx], 0, top, color=colour, alpha=0.35, lw=1)
            ax.scatter(frames[idx], speed[idx], color=colour, s=16 + 22 * (len(stages) - 1 - s), zorder=3 + s,
                       label=f"{what} ({len(idx)})")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)  # beside: never on the data
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("frame")
    return save_figure(plt, fig, path, title)


_STAGE_COLOURS = ["tab:green", "tab:orange", "tab:red"]


def _stages(value: Sequence[int] | Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Kept frames as one sorted int array per stage."""
    items = list(value)
    nested = bool(items) and all(isinstance(v, (list, tuple, np.ndarray)) for v in items)
    return [np.asarray(sorted(v), dtype=int) for v in (items if nested else [items])]

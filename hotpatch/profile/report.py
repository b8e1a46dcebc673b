"""The results of ``hotpatch.profile``: ``Profile`` and ``Comparison`` (and their parts), as
plain dataclasses, JSON-ready dicts, rich tables and text."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BlockFlops", "Comparison", "FlopCount", "Latency", "Memory", "Profile"]


@dataclass
class FlopCount:
    """One counter's total. ``value`` is in ``unit`` (``"FLOPs"`` or ``"MACs"``); None if it failed."""

    counter: str
    value: int | None
    unit: str
    counts: str
    unsupported: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Latency:
    """Wall-clock seconds of one forward, in milliseconds, over ``repeats`` runs after ``warmup``."""

    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    threads: int
    samples_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class Memory:
    """Peak bytes of one forward (and of one training step) above ``baseline_bytes``.

    ``method`` says how it was measured: on CUDA, ``torch.cuda.max_memory_allocated`` after a
    reset, minus what was allocated before the call; on CPU, the peak of live tensor storages
    newly created by ATen ops during the call (activations, outputs, gradients), tracked with
    a dispatch mode. CPU numbers exclude parameters, buffers and the input (those are
    ``baseline_bytes``) and scratch memory a kernel allocates internally.
    """

    baseline_bytes: int
    forward_peak_bytes: int
    train_peak_bytes: int | None
    method: str


@dataclass
class BlockFlops:
    """Paper-convention FLOPs of one transformer block (``is_block``) or of another top-level part."""

    name: str
    flops: int
    is_block: bool
    frames: int | None = None  # frames the block sees, for a model patched by hotpatch


@dataclass
class Profile:
    """What ``profile`` measured. ``fps`` is the FPS of ``pipeline``; both kinds are kept."""

    params: int
    trainable_params: int
    flops: dict[str, FlopCount]
    batch: int
    frames: int
    pipeline: str
    device: str
    latency: Latency | None = None
    fps_seq2seq: float | None = None
    fps_seq2frame: float | None = None
    memory: Memory | None = None
    blocks: list[BlockFlops] | None = None
    compile: str | None = None  # torch.compile mode the latency was timed with (None: eager)
    compile_seconds: float | None = None  # the first (compiling) call, not part of the latency

    @property
    def fps(self) -> float | None:
        return self.fps_seq2seq if self.pipeline == "seq2seq" else self.fps_seq2frame

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["fps"] = self.fps
        return d

    def table(self) -> Any:
        """A rich renderable (tables of the numbers and, if measured, of the blocks)."""
        from rich.console import Group

        parts = [_profile_table(self)]
        if self.blocks is not None:
            parts.append(_blocks_table([self.blocks]))
        return Group(*parts)

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        return _render_text(self.table())


@dataclass
class Comparison:
    """Two profiles measured the same way; latency timed interleaved. ``speedup`` = before/after median."""

    before: Profile
    after: Profile
    speedup: float | None

    def change_pct(self) -> dict[str, float | None]:
        """% change (after vs before) of every number both profiles have."""
        a, b = _flat_numbers(self.before), _flat_numbers(self.after)
        return {k: _pct(a[k], b.get(k)) for k in a}

    def block_rows(self) -> list[tuple[str, int | None, int | None]]:
        """(name, before FLOPs, after FLOPs) for the union of both block lists, in forward order."""
        before = {b.name: b.flops for b in self.before.blocks or []}
        after = {b.name: b.flops for b in self.after.blocks or []}
        names = _merge_order([b.name for b in self.before.blocks or []],
                             [b.name for b in self.after.blocks or []])
        return [(n, before.get(n), after.get(n)) for n in names]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        d: dict[str, Any] = {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "speedup": self.speedup,
            "change_pct": self.change_pct(),
        }
        if self.before.blocks is not None or self.after.blocks is not None:
            d["blocks"] = [
                {"name": n, "before": x, "after": y, "change_pct": _pct(x, y)}
                for n, x, y in self.block_rows()
            ]
        return d

    def table(self) -> Any:
        """A rich renderable: before, after and % change of each number, then the blocks."""
        from rich.console import Group

        parts = [_comparison_table(self)]
        if self.before.blocks is not None:
            parts.append(_blocks_table([self.before.blocks, self.after.blocks or []], self.block_rows()))
        return Group(*parts)

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        return _render_text(self.table())


def _merge_order(first: list[str], second: list[str]) -> list[str]:
    """``first``, with the names only in ``second`` inserted after their predecessor there."""
    merged = list(first)
    prev = None
    for n in second:
        if n not in merged:
            merged.insert(merged.index(prev) + 1 if prev is not None else 0, n)
        prev = n
    return merged



# ----------------------------------------------------------------------------- rendering


def _flat_numbers(p: Profile) -> dict[str, float | None]:
    d: dict[str, float | None] = {"params": p.params, "trainable_params": p.trainable_params}
    for name, f in p.flops.items():
        d[f"flops.{name}"] = f.value
    if p.latency is not None:
        d["latency_ms"] = p.latency.median_ms
        d["fps_seq2seq"] = p.fps_seq2seq
        d["fps_seq2frame"] = p.fps_seq2frame
    if p.memory is not None:
        d["memory_forward_bytes"] = p.memory.forward_peak_bytes
        if p.memory.train_peak_bytes is not None:
            d["memory_train_bytes"] = p.memory.train_peak_bytes
    return d


def _pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return 100.0 * (after - before) / before


def _si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.4g} {unit}".rstrip()


def _ms(x: float) -> str:
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _bytes(x: float | None) -> str:
    if x is None:
        return "—"
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {suffix}"
    return f"{int(x)} B"


def _rows(p: Profile) -> list[tuple[str, str, float | None]]:
    """(label, formatted value, raw value) for each number of a profile."""
    rows: list[tuple[str, str, float | None]] = [
        ("Params", _si(p.params), p.params),
        ("Params (trainable)", _si(p.trainable_params), p.trainable_params),
    ]
    for name, f in p.flops.items():
        rows.append((f"{f.unit} ({name})",
                     _si(f.value) if f.error is None else "failed", f.value))
    if p.latency is not None:
        lat = p.latency
        rows.append((f"Latency ms, median (IQR) of {lat.repeats}",
                     f"{_ms(lat.median_ms)} ({_ms(lat.q25_ms)}–{_ms(lat.q75_ms)})", lat.median_ms))
        rows.append((f"FPS seq2seq (batch {p.batch} × {p.frames} frames / s)",
                     _si(p.fps_seq2seq), p.fps_seq2seq))
        rows.append((f"FPS seq2frame (batch {p.batch} clips / s)", _si(p.fps_seq2frame), p.fps_seq2frame))
    if p.compile_seconds is not None:
        rows.append((f"Compile seconds (first call, {p.compile})", f"{p.compile_seconds:.1f}", p.compile_seconds))
    if p.memory is not None:
        rows.append(("Peak memory, one forward (above weights+input)",
                     _bytes(p.memory.forward_peak_bytes), p.memory.forward_peak_bytes))
        if p.memory.train_peak_bytes is not None:
            rows.append(("Peak memory, one training step", _bytes(p.memory.train_peak_bytes),
                         p.memory.train_peak_bytes))
    return rows


def _legend(p: Profile) -> list[str]:
    lines = [f"{f.unit} ({name}): {f.counts}" for name, f in p.flops.items()]
    lines.insert(0, "Numbers are per call (one forward of the batch)")
    if p.latency is not None:  # here, not in the row label: a long label would wrap in a narrow table
        mode = f", compiled ({p.compile})" if p.compile else ", eager"
        lines.insert(0, f"Latency: {p.latency.threads} thread(s) on {p.device}{mode}")
    return lines


def _notes(p: Profile) -> list[str]:
    notes = []
    for name, f in p.flops.items():
        if f.error:
            notes.append(f"{name} failed: {f.error}")
        elif f.unsupported:
            ops = ", ".join(f"{k} ×{v}" for k, v in sorted(f.unsupported.items(), key=lambda kv: -kv[1])[:6])
            notes.append(f"{name}, counted as 0 or warned: {ops}")
    return notes


def _profile_table(p: Profile) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="hotpatch profile", caption=escape("\n".join(_legend(p) + _notes(p))) or None,
              caption_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for label, text, _ in _rows(p):
        t.add_row(escape(label), text)
    return t


def _comparison_table(c: Comparison) -> Any:
    from rich.markup import escape
    from rich.table import Table

    caption = _legend(c.before) + [f"before: {n}" for n in _notes(c.before)] + \
        [f"after: {n}" for n in _notes(c.after)]
    if c.speedup is not None:
        caption.insert(0, f"latency speed-up (before / after median, interleaved): {c.speedup:.2f}×")
    t = Table(title="hotpatch compare", caption=escape("\n".join(caption)) or None, caption_justify="left")
    for name, justify in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(name, justify=justify)
    after = {label: (text, raw) for label, text, raw in _rows(c.after)}
    for label, text, raw in _rows(c.before):
        a_text, a_raw = after.get(label, ("—", None))
        pct = _pct(raw, a_raw)
        t.add_row(escape(label), text, a_text, "—" if pct is None else f"{pct:+.1f}%")
    return t


def _blocks_table(lists: list[list[BlockFlops]],
                  rows: list[tuple[str, int | None, int | None]] | None = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="paper FLOPs by block")
    t.add_column("block / part")
    if rows is None:
        total = sum(b.flops for b in lists[0]) or 1
        tokens = any(b.frames is not None for b in lists[0])
        if tokens:
            t.add_column("frames", justify="right")
        t.add_column("FLOPs", justify="right")
        t.add_column("share", justify="right")
        for b in lists[0]:
            label = b.name + ("" if b.is_block else " (other)")
            seen = ["" if b.frames is None else str(b.frames)] if tokens else []
            t.add_row(escape(label), *seen, _si(b.flops), f"{100 * b.flops / total:.1f}%")
        return t
    is_block = {b.name: b.is_block for lst in lists for b in lst}
    for name, justify in (("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(name, justify=justify)
    for name, x, y in rows:
        pct = _pct(x, y)
        t.add_row(escape(name + ("" if is_block.get(name) else " (other)")), _si(x), _si(y),
                  "—" if pct is None else f"{pct:+.1f}%")
    return t


def _render_text(renderable: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=110, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n")

"""What ``hotpatch lift`` reads and writes: input files expanded, each input's output paths planned.

Inputs are keypoint files, OpenPose output folders (one video each), folders of keypoint files
(each file or OpenPose sub-folder one video) and glob patterns (for shells that do not expand
them). One input writes ``-o OUT.npz`` (or ``-o DIR/`` + its name); several write ``DIR/NAME.npz``
each, NAME being the input's name (its folder's too where two inputs share one). ``--render`` is a
path for one input, or a suffix (``.gif``, ``.mp4``, ``.png``) written beside each ``.npz``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from hotpatch.errors import ConfigError, DataError
from hotpatch.keypoints import check_keypoint_file
from hotpatch.keypoints.openpose import openpose_files

__all__ = ["LiftOutputs", "expand_inputs", "plan_outputs"]

KEYPOINT_SUFFIXES = (".json", ".npy", ".npz")
RENDER_SUFFIXES = (".gif", ".mp4", ".png")


def expand_inputs(given: list[str]) -> list[Path]:
    """Every video's keypoint input named by ``given`` (files, folders, glob patterns), in order, once each."""
    out: list[Path] = []
    for text in given:
        paths = [Path(p) for p in sorted(glob.glob(text))] if any(c in text for c in "*?[") else [Path(text)]
        if not paths:
            raise DataError(f"{text!r} matches no file; check the pattern (quote it, or let the shell expand it)")
        for path in paths:
            if path.is_dir() and not openpose_files(path):
                found = [p for p in sorted(path.iterdir()) if (p.is_file() and p.suffix.lower() in KEYPOINT_SUFFIXES)
                         or (p.is_dir() and openpose_files(p))]
                if not found:
                    raise DataError(f"{path} is a folder without keypoint files (.json, .npy, .npz) or OpenPose "
                                    "output folders; pass the detector's output files")
                out.extend(found)
            else:
                out.append(check_keypoint_file(path))
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


@dataclass
class LiftOutputs:
    """One input and the files lifting it writes (``render`` None when not asked)."""

    source: Path
    npz: Path
    render: Path | None = None

    def render_for(self, person: object, several: bool) -> Path | None:
        """The render of one person: ``render`` itself, or ``NAME.person<ID>.SUFFIX`` when ``several``."""
        if self.render is None or not several:
            return self.render
        return self.render.with_name(f"{self.render.stem}.person{person}{self.render.suffix}")


def _is_dir_arg(text: str) -> bool:
    return text.endswith(("/", "\\")) or Path(text).is_dir()


def _names(inputs: list[Path]) -> list[str]:
    stems = [p.name if p.is_dir() else p.stem for p in inputs]
    names = [f"{p.parent.name}_{s}" if stems.count(s) > 1 else s for p, s in zip(inputs, stems)]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError(f"several inputs would write {clash[0]}.npz; give inputs with distinct names (or lift them "
                          "in separate calls)")
    return names


def plan_outputs(inputs: list[Path], output: str, render: str | None) -> list[LiftOutputs]:
    """The output paths of each input (see the module docstring); no file is written here."""
    if not inputs:
        raise ConfigError("no keypoint file given; pass the detector's output: hotpatch lift TARGET FILE... -o OUT")
    if render is not None:
        suffix = Path(render).suffix.lower() if Path(render).name not in RENDER_SUFFIXES else Path(render).name
        if suffix not in RENDER_SUFFIXES:
            raise ConfigError(f"--render {render}: expected a file ending in {', '.join(RENDER_SUFFIXES)}")
    beside = render is not None and Path(render).name.lower() in RENDER_SUFFIXES  # --render .gif
    if len(inputs) > 1 and not _is_dir_arg(output):
        raise ConfigError(f"{len(inputs)} inputs, but -o {output} is a file; pass a folder (-o DIR/) for one .npz "
                          "per input")
    if len(inputs) > 1 and render is not None and not beside:
        raise ConfigError(f"--render {render} names one file for {len(inputs)} inputs; pass a suffix such as "
                          "--render .gif to write NAME.gif beside each NAME.npz")
    if _is_dir_arg(output):
        folder = Path(output)
        plans = [LiftOutputs(src, folder / f"{name}.npz") for src, name in zip(inputs, _names(inputs))]
    else:
        if not output.lower().endswith(".npz"):
            raise ConfigError(f"-o {output}: expected a file ending in .npz, or a folder (-o DIR/)")
        plans = [LiftOutputs(inputs[0], Path(output))]
    for plan in plans:
        if render is not None:
            plan.render = plan.npz.with_suffix(Path(render).name.lower()) if beside else Path(render)
    return plans

"""``hotpatch lift TARGET --keypoints FILE -o OUT.npz``: a video's 2D keypoints to 3D, optionally rendered.

TARGET as in ``eval``. With ``--n/--f`` (or a patched TARGET) the HoT-patched model lifts;
without them the model as it is. ``--compare`` also lifts with the unpatched model and reports
both speeds and how far apart their poses are.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.atomic import atomic_write, write_npz, write_text
from hotpatch.cli._options import (add_hot_arguments, check_outputs, consoles, describe_config, hot_settings,
                                   nonnegative_float, positive_float, positive_int)
from hotpatch.errors import ConfigError, DataError, InputShapeError
from hotpatch.cli._progress import Progress
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hotpatch.keypoints import FORMATS
    from hotpatch.lift import NORMALIZATIONS

    p = subparsers.add_parser(
        "lift", help="lift a video's 2D keypoints (COCO / AlphaPose / MMPose JSON, .npy/.npz) to 3D",
        description="Lift the 2D keypoints a detector wrote for a video to root-relative 3D poses with TARGET "
                    "(HoT-patched with --n/--f, or as it is), in sliding windows of the model's F frames.")
    add_target_arguments(p)
    add_hot_arguments(p)
    g = p.add_argument_group("keypoints")
    g.add_argument("--keypoints", required=True, metavar="FILE", help="the detector's output for one video")
    g.add_argument("--format", choices=FORMATS, help="override the detected file format")
    g.add_argument("--width", type=positive_int, metavar="W",
                   help="video frame width in pixels (where the file lacks it)")
    g.add_argument("--height", type=positive_int, metavar="H",
                   help="video frame height in pixels (where the file lacks it)")
    g.add_argument("--person", type=int, metavar="ID", help="track id to lift (default: the best detection per frame)")
    g.add_argument("--min-score", type=nonnegative_float, default=0.3, metavar="S",
                   help="joints scoring below S are interpolated over time (default: 0.3)")
    g.add_argument("--normalize", choices=NORMALIZATIONS, default="screen",
                   help="input normalisation the model was trained with: screen (VideoPose3D, needs the image size) "
                        "or box (the clip's bounding box to [-1, 1], MotionBERT in the wild) (default: screen)")
    r = p.add_argument_group("lifting")
    r.add_argument("--stride", type=positive_int, metavar="S",
                   help="seq2seq window stride (default: 3F/4, windows overlap by a quarter; F: no overlap)")
    r.add_argument("--batch", type=positive_int, default=64, metavar="B", help="windows per forward (default: 64)")
    r.add_argument("--flip", action="store_true", help="test-time flip augmentation")
    r.add_argument("--compare", action="store_true", help="also lift with the unpatched model; report both")
    r.add_argument("--compile", nargs="?", const="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help="lift with torch.compile(model, mode=MODE, fullgraph=True) (compiled before timing)")
    r.add_argument("--seed", type=int, default=0, help="seed of new parameters (an untrained TRA) (default: 0)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="poses, the 2D used and the settings")
    o.add_argument("--render", metavar="OUT.gif|OUT.mp4|OUT.png",
                   help="2D input beside the 3D skeleton: an animation (.gif, .mp4 with ffmpeg) or a contact sheet (.png)")
    o.add_argument("--render-frames", type=positive_int, metavar="N", help="animate only the first N frames")
    o.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate of the rendered animation (default: 30)")
    o.add_argument("--json", metavar="PATH", help="write the summary as JSON to PATH ('-' for stdout only)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from hotpatch.keypoints import read_keypoints
    from hotpatch.lift import lift_track, mean_joint_distance
    from hotpatch.render import KINDS
    out, err = consoles(args.quiet)
    check_outputs(args)
    if Path(args.keypoints).is_dir():
        raise DataError(f"--keypoints {args.keypoints} is a directory; pass the detector's output file in it "
                        "(a .json, .npy or .npz file)")
    if args.render and Path(args.render).suffix.lower() not in KINDS:
        raise ConfigError(f"--render {args.render}: expected a file ending in {', '.join(KINDS)}")
    track = read_keypoints(args.keypoints, format=args.format, person=args.person, min_score=args.min_score)
    torch.manual_seed(args.seed)
    target = load_target(args)
    settings = hot_settings(args)
    wants_patch = any(v is not None for k, v in settings.items() if k in ("n", "f"))
    if target.patched:
        model = target.model
    elif wants_patch:
        model = target.patch(**settings)
    else:
        model = target.model
    patched = hasattr(model, "hotpatch_config")
    if args.compare and not patched:
        raise ConfigError("--compare lifts with the original and the patched model; pass --n and --f "
                          "(or a patched TARGET)")
    frames, joints, channels = target.input_shape()
    if joints != 17:
        raise InputShapeError(f"{target.name} takes J={joints} joints; lifting reads Human3.6M-17 keypoints. "
                              "Build the model for 17 joints.")
    common = dict(frames=frames, channels=channels, normalization=args.normalize, width=args.width,
                  height=args.height, stride=args.stride, batch_size=args.batch, flip=args.flip,
                  compile=args.compile)
    with Progress(err, "lift") as progress:
        label = "the patched model" if patched else "the model"
        result = lift_track(model, track, progress=progress.counter(f"lifting with {label}"), **common)
        reference = None
        if args.compare:
            reference = lift_track(target.original(), track, progress=progress.counter("lifting with the original"),
                                   pipeline=result.pipeline, **common)
    config = dict(model.hotpatch_config) if patched else None
    summary: dict[str, Any] = {
        "target": describe(target), "keypoints": str(args.keypoints), "format": track.format,
        "frames": len(track), "missing_frames": track.missing_frames,
        "filled_joints": int(track.filled.sum()), "window": frames, "stride": result.stride,
        "windows": result.windows, "pipeline": result.pipeline, "normalize": args.normalize,
        "config": config, "fps": result.fps, "seconds": result.seconds,
    }
    arrays: dict[str, Any] = {"poses_3d": result.poses, "keypoints_2d": track.xy, "scores": track.scores,
                              "filled": track.filled, "inputs": result.inputs}
    if reference is not None:
        summary["original_fps"] = reference.fps
        summary["speedup"] = result.fps / reference.fps if reference.fps else None
        summary["mean_joint_difference"] = mean_joint_distance(result.poses, reference.poses)
        arrays["poses_3d_original"] = reference.poses
    write_npz(args.output, **arrays, summary=np.array(json.dumps(summary, default=str)))
    if args.render:
        from hotpatch.render import render

        size = (args.width or track.width, args.height or track.height)
        label = f"HoT {describe_config(config)}" if config else describe(target)
        with atomic_write(args.render) as tmp:
            render(tmp, track.xy, result.poses, fps=args.fps, title=label,
                   image_size=size if all(size) else None, max_frames=args.render_frames)
    if args.json:
        text = json.dumps(summary, indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    _report(out, summary, args)
    return 0


def _report(out: Any, s: dict[str, Any], args: argparse.Namespace) -> None:
    hot = f"; HoT {describe_config(s['config'])}" if s["config"] else "; unpatched"
    out.print(f"{s['target']}{hot}", highlight=False, markup=False)
    out.print(f"lifted {s['frames']} frames ({s['format']}; {s['missing_frames']} frames without a detection, "
              f"{s['filled_joints']} joint positions interpolated) in {s['windows']} windows of {s['window']} (stride {s['stride']}, "
              f"{s['pipeline']}): {s['fps']:.1f} frames/s", highlight=False, markup=False)
    if "original_fps" in s:
        out.print(f"original: {s['original_fps']:.1f} frames/s, speed-up {s['speedup']:.2f}x; mean per-joint "
                  f"difference {s['mean_joint_difference']:.4g} (model units)", highlight=False, markup=False)
    out.print(f"wrote {args.output}" + (f" and {args.render}" if args.render else ""), highlight=False, markup=False)

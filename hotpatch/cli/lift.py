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

from hotpatch.atomic import atomic_write, write_text
from hotpatch.cli._options import (add_hot_arguments, check_outputs, consoles, describe_config, hot_settings,
                                   nonnegative_float, positive_float, positive_int)
from hotpatch.cli._progress import Progress
from hotpatch.cli._stream import add_stream_arguments, check_offline, run_stream
from hotpatch.errors import ConfigError, InputShapeError
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def frame_size_arg(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(v) for v in parts)
        if len(parts) != 2 or w < 1 or h < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the frame size as WxH in pixels, e.g. 1920x1080") from None
    return w, h


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
    g.add_argument("--keypoints", required=True, metavar="FILE",
                   help="the detector's output for one video (COCO-17, Halpe-26/136 or COCO-WholeBody-133 joints)")
    g.add_argument("--format", choices=FORMATS, help="override the detected file format")
    g.add_argument("--size", type=frame_size_arg, metavar="WxH",
                   help="video frame size in pixels, e.g. 1920x1080 (default: from the file or --video; else the "
                        "smallest common size holding every keypoint, with a warning)")
    g.add_argument("--width", type=positive_int, metavar="W", help=argparse.SUPPRESS)  # older spelling of --size
    g.add_argument("--height", type=positive_int, metavar="H", help=argparse.SUPPRESS)
    g.add_argument("--video", metavar="IN.mp4",
                   help="the video the keypoints come from: its frame size, and --render draws over its frames "
                        "(needs imageio: pip install 'hotpatch[plot]'; .mp4 also needs PyAV: pip install av)")
    g.add_argument("--person", type=int, metavar="ID", help="track id to lift (default: the best detection per frame)")
    g.add_argument("--min-score", type=nonnegative_float, default=0.3, metavar="S",
                   help="joints scoring below S are interpolated over time (default: 0.3)")
    g.add_argument("--normalize", choices=NORMALIZATIONS,
                   help="input normalisation: screen (VideoPose3D, needs the frame size) or box (the clip's bounding "
                        "box to [-1, 1], MotionBERT in the wild) (default: the one the model records, from its "
                        "recipe or file)")
    r = p.add_argument_group("lifting")
    from hotpatch.cli._options import COMPILE_HELP, add_batch_option, add_json_option, add_threads_option
    r.add_argument("--stride", type=positive_int, metavar="S",
                   help="seq2seq window stride (default: 3F/4, windows overlap by a quarter; F: no overlap)")
    add_batch_option(r, 64)
    add_threads_option(r)
    r.add_argument("--flip", action="store_true", help="test-time flip augmentation")
    r.add_argument("--compare", action="store_true", help="also lift with the unpatched model; report both")
    r.add_argument("--compile", nargs="?", const="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help=COMPILE_HELP)
    r.add_argument("--seed", type=int, default=0, help="seed of new parameters (an untrained TRA) (default: 0)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="poses, the 2D used and the settings")
    o.add_argument("--render", metavar="OUT.gif|OUT.mp4|OUT.png",
                   help="2D input (over the --video frames if given) beside the 3D skeleton: an animation (.gif, "
                        ".mp4 with ffmpeg) or a contact sheet (.png)")
    o.add_argument("--render-frames", type=positive_int, metavar="N", help="animate only the first N frames")
    o.add_argument("--turn", action="store_true", help="turn the 3D view about the vertical axis while animating")
    o.add_argument("--fps", type=positive_float, default=30.0, help="frame rate of the rendered animation (default: 30)")
    add_json_option(o)  # the summary
    add_stream_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from hotpatch.lift import lift_file, lift_track, mean_joint_distance, resolve_convention, write_npz
    from hotpatch.keypoints import check_keypoint_file
    from hotpatch.render import KINDS

    if args.stream:
        return run_stream(args)
    check_offline(args)
    out, err = consoles(args.quiet)
    check_outputs(args)
    check_keypoint_file(args.keypoints, "--keypoints")  # before any model is built
    if args.render and Path(args.render).suffix.lower() not in KINDS:
        raise ConfigError(f"--render {args.render}: expected a file ending in {', '.join(KINDS)}")
    if (args.width is None) != (args.height is None):
        raise ConfigError("give the frame size as --size WxH (or both --width and --height)")
    size = args.size or ((args.width, args.height) if args.width else None)
    video = None
    if args.video:
        from hotpatch.video import VideoFrames

        video = VideoFrames(args.video)
    torch.manual_seed(args.seed)
    target = load_target(args)
    settings = hot_settings(args)
    wants_patch = any(v is not None for k, v in settings.items() if k in ("n", "f", "keep"))
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
    convention = resolve_convention(target.model, channels, args.normalize)
    common = dict(stride=args.stride, batch_size=args.batch, flip=args.flip, compile=args.compile)
    with Progress(err, "lift") as progress:
        def bar(name: str):
            return progress.counter(f"lifting with {name}")

        label = "the patched model" if patched else "the model"
        lifted = lift_file(model, args.keypoints, frames=frames, channels=channels, convention=convention, size=size,
                           video_size=video.size if video else None, format=args.format, person=args.person,
                           min_score=args.min_score, progress=bar(label), **common)
        summary, track = lifted.summary, lifted.track
        reference = None
        if args.compare:
            w, h = summary["frame_size"] or (None, None)
            reference = lift_track(target.original(), track, frames=frames, channels=channels,
                                   normalization=summary["normalize"], width=w, height=h,
                                   progress=bar("the original"), pipeline=lifted.result.pipeline, **common)
    summary = {"target": describe(target), **summary}
    arrays = dict(lifted.arrays)
    if reference is not None:
        summary["original_fps"] = reference.fps
        summary["speedup"] = lifted.result.fps / reference.fps if reference.fps else None
        summary["mean_joint_difference_mm"] = mean_joint_distance(lifted.poses, reference.poses) * 1000.0
        arrays["poses_3d_original"] = reference.poses
    write_npz(args.output, arrays, summary)
    if args.render:
        from hotpatch.render import render

        config = summary["config"]
        title = f"HoT {describe_config(config)}" if config else describe(target)
        with atomic_write(args.render) as tmp:
            render(tmp, track.xy, lifted.poses, fps=args.fps, title=title,
                   image_size=tuple(summary["frame_size"]) if summary["frame_size"] else None,
                   max_frames=args.render_frames, video=video, turn=args.turn)
    if args.json:
        text = json.dumps(summary, indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    _report(out, summary, args)
    return 0


def _report(out: Any, s: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.table import Table

    def say(text: str) -> None:
        out.print(text, highlight=False, markup=False)

    hot = f"; HoT {describe_config(s['config'])}" if s["config"] else "; unpatched"
    say(f"{s['target']}{hot}")
    n = s["frames"]
    say(f"lifted {n} frame{'s' if n != 1 else ''} ({s['format']}, {s['layout']} joints; {s['missing_frames']} "
        f"without a detection, {s['filled_joints']} joint positions interpolated) in {s['windows']} "
        f"window{'s' if s['windows'] != 1 else ''} of {s['window']} (stride {s['stride']}, {s['pipeline']}): "
        f"{s['fps']:.1f} frames/s")
    conv = s["input"]
    size = ""
    if s["frame_size"]:
        how = {"given": "as given", "assumed": "assumed"}.get(s["frame_size_from"], f"from {s['frame_size_from']}")
        size = f"; frame {s['frame_size'][0]}x{s['frame_size'][1]} ({how})"
    say(f"input: {conv['normalize']} normalisation, {'x, y, score' if conv['scores'] else 'x, y'}, "
        f"{conv['joints']} order ({conv['from']}){size}")
    if "original_fps" in s:
        say(f"original: {s['original_fps']:.1f} frames/s, speed-up {s['speedup']:.2f}x; mean per-joint "
            f"difference {s['mean_joint_difference_mm']:.1f} mm")
    stats = s["poses"]
    t = Table(title="bone lengths (mm, mean ± sd over frames)", title_justify="left")
    for col in ("bone", "right (or centre)", "left", "L/R asymmetry"):
        t.add_column(col, justify="left" if col == "bone" else "right")
    for name, bone in stats["bones"].items():
        cells = [f"{bone[k]['mean_mm']:.0f} ± {bone[k]['sd_mm']:.0f}" if k in bone else "" for k in ("right", "left")]
        if "centre" in bone:
            cells[0] = f"{bone['centre']['mean_mm']:.0f} ± {bone['centre']['sd_mm']:.0f}"
        asym = f"{bone['asymmetry_pct']:.1f}%" if "asymmetry_pct" in bone else ""
        t.add_row(name, *cells, asym)
    out.print(t)
    say(f"body (median over frames): {stats['width_mm']:.0f} mm wide, {stats['height_mm']:.0f} mm tall")
    say(f"wrote {args.output}" + (f" and {args.render}" if args.render else ""))

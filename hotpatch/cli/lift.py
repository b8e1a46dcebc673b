"""``hotpatch lift TARGET FILE... -o OUT``: videos' 2D keypoints to 3D, optionally rendered.

TARGET as in ``eval``. With ``--n/--f`` (or a patched TARGET) the HoT-patched model lifts;
without them the model as it is. The model is loaded once for every input (files, OpenPose
folders, folders of files, globs; :mod:`hotpatch.cli._lift_io`); under ``torchrun`` the inputs are
split across the ranks, each writing its own. Every output of the command (each ``.npz``,
render and ``--json``) is written to a temp file and kept only if all of them were written.
``--compare`` also lifts with the unpatched model and reports both speeds and how far apart
their poses are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from hotpatch.atomic import Staged
from hotpatch.cli._lift_io import LiftOutputs, expand_inputs, plan_outputs
from hotpatch.cli._lift_model import lift_model
from hotpatch.cli._options import (add_hot_arguments, consoles, describe_config, nonnegative_float, positive_float,
                                   positive_int)
from hotpatch.cli._progress import Progress
from hotpatch.cli._stream import add_stream_arguments, check_offline, run_stream
from hotpatch.cli._targets import add_target_arguments, describe
from hotpatch.cli._weights import add_random_weights
from hotpatch.errors import ConfigError, HotpatchError, OutputError


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


def _files_parser(base: type) -> type:
    """``base`` whose stray positional arguments (input files after options) join ``inputs``:
    argparse takes a command's positionals only in one run, so ``lift mixste --n 3 --f 81 a.json``
    would otherwise leave ``a.json`` unrecognised."""

    class FilesParser(base):  # type: ignore[misc, valid-type]
        def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
            ns, extras = super().parse_known_args(args, namespace)
            files = [a for a in extras if not a.startswith("-")]
            ns.inputs = [*(getattr(ns, "inputs", None) or []), *files]
            return ns, [a for a in extras if a.startswith("-")]

    return FilesParser


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hotpatch.joint_layouts import LAYOUTS
    from hotpatch.keypoints import FORMATS, FRAME_NUMBERS
    from hotpatch.lift import NORMALIZATIONS

    base = subparsers._parser_class
    subparsers._parser_class = _files_parser(base)
    try:
        p = subparsers.add_parser(
            "lift", help="lift videos' 2D keypoints (OpenPose, AlphaPose, COCO, MMPose, MediaPipe, ...) to 3D",
            description="Lift the 2D keypoints a detector wrote for one or more videos to root-relative 3D poses with "
                        "TARGET (HoT-patched with --n/--f, or as it is), in sliding windows of the model's F frames.")
    finally:
        subparsers._parser_class = base
    add_target_arguments(p)
    p.add_argument("inputs", nargs="*", metavar="FILE",
                   help="the detector's output per video: a .json/.npy/.npz file, an OpenPose output folder, a folder "
                        "of such files, or a glob pattern")
    add_hot_arguments(p)
    g = p.add_argument_group("keypoints")
    g.add_argument("--keypoints", action="append", default=[], metavar="FILE",
                   help="an input, as FILE above (may be repeated)")
    g.add_argument("--format", choices=FORMATS, help="override the format detected from the content")
    g.add_argument("--layout", choices=tuple(LAYOUTS),
                   help="the joint layout, where the file does not say it (e.g. coco17 for a COCO-order .npy)")
    g.add_argument("--person", metavar="ID|all",
                   help="a track id, or 'all' for everyone seen in a quarter of the frames or more, each its own "
                        "result (default: the main person, the one detected most)")
    g.add_argument("--frame-numbers", choices=FRAME_NUMBERS, default="file",
                   help="'index' takes the file's frames in order as consecutive frames, for files whose frame "
                        "numbers are image ids (default: file)")
    g.add_argument("--size", type=frame_size_arg, metavar="WxH",
                   help="video frame size in pixels, e.g. 1920x1080 (default: from the file or --video; else the "
                        "smallest common landscape, portrait or square size holding every keypoint, with a warning)")
    g.add_argument("--width", type=positive_int, metavar="W", help=argparse.SUPPRESS)  # older spelling of --size
    g.add_argument("--height", type=positive_int, metavar="H", help=argparse.SUPPRESS)
    g.add_argument("--video", metavar="IN.mp4",
                   help="the video the keypoints come from (one input): its frame size, and --render draws over its "
                        "frames (needs imageio: pip install 'hotpatch[plot]'; .mp4 also needs PyAV: pip install av)")
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
    add_random_weights(r)
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", required=True, metavar="OUT.npz|DIR/",
                   help="poses, the 2D tracks lifted and the settings; a folder for several inputs (DIR/NAME.npz)")
    o.add_argument("--render", metavar="OUT.gif|OUT.mp4|OUT.png|.gif",
                   help="2D input (over the --video frames if given) beside the 3D skeleton: an animation (.gif, "
                        ".mp4 with ffmpeg) or a contact sheet (.png); a bare suffix writes NAME.gif beside each .npz")
    o.add_argument("--render-frames", type=positive_int, metavar="N", help="animate only the first N frames")
    o.add_argument("--turn", action="store_true", help="turn the 3D view about the vertical axis while animating")
    o.add_argument("--fps", type=positive_float, default=30.0, help="frame rate of the rendered animation (default: 30)")
    add_json_option(o)  # the summary
    add_stream_arguments(p)
    p.set_defaults(run=run)
    return p


def _person(text: str | None) -> Any:
    if text is None or text == "all":
        return text
    return int(text) if text.lstrip("-").isdigit() else text


def _plan(args: argparse.Namespace) -> list[LiftOutputs]:
    """Inputs and their outputs, checked before any model is built (a missing ``-o DIR/`` is created)."""
    from hotpatch.atomic import check_writable

    plans = plan_outputs(expand_inputs([*args.inputs, *args.keypoints]), args.output, args.render)
    if args.video and len(plans) > 1:
        raise ConfigError(f"--video gives one video's frames, but there are {len(plans)} inputs; lift them one by one")
    if args.render and args.render.lower().endswith(".mp4") and shutil.which("ffmpeg") is None:
        raise ConfigError(f"--render {args.render} needs ffmpeg, which is not on the PATH; install it "
                          "(e.g. apt-get install ffmpeg) or render a .gif")
    folder = plans[0].npz.parent
    if args.output.endswith(("/", "\\")) and not folder.exists() and folder.parent.is_dir():
        folder.mkdir()
    sources = {p.source.resolve() for p in plans}
    outputs = [out for plan in plans for out in (plan.npz, plan.render) if out is not None]
    if args.json and args.json != "-":
        outputs.append(Path(args.json))
    for out in outputs:
        if out.resolve() in sources:
            raise ConfigError(f"{out} is also an input: the command would overwrite it; write elsewhere")
        check_writable(out)
    return plans


def run(args: argparse.Namespace) -> int:
    from hotpatch.distributed import gather, setup_distributed, shard, teardown

    if args.stream:
        return run_stream(args)
    check_offline(args)
    out, err = consoles(args.quiet)
    if (args.width is None) != (args.height is None):
        raise ConfigError("give the frame size as --size WxH (or both --width and --height)")
    args.size = args.size or ((args.width, args.height) if args.width else None)
    plans = _plan(args)
    video = None
    if args.video:
        from hotpatch.video import VideoFrames

        video = VideoFrames(args.video)
    target, model, recovery = lift_model(args)
    if args.compare and not hasattr(model, "hotpatch_config"):
        raise ConfigError("--compare lifts with the original and the patched model; pass --n and --f "
                          "(or a patched TARGET)")
    ctx = setup_distributed()
    staged, error, results = Staged(), None, []
    try:
        with Progress(err if ctx.is_main else None, "lift") as progress:
            for i, plan in enumerate(shard(plans, ctx)):  # the model is warm after the first input
                results.append(_lift(args, plan, target, model, recovery, video, staged, progress, warm=i > 0))
    except KeyboardInterrupt:
        staged.discard()
        raise
    except Exception as exc:  # noqa: BLE001 - every rank must reach the gather; re-raised below
        error = exc
    failed = [e for e in gather(None if error is None else str(error), ctx) if e]
    try:
        if failed:
            staged.discard()
            raise error or OutputError(f"another process failed, so none of the outputs was written: {failed[0]}")
        every = [s for part in gather(results, ctx) for s in part]
        if ctx.is_main and args.json:
            text = json.dumps(every[0] if len(plans) == 1 else {"files": every}, indent=2, default=str)
            if args.json == "-":
                staged.commit()
                sys.stdout.write(text + "\n")
                return 0
            tmp = staged.path(args.json)
            tmp.write_text(text + "\n")
        staged.commit()
    finally:
        teardown(ctx)
    if ctx.is_main:
        _report(out, every, args)
    return 0


def _lift(args: argparse.Namespace, plan: LiftOutputs, target: Any, model: Any, recovery: str, video: Any,
          staged: Staged, progress: Any, warm: bool = False) -> dict[str, Any]:
    """Lift one input; its outputs go to ``staged``; returns its summary (with the target)."""
    from hotpatch.lift import lift_people, lift_track, mean_joint_distance, resolve_convention, stacked, write_npz

    frames, _, channels = target.input_shape()
    convention = resolve_convention(target.model, channels, args.normalize)
    common = dict(stride=args.stride, batch_size=args.batch, flip=args.flip, compile=args.compile, warmup=not warm)
    person = _person(args.person)
    several = person == "all"
    label = "the patched model" if hasattr(model, "hotpatch_config") else "the model"
    lifted = lift_people(model, plan.source, person=person, frames=frames, channels=channels, convention=convention,
                         size=args.size, video_size=video.size if video else None, format=args.format,
                         layout=args.layout, min_score=args.min_score, frame_numbers=args.frame_numbers,
                         trust=args.trust, recovery=recovery,
                         progress=progress.counter(f"{plan.source.name}: lifting with {label}"), **common)
    for one in lifted:
        one.summary["target"] = describe(target)
        if args.compare:
            w, h = one.summary["frame_size"] or (None, None)
            ref = lift_track(target.original(), one.track, frames=frames, channels=channels,
                             normalization=one.summary["normalize"], width=w, height=h,
                             progress=progress.counter(f"{plan.source.name}: lifting with the original"),
                             pipeline=one.result.pipeline, **common)
            one.summary["original_fps"] = ref.fps
            one.summary["speedup"] = one.result.fps / ref.fps if ref.fps else None
            one.summary["mean_joint_difference_mm"] = mean_joint_distance(one.poses, ref.poses) * 1000.0
            one.arrays["poses_3d_original"] = ref.poses
    arrays, summary = stacked(lifted, several)
    summary["target"] = describe(target)
    summary["output"] = str(plan.npz)
    summary["outputs"] = [str(plan.npz)]
    write_npz(staged.path(plan.npz), arrays, summary)
    if plan.render is not None:
        summary["outputs"] += [str(p) for p in _render(args, plan, lifted, several, video, staged)]
    return summary


def _render(args: argparse.Namespace, plan: LiftOutputs, lifted: list, several: bool, video: Any,
            staged: Staged) -> list[Path]:
    from hotpatch.render import render

    written = []
    for one in lifted:
        target = plan.render_for(one.track.person, several)
        tmp = staged.path(target)
        config = one.summary["config"]
        title = f"HoT {describe_config(config)}" if config else one.summary["target"]
        if several:
            title += f"; person {one.track.person}"
        try:
            render(tmp, one.track.xy, one.poses, fps=args.fps, title=title,
                   image_size=tuple(one.summary["frame_size"]) if one.summary["frame_size"] else None,
                   max_frames=args.render_frames, video=video, turn=args.turn)
        except HotpatchError as exc:
            raise staged.explained(exc, tmp, target) from exc
        except OSError as exc:
            raise staged.explained(exc, tmp, target) from exc
        written.append(target)
    return written


def _report(out: Any, summaries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    def say(text: str) -> None:
        out.print(text, highlight=False, markup=False)

    if len(summaries) == 1 and "people" not in summaries[0]:
        _report_one(out, summaries[0])
    else:
        _report_table(out, summaries)
    written = [path for s in summaries for path in s["outputs"]]
    if args.json and args.json != "-":
        written.append(args.json)
    say(f"wrote {written[0]}" if len(written) == 1 else f"wrote {len(written)} files: {', '.join(written[:6])}"
        + (", ..." if len(written) > 6 else ""))


def _report_table(out: Any, summaries: list[dict[str, Any]]) -> None:
    from rich.table import Table

    first = summaries[0]
    hot = f"HoT {describe_config(first['config'])}" if first["config"] else "unpatched"
    out.print(f"{first['target']}; {hot}", highlight=False, markup=False)
    t = Table(title="lifted", title_justify="left")
    for col in ("input", "format", "person", "frames", "missing", "stature (mm)", "frames/s", "warnings"):
        t.add_column(col, justify="left" if col in ("input", "format") else "right")
    for s in summaries:
        for person in s.get("people") or [s]:
            t.add_row(Path(s["keypoints"]).name, f"{s['format']} {s['layout']}", str(person["person"]),
                      str(s["frames"]), str(person["missing_frames"]), f"{person['poses']['stature_mm']:.0f}",
                      f"{person.get('fps', s['fps']):.1f}", str(len(person["warnings"])))
    out.print(t)


def _report_one(out: Any, s: dict[str, Any]) -> None:
    from rich.table import Table

    def say(text: str) -> None:
        out.print(text, highlight=False, markup=False)

    hot = f"; HoT {describe_config(s['config'])}" if s["config"] else "; unpatched"
    say(f"{s['target']}{hot}")
    if s.get("recovery_note"):
        say(f"recovery: {s['recovery_note']}")
    n = s["frames"]
    tracking = s.get("tracking") or {}
    people = f"; person {s['person']} of {tracking['people']} ({tracking['source']})" if tracking.get("people", 1) > 1 \
        else ""
    say(f"lifted {n} frame{'s' if n != 1 else ''} ({s['format']}, {s['layout']} joints{people}; {s['missing_frames']} "
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
    say(f"body (median over frames): {stats['width_mm']:.0f} mm wide, {stats['height_mm']:.0f} mm tall, stature "
        f"{stats['stature_mm']:.0f} mm (head-to-ankle bones)")

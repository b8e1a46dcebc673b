"""``hotpatch lift TARGET --stream``: live lifting, one JSON line in, one JSON line out, per frame.

Each stdin line is one video frame's detection: ``{"keypoints": [x, y, score, ...]}`` (flat, as COCO /
AlphaPose write it, or a list of ``[x, y(, score)]``), a bare list, or ``{"keypoints": null}`` / ``{}``
when no person was found. The joint layout comes from the joint count as for keypoint files (COCO-17,
Halpe-26, COCO-WholeBody-133, Halpe-136; ``--format h36m``: already Human3.6M-17). A joint scoring
below ``--min-score`` (or a frame without a detection) keeps the joint's last good position: the
causal version of the offline lift's interpolation. Each stdout line is
``{"frame": i, "pose": [[x, y, z] * 17]}`` (metres, root-relative; ``null`` before the first
detection), written and flushed as soon as the model has seen ``--delay`` frames after frame i.
TARGET may also be an ``.onnx`` file written by ``hotpatch export`` (run in onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

import numpy as np

from hotpatch.cli._options import nonnegative_int, positive_int
from hotpatch.errors import ConfigError, DataError

#: Options ``lift`` requires offline that ``--stream`` replaces with stdin / stdout.
OFFLINE_ONLY = ("output",)


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stream``, ``--delay``, ``--hop`` on ``lift``'s parser; ``--keypoints`` and ``-o`` become optional
    there (:func:`check_offline` asks for them when not streaming)."""
    g = parser.add_argument_group("streaming")
    g.add_argument("--stream", action="store_true",
                   help="lift live: one JSON detection per line on stdin, one 3D pose per line on stdout (flushed); "
                        "TARGET may be an exported .onnx file")
    g.add_argument("--delay", type=nonnegative_int, metavar="D",
                   help="with --stream: frames the model sees after the frame it emits (default: seq2seq F-1, "
                        "seq2frame the frames after the centre); latency is D frames")
    g.add_argument("--hop", type=positive_int, metavar="H",
                   help="with --stream, seq2seq: one forward every H frames, 1 <= H <= D+1 (default: D+1, the "
                        "fewest forwards; 1: every frame sees exactly D frames after it)")
    for action in parser._actions:  # argparse keeps no public handle on an added argument
        if action.dest in OFFLINE_ONLY:
            action.required = False


def check_offline(args: argparse.Namespace) -> None:
    """Without ``--stream``: the options the offline lift needs were given; stream-only options were not."""
    missing = [] if args.inputs or args.keypoints else ["FILE (or --keypoints FILE)"]
    missing += [] if args.output else ["-o/--output"]
    if missing:
        raise ConfigError(f"the following arguments are required: {', '.join(missing)} (or lift live with --stream)")
    if args.delay is not None or args.hop is not None:
        raise ConfigError("--delay and --hop set the live lift; add --stream")


def run_stream(args: argparse.Namespace, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Lift stdin's detections live with TARGET; see the module docstring."""
    from hotpatch.cli._options import consoles
    from hotpatch.stream import Stream

    _, err = consoles(args.quiet)
    given = [f for dest, f in (("inputs", "FILE"), ("keypoints", "--keypoints"), ("output", "-o")) if getattr(args, dest, None)]
    given += [f"--{k.replace('_', '-')}" for k in ("render", "render_frames", "turn", "json", "compare", "video",
                                                    "stride", "flip", "compile", "person") if getattr(args, k, None)]
    if given:
        raise ConfigError(f"--stream reads stdin and writes stdout; drop {', '.join(given)}")
    model, frames, channels = _model(args)
    conv = _convention(model, channels, args)
    size = getattr(args, "size", None) or ((args.width, args.height) if getattr(args, "width", None) else None)
    if conv.normalize == "screen" and not size:
        raise ConfigError("--stream with screen normalisation needs the video's frame size: pass --size WxH (or "
                          "--normalize box)")
    stream = Stream(model, delay=args.delay, hop=args.hop, frames=frames, normalize=conv.normalize, size=size)
    reader = _Frames(getattr(args, "format", None), getattr(args, "min_score", 0.3), conv.scores)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    offset = None  # the input frame of stream frame 0 (the first detection)
    t0, lines = time.perf_counter(), 0

    def emit(poses: list[tuple[int, np.ndarray]]) -> None:
        for index, pose in poses:
            stdout.write(json.dumps({"frame": index + offset, "pose": np.round(pose, 5).tolist()}) + "\n")
        stdout.flush()

    for number, line in enumerate(stdin, 1):
        if not line.strip():
            continue
        keypoints = reader.frame(line, number)
        if keypoints is None and offset is None:  # nobody seen yet: nothing to lift or to hold
            stdout.write(json.dumps({"frame": lines, "pose": None}) + "\n")
            stdout.flush()
        else:
            offset = lines if offset is None else offset
            emit(stream.push(keypoints if keypoints is not None else reader.out(reader.last)))
        lines += 1
    if offset is not None:
        emit(stream.flush())
    seconds = time.perf_counter() - t0
    if err is not None:
        per = f"{1e3 * stream.seconds / stream.forwards:.1f} ms each" if stream.forwards else "none"
        err.print(f"streamed {lines} frames (delay {stream.delay}, hop {stream.hop}, {stream.pipeline}): "
                  f"{stream.forwards} forwards ({per}); {lines / seconds if seconds else 0:.1f} frames/s "
                  "including I/O", highlight=False, markup=False)
    return 0


def _model(args: argparse.Namespace) -> tuple[Any, int, int]:
    """The model to stream with, its F and its input channels: an ONNX file, or TARGET as ``lift`` takes it."""
    if str(args.target).lower().endswith(".onnx"):
        from hotpatch.export import OnnxModel

        if args.n is not None or args.f is not None:
            raise ConfigError("an .onnx TARGET is already exported as it is; drop --n/--f (patch before exporting)")
        model = OnnxModel(args.target)
        frames, joints, channels = model.input_shape
        if joints != 17:
            raise ConfigError(f"{args.target} takes J={joints} joints; streaming lifts Human3.6M-17 keypoints")
        return model, frames, channels
    from hotpatch.cli._lift_model import lift_model

    target, model, _ = lift_model(args, "streaming")  # refuses J != 17 itself
    frames, _, channels = target.input_shape()
    return model, frames, channels


def _convention(model: Any, channels: int, args: argparse.Namespace) -> Any:
    from hotpatch.lift import resolve_convention

    conv, _ = resolve_convention(model, channels, getattr(args, "normalize", None))
    return conv


class _Frames:
    """Parses stdin lines into (17, 2 | 3) Human3.6M-17 pixel keypoints, holding low-score joints."""

    def __init__(self, fmt: str | None, min_score: float, scores: bool) -> None:
        self.h36m = fmt == "h36m"
        self.min_score, self.scores = min_score, scores
        self.last: np.ndarray | None = None  # the previous frame's (17, 3): x, y, score

    def frame(self, line: str, number: int) -> np.ndarray | None:
        """The frame's keypoints (x, y and, for a model that takes them, scores), or None if no detection."""
        kp = self._parse(line, number)
        if kp is None:
            if self.last is not None:
                self.last = self.last.copy()
                self.last[:, 2] = 0.0  # held, not seen
            return None
        if not self.h36m:
            from hotpatch.joint_layouts import layout_for, to_h36m

            kp = to_h36m(kp, layout_for(len(kp), f"line {number}"))
        elif len(kp) != 17:
            raise DataError(f"line {number}: {len(kp)} joints; --format h36m expects 17")
        low = ~(kp[:, 2] >= self.min_score)
        if self.last is not None:
            kp[low, :2] = self.last[low, :2]
        self.last = kp.astype(np.float32)
        return self.out(self.last)

    def out(self, kp: np.ndarray) -> np.ndarray:
        return kp if self.scores else kp[:, :2]

    def _parse(self, line: str, number: int) -> np.ndarray | None:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"line {number} of stdin is not JSON ({exc.msg}); send one JSON object per frame, "
                            'e.g. {"keypoints": [x, y, score, ...]}') from None
        if isinstance(data, dict):
            data = data.get("keypoints")
        if data is None or (isinstance(data, list) and not data):
            return None
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim == 1 and arr.size % 3 == 0:
            arr = arr.reshape(-1, 3)
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise DataError(f"line {number}: keypoints of shape {arr.shape}; expected [x, y, score] per joint "
                            "(flat or nested)")
        if arr.shape[1] == 2:
            arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
        if not np.isfinite(arr).all():
            raise DataError(f"line {number}: keypoints hold NaN or inf; send a low score for a missing joint")
        return arr

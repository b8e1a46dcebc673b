"""``hotpatch profile TARGET [--n N --f F]``: params, FLOPs, latency/FPS and memory, before/after."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from typing import Any

import torch

from hotpatch.atomic import write_text
from hotpatch.cli._options import (add_hot_arguments, check_outputs, consoles, describe_config, hot_settings,
                                   nonnegative_int, positive_int)
from hotpatch.cli._progress import Progress
from hotpatch.errors import ConfigError
from hotpatch.keep import frames_for
from hotpatch.cli._targets import Target, add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "profile", help="params, FLOPs, latency/FPS and memory; before/after with --n/--f",
        description="Profile TARGET. With --n and --f, or for a recipe file or a recipe's full name "
                    "(mixste-hot-243-81: its [hot] setting), patch it with HoT and print before, after and "
                    "the % change of every number, timed interleaved in one run.")
    add_target_arguments(p)
    add_hot_arguments(p)
    from hotpatch.cli._options import COMPILE_HELP, add_batch_option, add_json_option, add_threads_option

    g = p.add_argument_group("measurement")
    add_batch_option(g, 1)
    g.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    g.add_argument("--counters", default="fvcore,paper",
                   help="FLOP counters, comma-separated: fvcore, paper, torch, thop (default: fvcore,paper)")
    g.add_argument("--by-block", action="store_true", help="paper FLOPs of every transformer block")
    g.add_argument("--repeats", type=positive_int, default=20, metavar="R",
                   help="timed forwards per model (default: 20)")
    g.add_argument("--warmup", type=nonnegative_int, default=3, metavar="W", help="untimed forwards first (default: 3)")
    add_threads_option(g)
    g.add_argument("--train", action="store_true", help="also measure the memory of one training step")
    g.add_argument("--no-fps", dest="fps", action="store_false", help="skip timing")
    g.add_argument("--original", action="store_true",
                   help="profile a recipe's model as it is, without its HoT setting")
    g.add_argument("--compile", nargs="?", const="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help=COMPILE_HELP)  # both models
    g.add_argument("--calls", type=positive_int, default=1, metavar="N",
                   help="forwards of the model per clip, e.g. K sampling steps x H hypotheses of a diffusion "
                        "denoiser (every number above is per call); N > 1 adds the per-clip totals")
    add_json_option(g)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    out, err = consoles(args.quiet)
    if (args.n is None) != (args.f is None and args.keep is None):
        raise ConfigError("pass both --n and --f (or --keep) to compare before/after a patch, or neither to profile "
                          "as is")
    if args.original and args.n is not None:
        raise ConfigError("--original profiles the model as it is; drop --n/--f, or drop --original to compare")
    check_outputs(args)
    target = load_target(args)
    measure = dict(counters=args.counters, fps=args.fps, device=args.device, repeats=args.repeats,
                   warmup=args.warmup, threads=args.threads, by_block=args.by_block, train=args.train,
                   compile=args.compile)
    with Progress(err, "profile") as progress:
        progress.status("measuring (FLOPs" + (", then timed forwards)" if args.fps else ")"))
        result, config = _measure(target, args, measure, progress.counter("timing forwards"))
    to_stdout = args.json == "-"
    if args.json:
        _write_json(result, config, target, args)
    if not to_stdout:
        geometry = "F={} J={} C={}".format(*target.input_shape())
        names = _input_names(target)
        if len(names) > 1:
            geometry += f"; inputs {', '.join(names)}"
        head = f"{describe(target)} ({geometry}, batch {args.batch})"
        out.print(head + (f"; HoT {describe_config(config)}" if config else ""), highlight=False, markup=False)
        out.print(result)
        out.print(per_call_text(result, args.calls), highlight=False, markup=False)
        if args.json:
            out.print(f"wrote {args.json}", highlight=False, markup=False)
    return 0


def _positional(target: Target, example: Any) -> Any:
    """A dict of inputs as forward's positional arguments (profile times ``model(*args)``)."""
    if not isinstance(example, dict):
        return example
    from hotpatch.engine.inputs import positional

    args, rest = positional(target.model, example)
    if rest:
        raise ConfigError(f"--example-input gives {sorted(rest)} but not every parameter of forward before them; "
                          "give the inputs in forward's order (a tuple), or each one up to the last")
    return args


def _input_names(target: Target) -> list[str]:
    """The names of the model's inputs when it takes several (else one or none)."""
    example = target.example_input(1) if target.several_inputs else None
    if isinstance(example, dict):
        return list(example)
    if isinstance(example, (tuple, list)):
        from hotpatch.engine.inputs import forward_parameters

        return [p.name for p in forward_parameters(target.model)][: len(example)]
    return []


def per_clip(result: Any, calls: int) -> dict[str, Any]:
    """FLOPs and latency of ``calls`` forwards (a diffusion sampler's K steps x H hypotheses per clip),
    before and after for a comparison: every counter's value and the median latency times ``calls``."""
    profiles = {"before": result.before, "after": result.after} if hasattr(result, "before") else {"model": result}
    out: dict[str, Any] = {"calls": calls}
    for key, p in profiles.items():
        flops = {name: f.value * calls for name, f in p.flops.items() if f.value is not None}
        seconds = p.latency.median_ms * calls / 1000 if p.latency is not None else None
        out[key] = {"flops": flops, "latency_s": seconds}
    return out


def _giga(value: float) -> str:
    return f"{value / 1e12:.2f} T" if value >= 1e12 else f"{value / 1e9:.2f} G"


def per_call_text(result: Any, calls: int) -> str:
    """One line under the table (whose numbers are per call): how to get per-clip totals, or with
    ``calls`` > 1 the totals."""
    if calls == 1:
        return "A model called N times per clip (diffusion: K steps x H hypotheses): --calls N adds per-clip totals."
    totals = per_clip(result, calls)
    keys = [k for k in ("before", "after", "model") if k in totals]
    parts = []
    for name, f in (result.before if "before" in totals else result).flops.items():
        values = [totals[k]["flops"].get(name) for k in keys]
        if all(v is not None for v in values):
            parts.append(f"{f.unit} ({name}) " + " -> ".join(_giga(v) for v in values))
    if all(totals[k]["latency_s"] is not None for k in keys):
        parts.append("latency " + " -> ".join(f"{totals[k]['latency_s']:,.2f} s" for k in keys))
    return f"per clip of {calls} calls (every number above is per call): " + "; ".join(parts)


def _measure(target: Target, args: argparse.Namespace, measure: dict[str, Any], progress: Any):
    with target.diagnosed():  # a model that fails on its own input: say so, not "pass an input"
        return _measure_target(target, args, measure, progress)


def _measure_target(target: Target, args: argparse.Namespace, measure: dict[str, Any], progress: Any):
    from hotpatch.profile import compare, profile

    settings = hot_settings(args)
    if target.patched:
        config = dict(target.model.hotpatch_config)
        example = _positional(target, target.example_input(args.batch))
        pipeline = config["pipeline"]
        if args.n is None:
            return profile(target.model, example, pipeline=pipeline, progress=progress, **measure), config
        if settings["keep"] is not None:  # the f that --keep asks for, to compare with the saved one
            settings["f"] = frames_for(settings["keep"], config["frames"])
        given = {k: v for k, v in settings.items() if v is not None and k in config}
        differ = {k: (v, config[k]) for k, v in given.items() if config[k] != v}
        if differ:
            text = ", ".join(f"--{k.replace('_', '-')} {v} (saved: {s})" for k, (v, s) in differ.items())
            raise ConfigError(
                f"{target.name} is already patched with {describe_config(config)}; got {text}. Drop --n/--f "
                "to profile it, keep them equal to compare it with its original, or patch the original again"
            )
        return compare(target.original(), target.model, example, pipeline=pipeline, progress=progress,
                       **measure), config
    example = _positional(target, target.example_input(args.batch))
    if args.original or (args.n is None and not target.setting):
        pipeline = target.defaults.get("pipeline") or "seq2seq"
        pipeline = "seq2seq" if pipeline == "auto" else pipeline
        return profile(target.model, example, pipeline=pipeline, progress=progress, **measure), None
    patched = target.patch(**settings)
    config = dict(patched.hotpatch_config)
    return compare(target.model, patched, example, pipeline=config["pipeline"], progress=progress,
                   **measure), config


def _write_json(result: Any, config: dict[str, Any] | None, target: Target, args: argparse.Namespace) -> None:
    from hotpatch._version import __version__

    data: dict[str, Any] = {
        "target": describe(target),
        "source": target.source,
        "input_shape": [args.batch, *target.input_shape()],
        **({"inputs": _input_names(target)} if target.several_inputs else {}),
        "config": config,
        **result.to_dict(),
        **({"per_clip": per_clip(result, args.calls)} if args.calls > 1 else {}),
        "environment": {"hotpatch": __version__, "torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "processor": _cpu_name(),
                        "cpu_count": _cpu_count()},
    }
    text = json.dumps(data, indent=2, default=str)
    if args.json == "-":
        sys.stdout.write(text + "\n")
    else:
        write_text(args.json, text + "\n")


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None

"""``hotpatch export PATCHED.pt --onnx OUT.onnx --torch-export OUT.pt2``: deployable files, checked.

``--quantize int8`` writes the ONNX file with int8 weights (checked against the eager fp32 model
with :data:`hotpatch.export.INT8_TOLERANCE`); ``--data`` also scores the exported ONNX model on the
data's test clips in onnxruntime and reports its MPJPE change against the eager model.
"""

from __future__ import annotations

import argparse

from hotpatch.cli._data import add_data_arguments
from hotpatch.cli._options import check_outputs, consoles, describe_config, positive_int
from hotpatch.errors import ConfigError
from hotpatch.cli._targets import add_target_arguments, describe, load_target
from hotpatch.cli._weights import warn_random_weights
from hotpatch.untrained import warn_untrained


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a patched model to ONNX and/or torch.export, checked against the eager model",
        description="Export TARGET (usually a .pt written by hotpatch patch / finetune) for deployment. Each "
                    "file is run once on a random clip and compared with the eager model.")
    from hotpatch.cli._options import BATCH_HELP, add_threads_option  # shared option definitions

    add_target_arguments(p)
    add_threads_option(p)
    p.add_argument("--onnx", metavar="OUT.onnx", help="write ONNX (checked in onnxruntime; needs hotpatch[export])")
    p.add_argument("--torch-export", metavar="OUT.pt2",
                   help="write a torch.export program (torch.export.load reads it)")
    p.add_argument("--batch", type=positive_int, default=1, metavar="B",
                   help=f"{BATCH_HELP} (default: 1; baked into the export)")
    p.add_argument("--opset", type=positive_int, metavar="N", help="ONNX opset (default: the exporter's)")
    p.add_argument("--quantize", choices=("int8",),
                   help="int8 weights in the --onnx file (onnxruntime dynamic quantization of the linear layers), "
                        "checked against the eager fp32 model with a relative tolerance fit for int8")
    p.add_argument("--per-channel", action="store_true",
                   help="with --quantize: one weight scale per output channel (default: one per tensor)")
    p.add_argument("--verbose", action="store_true", help="show the ONNX libraries' INFO logging (onnx, onnxscript, "
                                                          "onnx_ir; hidden by default)")
    p.add_argument("--keep-failed", action="store_true",
                   help="if a file fails its check against the eager model, keep it as NAME.failed.EXT (default: "
                        "delete it); nothing is ever left at the requested path unchecked")
    add_data_arguments(p, required=False)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from hotpatch.export import export_onnx, export_program

    out, _ = consoles(args.quiet)
    if not args.onnx and not args.torch_export:
        raise ConfigError("nothing to export: pass --onnx OUT.onnx and/or --torch-export OUT.pt2")
    if (args.quantize or args.per_channel) and not args.onnx:
        raise ConfigError("--quantize and --per-channel apply to the ONNX file; pass --onnx OUT.onnx")
    if args.per_channel and not args.quantize:
        raise ConfigError("--per-channel sets how int8 weights are scaled; add --quantize int8")
    if args.data:
        from hotpatch.cli._data import check_data_files

        check_data_files(args)
    check_outputs(args)
    target = load_target(args)
    if not warn_random_weights(target, args, "the exported file"):
        warn_untrained(target.model, str(args.target))
    model = target.model.eval()
    gen = torch.Generator().manual_seed(0)
    if target.several_inputs:  # --example-input's values, or (None) random ones of the inputs it was patched for
        example = target.example_input(args.batch) if target.example is not None else None
    else:
        example = torch.randn(args.batch, *target.input_shape(), generator=gen)
    label = f"HoT {describe_config(model.hotpatch_config)}" if target.patched else "unpatched"
    if args.onnx:
        check = export_onnx(model, args.onnx, example=example, batch=args.batch, opset=args.opset,
                            quantize=args.quantize, per_channel=args.per_channel, keep_failed=args.keep_failed,
                            verbose=args.verbose)
        kind = f"{args.quantize}{' per-channel' if args.per_channel else ''} weights, " if args.quantize else ""
        error = f" (RMS {100 * check.relative_error:.2f}% of the output)" if args.quantize else ""
        out.print(f"wrote {check.path}: {describe(target)} ({label}), {kind}input {check.input_shape}; onnxruntime "
                  f"vs eager max |diff| {check.max_abs_diff:.2e}{error}", highlight=False, markup=False)
        if args.data:
            _score(out, args, target, model)
    if args.torch_export:
        check = export_program(model, args.torch_export, example=example, batch=args.batch,
                               keep_failed=args.keep_failed)
        out.print(f"wrote {check.path}: {describe(target)} ({label}), input {check.input_shape}; reloaded program vs "
                  f"eager max |diff| {check.max_abs_diff:.2e}", highlight=False, markup=False)
    return 0


def _score(out, args: argparse.Namespace, target, model) -> None:
    """MPJPE of the eager model and of the ONNX file just written on --data's test clips."""
    from hotpatch.cli._data import load_splits
    from hotpatch.data import WindowDataset
    from hotpatch.evaluate import evaluate_model, pipeline_of
    from hotpatch.export import OnnxModel

    if target.several_inputs:
        raise ConfigError("--data scores models that take one (B, F, J, C) clip; this one takes several inputs")
    frames, joints, channels = target.input_shape()
    if joints != 17:
        raise ConfigError(f"--data has 17 joints; {describe(target)} takes {joints}")
    test = load_splits(args)["test"]
    data = WindowDataset(test, frames, mode=pipeline_of(model), confidence=channels == 3)
    eager = evaluate_model(model, data, batch_size=64, flops=False)
    onnx = evaluate_model(OnnxModel(args.onnx), data, batch_size=64, flops=False)
    out.print(f"MPJPE on {len(test)} test sequences of {args.data} ({eager['frames']} frames, {data.mode}): eager "
              f"{eager['mpjpe']:.2f} mm, {args.quantize or 'fp32'} ONNX {onnx['mpjpe']:.2f} mm "
              f"({onnx['mpjpe'] - eager['mpjpe']:+.2f} mm)", highlight=False, markup=False)

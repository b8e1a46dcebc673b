"""``hotpatch export PATCHED.pt --onnx OUT.onnx --torch-export OUT.pt2``: deployable files, checked."""

from __future__ import annotations

import argparse

from hotpatch.cli._options import check_outputs, consoles, describe_config, positive_int
from hotpatch.errors import ConfigError
from hotpatch.cli._targets import add_target_arguments, describe, load_target


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
    p.add_argument("--verbose", action="store_true", help="show the ONNX libraries' INFO logging (onnx, onnxscript, "
                                                          "onnx_ir; hidden by default)")
    p.add_argument("--keep-failed", action="store_true",
                   help="if a file fails its check against the eager model, keep it as NAME.failed.EXT (default: "
                        "delete it); nothing is ever left at the requested path unchecked")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from hotpatch.export import export_onnx, export_program

    out, _ = consoles(args.quiet)
    if not args.onnx and not args.torch_export:
        raise ConfigError("nothing to export: pass --onnx OUT.onnx and/or --torch-export OUT.pt2")
    check_outputs(args)
    target = load_target(args)
    model = target.model.eval()
    gen = torch.Generator().manual_seed(0)
    if target.several_inputs:  # --example-input's values, or (None) random ones of the inputs it was patched for
        example = target.example_input(args.batch) if target.example is not None else None
    else:
        example = torch.randn(args.batch, *target.input_shape(), generator=gen)
    label = f"HoT {describe_config(model.hotpatch_config)}" if target.patched else "unpatched"
    if args.onnx:
        check = export_onnx(model, args.onnx, example=example, batch=args.batch, opset=args.opset, keep_failed=args.keep_failed,
                            verbose=args.verbose)
        out.print(f"wrote {check.path}: {describe(target)} ({label}), input {check.input_shape}; onnxruntime vs eager "
                  f"max |diff| {check.max_abs_diff:.2e}", highlight=False, markup=False)
    if args.torch_export:
        check = export_program(model, args.torch_export, example=example, batch=args.batch,
                               keep_failed=args.keep_failed)
        out.print(f"wrote {check.path}: {describe(target)} ({label}), input {check.input_shape}; reloaded program vs "
                  f"eager max |diff| {check.max_abs_diff:.2e}", highlight=False, markup=False)
    return 0

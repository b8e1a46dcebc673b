"""``hotpatch patch TARGET --n N --f F -o OUT.pt``: patch a model and save it with ``hotpatch.save``."""

from __future__ import annotations

import argparse

from hotpatch.cli._options import add_hot_arguments, check_outputs, consoles, describe_config, hot_settings
from hotpatch.errors import TargetError
from hotpatch.saving import save
from hotpatch.cli._targets import add_target_arguments, describe, load_target


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "patch", help="patch a model with HoT and save it (reload with hotpatch.load)",
        description="Patch TARGET with HoT and write it with hotpatch.save: weights, patch config and how "
                    "to build the original, readable without unpickling code. --n/--f default to a "
                    "recipe's paper settings.")
    add_target_arguments(p)
    from hotpatch.cli._options import add_threads_option  # shared option definitions

    add_threads_option(p)
    add_hot_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="file to write")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    out, _ = consoles(args.quiet)
    check_outputs(args)  # before the (slow) patch
    target = load_target(args)
    if target.patched:
        raise TargetError(f"{target.name} is already patched; pass the original model as TARGET")
    if target.source is None:
        raise TargetError(
            f"{target.name} does not say how it was built (no hotpatch_source), so the patched file could not be "
            "loaded again; pass the model as package.module:Class (with --set/--kwargs) or a recipe name, "
            "with --checkpoint for its weights"
        )
    patched = target.patch(**hot_settings(args))
    path = save(patched, args.output, source=target.source)
    before = sum(p.numel() for p in target.model.parameters())
    after = sum(p.numel() for p in patched.parameters())
    out.print(f"wrote {path}: {describe(target)} patched with HoT {describe_config(patched.hotpatch_config)}; "
              f"params {before:,} -> {after:,}", highlight=False, markup=False, soft_wrap=True)
    return 0

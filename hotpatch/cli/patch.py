"""``hotpatch patch TARGET --n N --f F -o OUT.pt|DIR/``: patch a model and save it (``hotpatch.save``, or
``hotpatch.save_pretrained`` for a directory)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hotpatch.atomic import check_directory
from hotpatch.cli._options import add_hot_arguments, check_outputs, consoles, describe_config, hot_settings
from hotpatch.errors import ConfigError, TargetError
from hotpatch.saving import is_directory, save
from hotpatch.cli._targets import add_target_arguments, describe, load_target
from hotpatch.cli._weights import warn_random_weights
from hotpatch.untrained import warn_untrained


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "patch", help="patch a model with HoT and save it (reload with hotpatch.load / from_pretrained)",
        description="Patch TARGET with HoT and write it: to a file with hotpatch.save (weights, patch config and "
                    "how to build the original), or, for -o DIR/ (a trailing slash or an existing directory), to a "
                    "directory with hotpatch.save_pretrained (config.json, model.safetensors and a README.md model "
                    "card). Neither needs unpickling code to load. --n/--f default to a recipe's settings.")
    add_target_arguments(p)
    from hotpatch.cli._options import add_threads_option  # shared option definitions

    add_threads_option(p)
    add_hot_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt|DIR/", help="file or directory to write")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    out, _ = consoles(args.quiet)
    directory = args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()
    if directory:  # before the (slow) patch
        check_directory(args.output, is_directory)
        if Path(args.target).exists() and Path(args.target).resolve() == Path(args.output).resolve():
            raise ConfigError(f"-o {args.output} is also TARGET: the command would overwrite its own input; "
                              "write to another directory")
    else:
        check_outputs(args)
    target = load_target(args)
    if target.patched:
        raise TargetError(f"{target.name} is already patched; pass the original model as TARGET")
    if target.source is None:
        raise TargetError(
            f"{target.name} does not say how it was built (no hotpatch_source), so the patched file could not be "
            "loaded again; pass the model as package.module:Class (with --set/--kwargs) or a recipe name, "
            "with --checkpoint for its weights"
        )
    random = warn_random_weights(target, args, args.output)
    patched = target.patch(**hot_settings(args))
    if not random:
        warn_untrained(patched, args.output)
    if directory:
        from hotpatch.pretrained import save_pretrained

        path = save_pretrained(patched, args.output, source=target.source, random_weights=random)
    else:
        path = save(patched, args.output, source=target.source)
    before = sum(p.numel() for p in target.model.parameters())
    after = sum(p.numel() for p in patched.parameters())
    out.print(f"wrote {path}{'/' if directory else ''}: {describe(target)} patched with HoT "
              f"{describe_config(patched.hotpatch_config)}; params {before:,} -> {after:,}",
              highlight=False, markup=False, soft_wrap=True)
    return 0

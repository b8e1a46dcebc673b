"""How long ``hotpatch.apply`` takes, in forwards of the model it patches.

For each recipe at its paper size, in one process: the median of ``--repeats`` batch-1
forwards of the original model (after one warm-up), then ``hotpatch.apply`` with the recipe's
paper settings, timed ``--applies`` times. The first apply of a process also pays one-time
costs (e.g. importing torch's fake-tensor machinery); it is reported separately from the
median of the later ones. The ratio apply / forward is what the table is for.

    python benchmarks/apply_time.py [--models mixste motionbert-full denoiser] [--threads 2] [--repeats 3] [--applies 2]
    python benchmarks/apply_time.py --vpt tests/models/diffusion_style_vpts.py:HypothesisVPT \
        --kwargs '{"num_frame": 243, "dim": 512, "depth": 8, "heads": 8}' --input 1,243,17,2 --n 3 --f 81

``--vpt FILE:Class`` times any model of your own (built with ``--kwargs``) instead of the recipes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from hotpatch.models import get  # noqa: E402

MODELS = {  # name -> (recipe, build overrides)
    "mixste": ("mixste", {}),
    "motionbert-full": ("motionbert", {"variant": "full"}),
    "motionbert-lite": ("motionbert", {"variant": "lite"}),
    "mhformer": ("mhformer", {}),
}
_SETTINGS = ("n", "f", "pipeline", "prune", "recover", "prune_pos_embed")


def recipe_case(name: str) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """A recipe at its paper size, a batch-1 clip and its paper settings."""
    recipe, overrides = MODELS[name]
    module = get(recipe)
    torch.manual_seed(0)
    model = module.build(**overrides).eval()
    d = module.DEFAULTS
    x = torch.randn(1, d["frames"], d["joints"], d["channels"])
    return model, x, {k: d[k] for k in _SETTINGS if k in d}


def vpt_case(spec: str, kwargs: str, shape: str, n: int, f: int) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """``FILE.py:Class`` built with the JSON ``kwargs``, a clip of ``shape`` and (n, f)."""
    path, _, cls = spec.rpartition(":")
    sys.path.insert(0, str(Path(path).resolve().parent))  # the file's siblings (test VPTs import each other)
    loaded = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    torch.manual_seed(0)
    model = getattr(module, cls)(**json.loads(kwargs)).eval()
    return model, torch.randn(*(int(s) for s in shape.split(","))), {"n": n, "f": f, "example_input": None}


def denoiser_case() -> tuple[torch.nn.Module, tuple, dict]:
    """The test denoiser at MixSTE size with its three inputs, as a diffusion sampler calls it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "models"))
    from denoiser_vpts import DiffusionDenoiser, denoiser_inputs

    torch.manual_seed(0)
    model = DiffusionDenoiser(frames=243, dim=512, depth=8).eval()
    return model, denoiser_inputs(batch=1, frames=243), {"n": 3, "f": 81, "example_input": None}


def measure(model: torch.nn.Module, x, settings: dict, repeats: int, applies: int) -> dict[str, float]:
    """Median forward time and apply times; ``x`` is one clip or a tuple of several inputs."""
    if "example_input" in settings:
        settings = {**settings, "example_input": x}
    args = x if isinstance(x, tuple) else (x,)
    times = []
    with torch.no_grad():
        model(*args)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(*args)
            times.append(time.perf_counter() - start)
    forward = statistics.median(times)
    apply_times = []
    for _ in range(applies):
        start = time.perf_counter()
        hotpatch.apply(model, **settings)
        apply_times.append(time.perf_counter() - start)
    first, later = apply_times[0], statistics.median(apply_times[1:]) if applies > 1 else float("nan")
    return {"forward": forward, "first": first, "later": later}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mixste", "motionbert-full"], choices=sorted([*MODELS, "denoiser"]))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="forwards timed per model (median)")
    parser.add_argument("--applies", type=int, default=2, help="applies timed per model (first, median of the rest)")
    parser.add_argument("--vpt", help="FILE.py:Class, a model of your own instead of the recipes")
    parser.add_argument("--kwargs", default="{}", help="JSON keyword arguments of --vpt's class")
    parser.add_argument("--input", default="1,243,17,2", help="the clip --vpt is patched with (B=1)")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--f", type=int, default=81)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, paper sizes and settings")
    header = f"{'model':<16} {'forward s':>9} {'apply s (1st)':>13} {'ratio':>6} {'apply s (later)':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    cases = [(args.vpt.rpartition(":")[2], lambda: vpt_case(args.vpt, args.kwargs, args.input, args.n, args.f))] if args.vpt \
        else [(name, denoiser_case if name == "denoiser" else lambda name=name: recipe_case(name)) for name in args.models]
    for name, case in cases:
        r = measure(*case(), args.repeats, args.applies)
        print(
            f"{name:<16} {r['forward']:>9.2f} {r['first']:>13.2f} {r['first'] / r['forward']:>6.2f} "
            f"{r['later']:>15.2f} {r['later'] / r['forward']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

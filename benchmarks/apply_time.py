"""How long ``hotpatch.apply`` takes, in forwards of the model it patches.

For each recipe at its paper size (and ``denoiser``, the several-input diffusion denoiser of
``tests/models/denoiser_vpts.py`` at MixSTE/D3DP size: 243 frames, 8 spatial + 8 temporal
blocks of width 512, inputs ``(x_2d, y_noisy, t)``), in one process: the median of ``--repeats`` batch-1
forwards of the original model (after one warm-up), then ``hotpatch.apply`` with the recipe's
paper settings, timed ``--applies`` times. The first apply of a process also pays one-time
costs (e.g. importing torch's fake-tensor machinery); it is reported separately from the
median of the later ones. The ratio apply / forward is what the table is for.

    python benchmarks/apply_time.py [--models mixste motionbert-full denoiser] [--threads 2] [--repeats 3] [--applies 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from hotpatch.recipes import get  # noqa: E402

MODELS = {  # name -> (recipe, build overrides)
    "mixste": ("mixste", {}),
    "motionbert-full": ("motionbert", {"variant": "full"}),
    "motionbert-lite": ("motionbert", {"variant": "lite"}),
    "mhformer": ("mhformer", {}),
    "denoiser": (None, {}),  # not a recipe: see _denoiser
}
_SETTINGS = ("n", "f", "pipeline", "prune", "recover", "prune_pos_embed")


def _recipe(name: str):
    recipe, overrides = MODELS[name]
    module = get(recipe)
    torch.manual_seed(0)
    model = module.build(**overrides).eval()
    d = module.DEFAULTS
    x = torch.randn(1, d["frames"], d["joints"], d["channels"])
    return model, (x,), {k: d[k] for k in _SETTINGS if k in d}


def _denoiser():
    """The test denoiser at MixSTE size, called as a diffusion sampler calls it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "models"))
    from denoiser_vpts import DiffusionDenoiser, denoiser_inputs

    torch.manual_seed(0)
    model = DiffusionDenoiser(frames=243, dim=512, depth=8).eval()
    return model, denoiser_inputs(batch=1, frames=243), {"n": 3, "f": 81}


def measure(name: str, repeats: int, applies: int) -> dict[str, float]:
    model, x, settings = _denoiser() if name == "denoiser" else _recipe(name)
    example = x if name == "denoiser" else None  # the recipes' input shape is inferred, as users call apply
    times = []
    with torch.no_grad():
        model(*x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(*x)
            times.append(time.perf_counter() - start)
    forward = statistics.median(times)
    apply_times = []
    for _ in range(applies):
        start = time.perf_counter()
        hotpatch.apply(model, example_input=example, **settings)
        apply_times.append(time.perf_counter() - start)
    first, later = apply_times[0], statistics.median(apply_times[1:]) if applies > 1 else float("nan")
    return {"forward": forward, "first": first, "later": later}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mixste", "motionbert-full"], choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="forwards timed per model (median)")
    parser.add_argument("--applies", type=int, default=2, help="applies timed per model (first, median of the rest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, paper sizes and settings")
    header = f"{'model':<16} {'forward s':>9} {'apply s (1st)':>13} {'ratio':>6} {'apply s (later)':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        r = measure(name, args.repeats, args.applies)
        print(
            f"{name:<16} {r['forward']:>9.2f} {r['first']:>13.2f} {r['first'] / r['forward']:>6.2f} "
            f"{r['later']:>15.2f} {r['later'] / r['forward']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

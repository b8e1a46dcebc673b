"""An official-layout checkpoint without TRA weights, lifted with HoT: the new default (linear
recovery) against the zero-initialised TRA, both measured against the unpatched model's lift.

1. ``hotpatch train`` a small MixSTE briefly on the shared mocap clips (``--data``; not in the repo);
2. write its weights in MixSTE's official layout (``{"model_pos": {"module." + key: ...}}``: a
   checkpoint with no TRA weights, like the released MixSTE ones);
3. ``hotpatch lift --checkpoint ... --n --f --compare`` on a real detector file (the front dancer of
   ``tests/data/detectors/alphapose_halpe26_multi.json``, plus a projected test clip of the mocap),
   once with the default and once with ``--recover tra``; ``--compare`` reports the mean per-joint
   distance to the unpatched model's lift.

    python benchmarks/tra_default.py --data ../shared/data/bandai_h36m17.npz [--steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hotpatch.atomic import atomic_write, write_npz  # noqa: E402
from hotpatch.data import project_to_pixels, virtual_camera, world_to_camera  # noqa: E402

MODEL = ["mixste", "--frames", "27", "--set", "dim=64", "--set", "depth=4", "--set", "num_heads=4"]
HOT = ["--n", "1", "--f", "9"]
DANCER = ROOT / "tests" / "data" / "detectors" / "alphapose_halpe26_multi.json"


def hotpatch(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hotpatch", "--quiet", *argv], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"hotpatch {argv[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def mocap_clip(data: Path, folder: Path) -> Path:
    """A test-split (style 'normal') clip of the mocap, projected to a 1000x1000 virtual camera: (T, 17, 3) pixels+score."""
    z = np.load(data)
    names, offsets = z["clip_names"], z["clip_offsets"]
    s = next(i for i, n in enumerate(names) if "_normal_" in str(n) and offsets[i + 1] - offsets[i] >= 120)
    world = z["positions"][offsets[s]:offsets[s + 1]].astype(np.float64)
    cam = virtual_camera(world[0, 0], 30.0, 5.0, 1.2, size=1000)
    px = project_to_pixels(world_to_camera(world, cam), cam)
    path = folder / "mocap_clip.npz"
    write_npz(path, keypoints=np.concatenate([px, np.full(px.shape[:2] + (1,), 0.9)], -1), width=1000, height=1000)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the shared mocap clips (bandai_h36m17.npz)")
    ap.add_argument("--steps", type=int, default=300, help="training steps (one epoch)")
    ap.add_argument("--out", help="folder for the checkpoint and the lifts (default: a temp folder)")
    args = ap.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="tra_default_"))
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base.pt"
    if not base.exists():
        hotpatch("train", *MODEL, "--data", args.data, "--epochs", "1", "--steps-per-epoch", str(args.steps),
                 "--batch", "32", "--lr", "1e-3", "--val-clips", "0", "-o", str(base))
    payload = torch.load(base, map_location="cpu", weights_only=True)
    weights = payload.get("state_dict") or payload.get("model") or payload
    official = folder / "mixste_official.bin"
    with atomic_write(official) as tmp:
        torch.save({"model_pos": {f"module.{k}": v for k, v in weights.items() if isinstance(v, torch.Tensor)}}, tmp)
    rows = []
    for name, src, extra in (("AlphaPose front dancer (real, 10 frames)", DANCER, ["--size", "720x1280"]),
                             ("mocap test clip, projected", mocap_clip(Path(args.data), folder), [])):
        for label, recover in (("new default (linear recovery)", []), ("zero-initialised TRA", ["--recover", "tra"])):
            out = folder / f"{src.stem}_{'tra' if recover else 'default'}.npz"
            hotpatch("lift", *MODEL, "--checkpoint", str(official), *HOT, *recover, str(src), *extra, "--compare",
                     "-o", str(out))
            s = json.loads(str(np.load(out)["summary"]))
            rows.append((name, label, s["config"]["recover"], s["mean_joint_difference_mm"], s["poses"]["stature_mm"],
                         len(s["warnings"])))
    print(f"checkpoint: {official} (MixSTE F=27 dim=64 depth=4 trained {args.steps} steps on {args.data}; official "
          "key layout, no TRA weights); HoT n=1 f=9")
    print("| clip | HoT recovery | recover used | distance to the original's lift (mm) | stature (mm) | warnings |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.1f} | {row[4]:.0f} | {row[5]} |")


if __name__ == "__main__":
    main()

"""How many kernels one TPC selection launches: eager ATen ops vs ``torch.compile`` (inductor).

Eager mode launches one kernel per ATen op that computes something (views, reshapes and
other metadata ops launch none); a compiled TPC fuses them. On a CPU the inductor count
(``torch._inductor.metrics.generated_kernel_count``) is the number of C++ kernels it
generates; on CUDA the same count is Triton kernels, one launch each per call.

    python benchmarks/tpc_kernels.py [--frames 243] [--keep 81] [--dim 512] [--batch 1]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpatch.prune import TPC  # noqa: E402

VIEWS = {"view", "_unsafe_view", "transpose", "expand", "unsqueeze", "diagonal", "slice", "select", "permute",
         "alias", "t", "squeeze", "detach", "as_strided"}


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=243)
    ap.add_argument("--keep", type=int, default=81)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    x = torch.randn(args.batch, args.frames, args.dim, device=args.device)
    tpc = TPC(args.keep)
    with _Ops() as mode, torch.no_grad():
        eager = tpc.select(x)
    compute = {k: v for k, v in mode.ops.items() if k not in VIEWS}
    from torch._inductor import metrics

    torch._dynamo.reset()
    metrics.reset()
    compiled = torch.compile(tpc.select, fullgraph=True)
    with torch.no_grad():
        got = compiled(x)
    assert torch.equal(got, eager), "the compiled TPC selects other frames"
    print(f"TPC(keep={args.keep}) on ({args.batch}, {args.frames}, {args.dim}) {args.device}, torch {torch.__version__}")
    print(f"  eager: {sum(mode.ops.values())} ATen calls, {sum(compute.values())} that compute (kernel launches)")
    print(f"  torch.compile (inductor, fullgraph): {metrics.generated_kernel_count} generated kernels; same frames")
    print("  eager compute ops:", ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(compute.items())))


if __name__ == "__main__":
    main()

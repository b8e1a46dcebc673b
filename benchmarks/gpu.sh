#!/usr/bin/env bash
# GPU latency of original vs HoT-patched models (eager, torch.compile, CUDA graphs, onnxruntime CUDA),
# for a CUDA machine lent for a few minutes. Run from anywhere, unchanged:
#
#     bash benchmarks/gpu.sh                   # BUDGET=420 s of measuring (about 8-9 min in all)
#     BUDGET=240 bash benchmarks/gpu.sh        # a shorter lease
#     bash benchmarks/gpu.sh --dry-run         # the plan and what is available, nothing run
#     bash benchmarks/gpu.sh --device cpu --quick --out /tmp/gpu.md   # test the script without a GPU
#
# Writes benchmarks/results/gpu-<GPU name>.md (and .json beside it), rewritten after every measurement,
# so a run cut off by the lease still leaves what it measured. Extra arguments go to benchmarks/gpu.py.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUDGET="${BUDGET:-420}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

want_cuda=1
for arg in "$@"; do
    case "$arg" in
        cpu|--device=cpu|--dry-run) want_cuda=0 ;;
    esac
done

echo "== gpu.sh: $(date '+%Y-%m-%d %H:%M:%S'), budget ${BUDGET}s, python: $(command -v "$PY")"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader || true
elif [ "$want_cuda" = 1 ]; then
    echo "gpu.sh: nvidia-smi not found; checking torch.cuda anyway" >&2
fi

# What the run needs, said plainly before any model is built.
"$PY" - "$want_cuda" <<'EOF'
import importlib, sys
missing = [m for m in ("torch", "numpy", "einops", "fvcore", "thop", "rich") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: missing Python packages: {', '.join(missing)} (pip install them, or set PYTHON=...)")
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda})" if torch.cuda.is_available() else ""))
try:
    import onnxruntime as ort
    print(f"onnxruntime {ort.__version__}, providers: {', '.join(ort.get_available_providers())}")
except ImportError:
    print("onnxruntime not installed: the ort-cuda mode is skipped")
if sys.argv[1] == "1" and not torch.cuda.is_available():
    sys.exit("gpu.sh: no CUDA device visible to torch; on a CPU-only machine pass --device cpu --quick to test")
import hotpatch  # noqa: F401  (the repository's package, through PYTHONPATH)
EOF

# the measuring itself stops at BUDGET; the hard limit leaves time for start-up and writing
exec timeout --kill-after=30 "$((BUDGET + 180))" "$PY" benchmarks/gpu.py --budget "$BUDGET" "$@"

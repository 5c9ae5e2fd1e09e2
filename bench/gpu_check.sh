#!/usr/bin/env bash
# NvmlProbe on a machine with an NVIDIA GPU and no network, in under 2 minutes.
#
# Prepare (on a machine with network), from the repository root:
#   pip install --target vendor nvidia-ml-py psutil wrapt structlog pytest exceptiongroup tomli
# (exceptiongroup and tomli are what pytest needs on Python 3.10; psutil's wheel is abi3,
# wrapt falls back to pure Python where its compiled part does not fit the Python there).
# Run (there): bash bench/gpu_check.sh   (PYTHON=... picks the interpreter; default python3)
# Everything printed is also written to $OUT/gpu_check.txt ($OUT defaults to ./gpu-check-out).
set -u
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT/vendor:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm)"
  echo "== python3 --version"
  "$PY" --version || echo "no $PY here: nothing below can run"
  [ -d "$ROOT/vendor" ] || echo "NOTE: no vendor/ folder: the packages must be installed already"

  echo
  echo "== nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    timeout 10 nvidia-smi || echo "nvidia-smi failed ($?)"
    timeout 10 nvidia-smi --query-gpu=index,name,memory.total,memory.used,power.draw,temperature.gpu,utilization.gpu --format=csv || true
    timeout 10 nvidia-smi --query-compute-apps=pid,used_memory --format=csv || true
  else
    echo "nvidia-smi: not installed"
  fi

  echo
  echo "== pytest tests/test_probes_nvml.py"
  # addopts emptied: no --doctest-modules over the package, no coverage plugin
  timeout 60 "$PY" -m pytest -q tests/test_probes_nvml.py -p no:cacheprovider -o addopts= \
    -ra --strict-markers || echo "pytest ended with status $?"

  echo
  timeout 45 "$PY" bench/gpu_check.py || echo "bench/gpu_check.py ended with status $?"
} 2>&1 | tee "$OUT/gpu_check.txt"

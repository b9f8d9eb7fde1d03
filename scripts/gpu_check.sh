#!/usr/bin/env bash
# The GPU check of spanlift-nb, in one go, with every figure in ONE JSON file.
#
#   bash scripts/gpu_check.sh [--dry-run] [--out FILE] [--budget SECONDS] [--phases env,nbdev,ddp,bench]
#
# Phases (each in its own process, with a time limit; the JSON is rewritten after each one):
#   env    versions, the GPU, and which of the package's dependencies are importable
#   nbdev  `nbdev-test --flags cuda` on every notebook in nbs/ that has a `#| cuda` cell: pass/fail and time
#   ddp    2 processes under torchrun match 1 process: tests/ddp_worker.py on CPU (gloo, exact), and a U-Net run with both
#          ranks on cuda:0 (gloo: NCCL needs one GPU per rank; bf16 autocast, so compared against how far training moved)
#   bench  a DDPM-CIFAR-10-sized U-Net (36,988,803 parameters, 3x32x32, random weights): teacher pairs/s, training it/s at
#          NFE 3 (SpanLift beside the learned-scalar solver), sampling images/s at NFE 3 (SpanLift beside Euler)
#
# The JSON goes to --out FILE, else $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json.
# --dry-run: the same code on the CPU with tiny sizes (CI runs it: tests/test_gpu_check.py). Exit status 0 when all passed.
# The whole run is held to --budget seconds (default 420, i.e. 7 minutes on one H100).
#
# Nothing is fetched from the network. If fastcore/fastprogress/nbdev are missing (the GPU image lacks them), wheels in
# ./.whl are installed into /tmp/site first, as /work/.library/device/README.md describes.
set -uo pipefail
cd "$(dirname "$0")/.."

out="" dry="" args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --dry-run) dry=1; args+=("$1"); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$out" ]; then
  if [ -n "${OUT:-}" ]; then out="$OUT/gpu_check.json"; else out="$PWD/gpu_check.json"; fi
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"      # the package from this tree, installed or not
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1
# torchrun's gloo processes talk over loopback (a VM's hostname may not resolve to a usable interface)
if [ -z "${GLOO_SOCKET_IFNAME:-}" ] && [ -e /sys/class/net/lo ]; then export GLOO_SOCKET_IFNAME=lo; fi

if [ -z "$dry" ] && ! "$PY" -c "import fastcore, fastprogress, nbdev, execnb, torchdiffeq, safetensors" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "== installing the carried wheels from .whl/ into /tmp/site (no network)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/site" PATH="/tmp/site/bin:$PATH"
  else
    echo "== warning: fastcore/fastprogress/nbdev/execnb are not importable and there is no .whl/ folder: phases will fail" >&2
  fi
fi

echo "== $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])'), JSON -> $out"
exec "$PY" scripts/gpu_bench.py all --out "$out" ${args[@]+"${args[@]}"}

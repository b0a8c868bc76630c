#!/usr/bin/env bash
# The GPU check, prepared for one H100/H200 (about 8 minutes, most of it training):
#   bench/gpu_check.sh [--dry-run] [--wheelhouse DIR] [--data scifact|FOLDER] [--output FILE]
#
# 1. installs the project with the `gpu` extra (faiss-gpu-cu12) on the CUDA torch already there
#    (the CUDA image, or `pip install torch==2.13.0` from PyPI, which is a CUDA build), after
#    removing faiss-cpu: exactly one FAISS build; --wheelhouse DIR installs offline from DIR;
# 2. runs python -m bench.gpu_check: SciFact encoded in fp16, dense mining on faiss-gpu, the full
#    profile's STAR and ADORE for 300 steps each with fp16 autocast, then an evaluation; writes
#    bench/results/gpu.json.
# --dry-run skips the install and runs the same steps on CPU at toy size (tests/test_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0 wheelhouse="" args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; args+=("$1"); shift ;;
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --data|--output) args+=("$1" "$2"); shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [[ $dry_run -eq 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; assert torch.cuda.is_available(), 'CUDA torch is needed'"
  pip_args=(--quiet)
  [[ -n "$wheelhouse" ]] && pip_args+=(--no-index --find-links "$wheelhouse")
  python -m pip uninstall --yes --quiet faiss-cpu || true
  python -m pip install "${pip_args[@]}" -e ".[gpu]"
  export HARDNEG_DATA_DIRS="${HARDNEG_DATA_DIRS:-../shared/data/beir}"
fi
exec python -m bench.gpu_check "${args[@]}"

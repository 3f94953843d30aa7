#!/usr/bin/env bash
# The one command for the lent GPU machine (device tool: command `bash benchmarks/device/run.sh`,
# carry [".device"]); fill .device first with `benchmarks/device/prepare.py`. Installs the carried
# wheels, points Funnel at the carried MiniLM, then runs benchmarks/gpu_session.py (extra arguments
# go to it). Everything lands in $OUT: results.tar.gz, cross-encoder.tar.N, gpu_session.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/wheels/*.whl \
  || { echo "wheel install failed" >&2; exit 1; }
[ -f .device/scifact/corpus.jsonl.gz ] && gunzip -f .device/scifact/corpus.jsonl.gz
export PYTHONPATH=/tmp/site:$PWD FUNNEL_MINILM=$PWD/.device/minilm HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | head -2
python3 benchmarks/gpu_session.py --data .device/scifact --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_session.log"

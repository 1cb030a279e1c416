#!/usr/bin/env bash
# GPU checks on a bare CUDA machine: one that has Python >= 3.11 with torch, transformers, peft and accelerate (and
# numpy, pandas, pyarrow, sympy, pytest) but no package registry. The other pure-Python wheels travel with the checkout:
#   scripts/gpu_check.sh fetch     here, with PyPI: downloads them into .whl/ (ignored by git)
#   scripts/gpu_check.sh           there, from the checkout: installs .whl/*.whl into /tmp/site (nothing else is
#                                  touched), runs the GPU tests (tests/gpu, marker gpu) and the memory probe
#                                  (tests/gpu/probe.py), and prints peak CUDA memory against distill.plan's estimate
#                                  and training tokens/s.
# bitsandbytes (QLoRA) and vllm (colocated GRPO) are binary and large: their tests run where they are installed and
# are skipped otherwise. Outputs: $OUT/gpu_check.jsonl and $OUT/gpu_check.log when $OUT is set (else /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
OUT_DIR=${OUT:-/tmp}
# Pure-Python packages the entry points and tests import beyond the machine's own, at constraints-cuda.txt's
# versions (dill and multiprocess as datasets 5.2 resolved them).
PURE=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2
    math-verify==0.9.0 latex2sympy2_extended==1.11.0 pebble==5.2.3)

if [ "${1:-}" = fetch ]; then
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
    # multiprocess ships one wheel per Python version: fetch the target's (PY_VERSION, default 3.12).
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "${PURE[@]}"
    ls "$WHEELS"
    exit 0
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export GPU_CHECK_REPORT="$OUT_DIR/gpu_check.jsonl"
: >"$GPU_CHECK_REPORT"
{
    nvidia-smi -L || true
    "$PY" -c 'import torch, transformers, peft, trl; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "| transformers", transformers.__version__, "| peft", peft.__version__, "| trl", trl.__version__,
    "| device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NONE")'
    "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider -rs
    "$PY" tests/gpu/probe.py
} 2>&1 | tee "$OUT_DIR/gpu_check.log"

"$PY" - "$GPU_CHECK_REPORT" <<'EOF'
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("\n| run | peak reserved | plan (without CUDA context) | plan / peak | training tokens/s |")
print("| --- | ---: | ---: | ---: | ---: |")
for r in rows:
    peak = (r.get("peak_reserved") or 0) / 1024**3
    plan = r["planned_gib"] - r["planned_runtime_gib"]
    ratio = f"{plan / peak:.2f}" if peak else "-"
    speed = f"{r['tokens'] / r['seconds']:,.0f}" if r.get("tokens") and r.get("seconds") else "-"
    print(f"| {r['run']} | {peak:.2f} GiB | {plan:.2f} GiB | {ratio} | {speed} |")
EOF

#!/usr/bin/env bash
# GPU checks on a bare CUDA machine: one that has Python >= 3.11 with torch, transformers, peft and accelerate (and
# numpy, pandas, pyarrow, sympy, pytest) but no package registry. The other pure-Python wheels travel with the checkout:
#   scripts/gpu_check.sh fetch     here, with PyPI: downloads them into .whl/ (ignored by git)
#   scripts/gpu_check.sh           there, from the checkout: installs .whl/*.whl into /tmp/site (nothing else is
#                                  touched), runs the GPU tests (tests/gpu, marker gpu) and the memory probe
#                                  (tests/gpu/probe.py), and prints peak CUDA memory against distill.plan's estimate
#                                  and training tokens/s; with 2+ GPUs also distill.sft on 2 processes (accelerate,
#                                  NCCL) and grpo.train in server mode (vLLM's server on GPU 1, the trainer on GPU 0).
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

# With 2+ GPUs: distill.sft on 2 processes (accelerate launch, recipes/accelerate/ddp.yaml, NCCL), and grpo.train in
# server mode -- vLLM's server (`trl vllm-serve`) on GPU 1, the trainer on GPU 0 -- on a tiny random model
# (tests/gpu/builders.py). Each prints PASS or FAIL with its log and the rest go on; fewer GPUs: a line saying why.
two_gpus() {
    local gpus work port log server common
    gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
    if [ "${gpus:-0}" -lt 2 ]; then
        echo "2-GPU checks: skipped, ${gpus:-0} GPU(s) here (accelerate SFT on 2 GPUs and GRPO server mode need 2)"
        return 0
    fi
    work=$(mktemp -d "$OUT_DIR/gpu_check_2gpu.XXXX")
    "$PY" -c 'import sys; from pathlib import Path; sys.path.insert(0, "tests/gpu")
from builders import save_dataset, save_model
save_model(Path(sys.argv[1]) / "model", "llama", "bfloat16"); save_dataset(Path(sys.argv[1]) / "data")' "$work"
    common=(recipe=smollm2 "model.name=$work/model" model.dtype=bfloat16 "output_dir=$work/out")
    log="$work/sft.log"
    if "$PY" -m accelerate.commands.launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 \
        --main_process_port 0 -m distill.sft "${common[@]}" "sft.dataset=$work/data" sft.max_steps=3 \
        sft.per_device_train_batch_size=2 sft.merge=false sft.save_steps=1000 >"$log" 2>&1; then
        echo "PASS 2-GPU accelerate SFT (2 processes, NCCL): $(tail -n 1 "$work/out/sft/model-lora/metrics.jsonl")"
    else
        echo "FAIL 2-GPU accelerate SFT: $(tail -n 1 "$log") (log $log)"
    fi
    if ! "$PY" -c 'import vllm' 2>/dev/null; then
        echo "GRPO server mode: skipped, vllm is not installed here"
        return 0
    fi
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log="$work/grpo.log"
    CUDA_VISIBLE_DEVICES=1 "$PY" -m trl.scripts.vllm_serve --model "$work/model" --port "$port" \
        --gpu_memory_utilization 0.3 --max_model_len 512 >"$work/vllm-serve.log" 2>&1 &
    server=$!
    until "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$port/health" 2>/dev/null; do
        kill -0 "$server" 2>/dev/null || { echo "FAIL GRPO server mode: vllm-serve exited (log $work/vllm-serve.log)"; return 0; }
        sleep 5
    done
    if CUDA_VISIBLE_DEVICES=0 "$PY" -m grpo.train "${common[@]}" grpo.use_vllm=true grpo.vllm_mode=server \
        "grpo.vllm_server_base_url=http://127.0.0.1:$port" grpo.prompts.synthetic_levels=[1] \
        grpo.prompts.synthetic_per_level=8 grpo.num_generations=4 grpo.per_device_train_batch_size=8 \
        grpo.max_completion_length=16 grpo.overlong_cache=8 grpo.max_steps=2 grpo.save_steps=1000 \
        grpo.verify.workers=1 >"$log" 2>&1; then
        echo "PASS GRPO server mode (server GPU 1, trainer GPU 0): $(grep -m1 -o '[0-9]* steps' "$log" || tail -n 1 "$log")"
    else
        echo "FAIL GRPO server mode: $(tail -n 1 "$log") (log $log)"
    fi
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}

{
    nvidia-smi -L || true
    "$PY" -c 'import torch, transformers, peft, trl; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "| transformers", transformers.__version__, "| peft", peft.__version__, "| trl", trl.__version__,
    "| device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NONE")'
    "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider -rs
    "$PY" tests/gpu/probe.py
    two_gpus
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

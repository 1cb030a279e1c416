#!/usr/bin/env bash
# Scale-out on one machine, end to end, on the embedded SmolLM2-135M at small sizes (a few minutes on 2 CPU cores):
#   1. the teacher on two of vLLM's own servers (python -m distill.serve --replicas 2: `vllm serve`'s module form);
#   2. distill.generate samples through them (generate.engine.kind=openai, least-loaded dispatch), then they stop;
#   3. distill.sft on two processes: accelerate launch with recipes/accelerate/ddp.yaml (NCCL on GPUs, gloo here).
# It ends with the figures: requests each server answered (its access log) and SFT tokens/s in all and per rank.
#
#   runs/scale_out.sh [key=value ...]      the overrides reach all three stages, e.g. generate.sampling.n=2
#   PORT=8100 PROCESSES=2 OUT_DIR=outputs/scale_out PYTHON=.venv/bin/python   (the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT_DIR:-outputs/scale_out}
PORT=${PORT:-8100}
PROCESSES=${PROCESSES:-2}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SETTINGS=(recipe=smollm2 "output_dir=$OUT" generate.prompts.synthetic_per_level=4 generate.sampling.n=4
    generate.sampling.max_tokens=128 generate.dataset_name=scale-out sft.max_steps=8 sft.per_device_train_batch_size=2
    sft.save_steps=100 sft.merge=false sft.run_name=scale-out "$@")
mkdir -p "$OUT/logs"

echo "== 1. two teacher servers (python -m distill.serve --replicas 2 --port $PORT)"
"$PY" -m distill.serve "${SETTINGS[@]}" --replicas 2 --port "$PORT" 2>"$OUT/logs/serve.stderr" &
SERVE=$!
trap 'kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true' EXIT
until grep -q '^next:' "$OUT/logs/serve.stderr"; do
    kill -0 "$SERVE" 2>/dev/null || { cat "$OUT/logs/serve.stderr"; exit 1; }
    sleep 2
done
grep '^distill.serve:' "$OUT/logs/serve.stderr"
URLS=$(sed -n 's/^next: .*generate\.engine\.urls=\[\(.*\)\]$/\1/p' "$OUT/logs/serve.stderr")

echo "== 2. distill.generate through them"
start=$(date +%s)
"$PY" -m distill.generate "${SETTINGS[@]}" generate.engine.kind=openai "generate.engine.urls=[$URLS]"
generate_s=$(($(date +%s) - start))
kill "$SERVE"
wait "$SERVE" || true
trap - EXIT

echo "== 3. distill.sft on $PROCESSES processes (accelerate launch, recipes/accelerate/ddp.yaml)"
start=$(date +%s)
"$PY" -m accelerate.commands.launch --config_file recipes/accelerate/ddp.yaml --num_processes "$PROCESSES" \
    --main_process_port 0 --num_cpu_threads_per_process $(($(nproc) / PROCESSES > 0 ? $(nproc) / PROCESSES : 1)) \
    -m distill.sft "${SETTINGS[@]}" sft.dataset="$OUT/datasets/scale-out"
sft_s=$(($(date +%s) - start))

echo "== figures"
for port in "$PORT" $((PORT + 1)); do
    echo "server :$port answered $(grep -c 'POST /v1/chat/completions' "$OUT/logs/vllm-serve-$port.log") requests"
done
"$PY" - "$OUT" "$PROCESSES" "$generate_s" "$sft_s" <<'EOF'
import json
import statistics
import sys
from pathlib import Path

out, processes, generate_s, sft_s = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lines = [json.loads(line) for line in (out / "sft" / "scale-out" / "metrics.jsonl").read_text().splitlines()]
# tokens_per_s is summed over the processes (TRL's num_tokens); the first step carries the warm-up.
speed = statistics.median(m["tokens_per_s"] for m in lines[1:] or lines)
print(f"generate: {generate_s} s; sft: {sft_s} s for {lines[-1]['step']} steps on {processes} processes, "
      f"loss {lines[0]['loss']:.3f} -> {lines[-1]['loss']:.3f}")
print(f"sft tokens/s (median over steps 2+): {speed:.0f} in all, {speed / processes:.0f} per rank")
EOF

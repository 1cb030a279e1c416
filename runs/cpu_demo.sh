#!/usr/bin/env bash
# The whole pipeline on the embedded SmolLM2-135M-Instruct, offline, on 2 CPU cores in about half an hour: the teacher
# samples and the verifiers keep the correct answers (distill.generate), the student is distilled on them
# (distill.sft), GRPO trains the same student on the same prompts with the FLOPs distillation spent (grpo.train),
# distillation is followed by GRPO, and every arm is evaluated on held-out problems (distill.eval).
#
#   runs/cpu_demo.sh [key=value ...]      e.g. compare.grpo_max_steps=30     (make demo: runs/demo.sh, a smaller budget)
#
# Report: outputs/smollm2/compare/smollm2/report/table.md (with plots and compare.json). Run it again after a crash:
# finished stages are skipped, unfinished ones resume from their own checkpoints and journals.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && .venv/bin/python -c "import trl, vllm" 2>/dev/null || bash scripts/setup.sh
exec .venv/bin/python -m grpo.compare recipe=smollm2 "$@"

#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded SmolLM2-135M-Instruct, offline, on a small budget (about 15 minutes
# on 2 CPU cores after setup): the teacher samples and the verifiers keep the correct answers (distill.generate), the
# student is distilled on them (distill.sft), GRPO trains the same student with the compute distillation spent
# (grpo.train), distillation is followed by GRPO, every arm is evaluated on held-out problems (distill.eval), and
# grpo.compare prints the Table 6 comparison with where its report and plots are.
#
#   runs/demo.sh [key=value ...]       the same stages at runs/cpu_demo.sh's larger budget: runs/cpu_demo.sh
#
# A small budget answers nothing about RL against distillation (a handful of problems, a few steps): it shows every
# stage working end to end. The model teaches itself here (no RL-made teacher, no on-policy arm: runs/cpu_demo.sh
# runs R1's order). Run it again after a crash: finished stages are skipped, unfinished ones resume.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m grpo.compare recipe=smollm2 compare.run_name=demo \
  compare.teacher_from=given compare.arms=[base,distill,rl,distill_rl] compare.sweep=[] \
  compare.min_detectable=null compare.context_problems=null \
  generate.prompts.synthetic_per_level=4 \
  sft.max_steps=12 \
  compare.grpo_max_steps=4 \
  eval.prompts.synthetic_per_level=4 \
  eval.sampling.n=2 \
  "$@"

"""`python -m grpo.compare [recipe=NAME] [key=value ...]`: distillation against RL on one student (the paper's Table 6).

The arms, on the same student, the same prompts and the same evaluation:

    base        (a) the student as is
    distill     (b) SFT on the teacher's rejection-sampled dataset (distill.generate, then distill.sft)
    rl          (c) GRPO on the student with the prompts the teacher was given (grpo.train target=student)
    distill_rl  (d) distillation, then GRPO from the distilled adapter
    kd          (e) on-policy distillation (distill.kd): the student samples, the teacher scores every token
    okd         (f) offline KD: SFT on (b)'s dataset with the KD loss on the teacher's top-k log-probs, kept by the
                    same teacher pass (generate.teacher_logprobs; sft.kd_weight=compare.offline_kd_weight)

With compare.teacher_from=rl (R1's order, what the CPU recipe does: no stronger model ships offline), the teacher is
made first -- R1-Zero GRPO on model.name (grpo.train grpo.target=teacher) -- and arms (b), (d) and (e) learn from it
while (c) trains the untouched student; the teacher's evaluation and its RL cost stand beside the arms as row (t).

With compare.match_budget, GRPO's steps are chosen by its FLOPs: each GRPO run stops once it has spent what
distillation spent, the teacher's generation included (grpo.max_flops; grpo.max_steps, or compare.grpo_max_steps,
caps it). With compare.min_detectable (points of pass@1), every evaluation is sized by that question: one sample per
problem and as many held-out problems as a paired comparison needs to resolve that gap 80% of the time.

The package, one concern a module:
    distill.compare_table  the stage and arm tables (pure data: distill.plan plans from them too)
    stages                 each stage's resolved settings, written as the YAML recipe the stage loads
    run                    the stage processes, the ledger (stages.json), the rows of the report; main()
    accounting             what each arm spent (tokens, FLOPs, wall time) and the evaluation's size
    analysis               paired statistics and the budget sweep's leaders: pure functions of the rows
    report                 report/: table.md like Table 6, accuracy-vs-compute and GRPO length plots, compare.json;
                           with eval.budgets, accuracy against the thinking budget per arm (table and plot)
"""

from grpo.compare.run import main

__all__ = ["main"]

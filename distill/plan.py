"""`python -m distill.plan recipe=NAME [stage=generate|sft|grpo|kd|eval|compare] [prompt_tokens=N] [key=value ...]`.

Checks a recipe from the models' config.json alone -- no weights, no GPU, in about a second -- on the hardware the
recipe declares (its `hardware:` section; `hardware.gpu_memory_gib=24` and the like try another machine):

- contexts: max_model_len within the model's context (RoPE scaling included), prompt + max_tokens within
  max_model_len, SFT max_length against the dataset's (or the teacher's) lengths, GRPO completions against what
  the SFT it starts from trained on;
- arithmetic: GRPO's generation batch divisible by G, the batch the recipe's comment states;
- adapters on their own base; the installed TRL / vLLM / transformers inside each other's declared ranges;
  bitsandbytes for QLoRA; the long-CoT conventions of open-r1 and TRL on GPUs;
- memory per device, part by part (distill.planning.memory says what each part holds).

Prints a table (stage, part, GiB, fits) and its notes on stdout; exits 2 with one line per problem on stderr, each
ending in the keys to change. Every stage but kd is checked unless `stage=` names some (comma-separated; kd is
also planned within compare when compare.arms has it). The prompt
budget is 1,024 tokens (R1's prompt around the longest MATH problems); `prompt_tokens=` changes it.
"""

from __future__ import annotations

import sys

from distill.config import HardwareSection
from distill.errors import ConfigError, UserError, first_line
from distill.planning import DEFAULT_STAGES, STAGES, check_before_load, hardware_of, plan
from distill.planning.parts import PROMPT_TOKENS, SYNTHETIC_PROMPT_TOKENS, PlanError, StagePlan
from distill.recipes import available_recipes, load_config

PROG = "distill.plan"
SUMMARY = "Check a recipe's contexts, batch arithmetic, versions and memory per device before loading any model."
OWN_KEYS = ("stage", "prompt_tokens")


def help_text() -> str:
    hardware = HardwareSection()
    lines = [
        f"usage: python -m {PROG} [recipe=NAME] [stage={'|'.join(STAGES)}] [prompt_tokens=N] [key=value ...]",
        "",
        SUMMARY,
        "",
        f"recipes: {', '.join(available_recipes())}",
        f"stages: {', '.join(STAGES)} (default: all but kd, which is planned when named or in compare.arms)",
        f"prompt_tokens: the prompt budget in tokens (default {SYNTHETIC_PROMPT_TOKENS} for synthetic prompts only, else "
        f"{PROMPT_TOKENS})",
        "hardware keys (default), set in the recipe's `hardware:` section or on the command line:",
        *(f"  hardware.{k}={v!r}" for k, v in vars(hardware).items()),
        "other keys: those of every stage (python -m distill.sft --help, python -m grpo.train --help, ...)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[list[str], tuple[str, ...], int | None, frozenset[str]]:
    """(config argv, stages, prompt budget, overridden keys); ConfigError (one line) on bad input."""
    rest, stages, prompt = [], DEFAULT_STAGES, None
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key == "stage" and sep:
            stages = tuple(s.strip() for s in value.split(",") if s.strip())
            bad = [s for s in stages if s not in STAGES] or ([] if stages else [value])
            if bad:
                raise ConfigError(f"unknown stage '{bad[0]}'; expected one of {', '.join(STAGES)}")
        elif key == "prompt_tokens" and sep:
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"key 'prompt_tokens' expects a positive int, got {value!r}")
            prompt = int(value)
        else:
            rest.append(arg)
    overridden = frozenset(a.partition("=")[0] for a in rest if not a.startswith("recipe="))
    return rest, stages, prompt, overridden


def format_table(plans: list[StagePlan]) -> str:
    rows = [r for p in plans for r in p.rows]
    width = max([len("part"), *(len(r.part) for r in rows)])
    stage_width = max([len("stage"), *(len(r.stage) for r in rows)])
    lines = [f"{'stage':<{stage_width}}  {'part':<{width}}  {'GiB':>8}  fits"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r.stage:<{stage_width}}  {r.part:<{width}}  {r.gib:>8.2f}  {r.fits}".rstrip())
    return "\n".join(lines)


def describe(hardware: HardwareSection) -> str:
    count = f"{hardware.nodes} x {hardware.gpus_per_node}" if hardware.nodes > 1 else f"{hardware.gpus_per_node}"
    if not hardware.cuda:
        return f"cpu ({hardware.gpu_memory_gib:g} GiB)"
    return f"{count} x {hardware.gpu} ({hardware.gpu_memory_gib:g} GiB each)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    try:
        config_argv, stages, prompt, overridden = parse_args(argv)
        cfg = load_config(config_argv, resolved=False)  # auto as the declared hardware resolves it
        hardware = hardware_of(cfg)
        plans = plan(cfg, stages, prompt_tokens=prompt, overridden=overridden)
    except UserError as e:  # a config key, or a model (folder, adapter) that cannot be read
        print(f"{PROG}: error: {first_line(e)}", file=sys.stderr)
        return 2
    budget = f"prompt budget {prompt:,} tokens" if prompt else "prompt budget by prompt set"
    print(f"{cfg.recipe} on {describe(hardware)}; {budget}")
    print(format_table(plans))
    notes = [n for p in plans for n in p.notes]
    if notes:
        print("\nnotes:")
        print("\n".join(f"  {n}" for n in dict.fromkeys(notes)))
    problems = list(dict.fromkeys(line for p in plans for line in p.problems))
    for line in problems:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    if problems:
        print(f"{PROG}: {len(problems)} problem(s) in recipe {cfg.recipe}", file=sys.stderr)
        return 2
    print(f"{PROG}: recipe {cfg.recipe} passes: {', '.join(stages)}")
    return 0


# For entry points: `from distill.plan import check_before_load` (it lives in distill.planning).
__all__ = ["PlanError", "check_before_load", "main"]

if __name__ == "__main__":
    raise SystemExit(main())

"""What a recipe's values must mean, checked when the config is parsed -- before any data or model loads.

`check_config(cfg)` raises ConfigError naming the key and what it expects. load_config calls it, so every entry
point, the every-recipe test and `distill.plan` judge the same rules, and a typo fails in a second rather than after
a model load. (Checks that need the machine -- bitsandbytes for qlora, the model's context -- are distill.plan's.)
"""

from __future__ import annotations

from pathlib import Path

from distill.compare_table import ARMS, LAUNCHERS, TEACHER_FROM
from distill.config import Config, teacher_name
from distill.engines import ENGINES
from distill.errors import ConfigError
from distill.precision import DTYPES
from distill.trackers import check_names as check_trackers
from distill.training.trainee import METHODS

# The choices below have no module of ours below this one to own them: TRL's GRPOConfig reads loss_type and
# scale_rewards. The comparison's arms come from its table (distill.compare_table, pure data).
TARGETS = ("teacher", "student")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
DYNAMIC_SAMPLING_METRICS = ("accuracy", "reward")
# hardware.sharding: the accelerate configs in recipes/accelerate/ (zero3.yaml, fsdp.yaml) and plain DDP; the planner
# (distill.planning, a layer above this one) models each.
SHARDING = ("zero3", "fsdp", "ddp")


def _one_of(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"key '{key}' expects one of {', '.join(map(str, allowed))}, got {value!r}")


def _at_least(key: str, value: float | None, low: float, strict: bool = False) -> None:
    if value is not None and (value <= low if strict else value < low):
        raise ConfigError(f"key '{key}' must be {'>' if strict else '>='} {low:g}, got {value}")


def _levels(key: str, levels: list[int]) -> None:
    from distill.tasks import LEVELS

    bad = [level for level in levels if level not in LEVELS]
    if bad or not levels:
        raise ConfigError(f"key '{key}' expects levels among {sorted(LEVELS)}, got {levels}")


def _resume(key: str, value: str) -> None:
    if value not in ("auto", "never") and not Path(value).is_dir():
        raise ConfigError(f"key '{key}' expects auto, never or a checkpoint folder, got {value!r}")


def _verify(prefix: str, verify) -> None:
    _at_least(f"{prefix}.timeout", verify.timeout, 0, strict=True)
    _at_least(f"{prefix}.workers", verify.workers, 1)


def _prompts(prefix: str, source) -> None:
    if not source.sets:
        raise ConfigError(f"key '{prefix}.sets' is empty; name at least one prompt set")
    _levels(f"{prefix}.synthetic_levels", source.synthetic_levels)
    _at_least(f"{prefix}.synthetic_per_level", source.synthetic_per_level, 1)
    _at_least(f"{prefix}.limit", source.limit, 1)


def _sampling(keys: tuple[str, str, str, str], n: int | None, temperature: float, top_p: float,
              max_tokens: int | None) -> None:  # fmt: skip
    """keys: the names of (samples, temperature, top_p, new tokens) in this section."""
    _at_least(keys[0], n, 1)
    _at_least(keys[1], temperature, 0)
    if not 0 < top_p <= 1:
        raise ConfigError(f"key '{keys[2]}' must be in (0, 1], got {top_p}")
    _at_least(keys[3], max_tokens, 1)


def check_generate(cfg: Config) -> None:
    from distill.dataset_writer import KEEP_POLICIES  # here: the writer imports the filters and prompt readers

    gen = cfg.generate
    _one_of("generate.keep", gen.keep, KEEP_POLICIES)
    _one_of("generate.engine.kind", gen.engine.kind, ENGINES)
    if gen.engine.kind == "openai" and gen.sampling.prefill_think:
        raise ConfigError(
            "key 'generate.sampling.prefill_think' needs engine.kind=vllm: a server applies its own chat template "
            "(R1 servers open the think block themselves, and their separate reasoning is put back in <think>)"
        )
    s = gen.sampling
    names = tuple(f"generate.sampling.{k}" for k in ("n", "temperature", "top_p", "max_tokens"))
    _sampling(names, s.n, s.temperature, s.top_p, s.max_tokens)
    _at_least("generate.chunk_size", gen.chunk_size, 1)
    _at_least("generate.max_per_prompt", gen.max_per_prompt, 1)
    _at_least("generate.shard_rows", gen.shard_rows, 1)
    _prompts("generate.prompts", gen.prompts)
    _verify("generate.verify", gen.verify)
    if s.n is None or s.max_tokens is None:
        raise ConfigError("keys 'generate.sampling.n' and 'generate.sampling.max_tokens' need a number")
    if gen.teacher_logprobs is not None and gen.teacher_logprobs < 0:
        raise ConfigError(f"key 'generate.teacher_logprobs' expects k >= 1 (or 0 for off), got {gen.teacher_logprobs}")


def check_sft(cfg: Config) -> None:
    sft = cfg.sft
    _one_of("sft.method", sft.method, METHODS)
    _one_of("sft.long_rows", sft.long_rows, ("drop", "truncate"))
    if sft.padding_free and not sft.packing and sft.max_length is not None and sft.long_rows == "truncate":
        # Unpacked padding-free rows are never cut to max_length (TRL refuses, but only after loading the model).
        raise ConfigError(
            "sft.padding_free=true with sft.long_rows=truncate needs sft.packing=true (BFD packing cuts and keeps "
            "examples apart), sft.padding_free=false, or sft.long_rows=drop"
        )
    _resume("sft.resume", sft.resume)
    _at_least("sft.max_length", sft.max_length, 1)
    _at_least("sft.per_device_train_batch_size", sft.per_device_train_batch_size, 1)
    _at_least("sft.learning_rate", sft.learning_rate, 0, strict=True)
    if not 0 <= sft.kd_weight <= 1:
        raise ConfigError(f"key 'sft.kd_weight' expects 0 (cross-entropy only) to 1 (KD only), got {sft.kd_weight}")
    if sft.kd_weight > 0 and sft.packing:
        # TRL's packing keeps input_ids and labels only: the stored top-k would not follow the packed tokens.
        raise ConfigError("sft.kd_weight > 0 needs sft.packing=false (sft.padding_free=true packs without cutting)")


def check_grpo(cfg: Config) -> None:
    from distill.training.prompts import TEMPLATES
    from distill.verifiers.registry import SHAPING

    g = cfg.grpo
    for key, value, allowed in (
        ("method", g.method, METHODS),
        ("target", g.target, TARGETS),
        ("template", g.template, ("auto", *TEMPLATES)),  # auto: by target (grpo.prompts.template_name)
        ("loss_type", g.loss_type, LOSS_TYPES),
        ("scale_rewards", g.scale_rewards, SCALE_REWARDS),
        ("vllm_mode", g.vllm_mode, ("colocate", "server")),
    ):
        _one_of(f"grpo.{key}", value, allowed)
    components = ("accuracy", *SHAPING, "length_target")  # grpo.rewards.COMPONENTS (grpo is a layer above)
    for name in g.reward_weights:
        _one_of(f"grpo.reward_weights.{name}", name, components)
    _length_target(g)
    if g.target == "teacher" and g.init_from:
        raise ConfigError("grpo.init_from is for target=student; the teacher (R1-Zero) starts from model.name")
    if g.num_generations < 2:
        raise ConfigError("key 'grpo.num_generations' must be >= 2: advantages compare completions within a group")
    if g.overlong_cache is not None and not 0 < g.overlong_cache <= g.max_completion_length:
        raise ConfigError(
            f"key 'grpo.overlong_cache' must be in 1..max_completion_length ({g.max_completion_length}), "
            f"got {g.overlong_cache}"
        )
    _resume("grpo.resume", g.resume)
    _at_least("grpo.dynamic_sampling_max_rounds", g.dynamic_sampling_max_rounds, 0)
    if g.dynamic_sampling_metric not in DYNAMIC_SAMPLING_METRICS:
        raise ConfigError(
            f"key 'grpo.dynamic_sampling_metric' must be one of {list(DYNAMIC_SAMPLING_METRICS)}, "
            f"got {g.dynamic_sampling_metric!r}"
        )
    if g.init_from and not (Path(g.init_from).is_dir() or "/" in g.init_from):
        raise ConfigError(f"grpo.init_from={g.init_from}: not a folder or hub id")
    names = ("grpo.num_generations", "grpo.temperature", "grpo.top_p", "grpo.max_completion_length")
    _sampling(names, g.num_generations, g.temperature, g.top_p, g.max_completion_length)
    _prompts("grpo.prompts", g.prompts)
    _verify("grpo.verify", g.verify)


def _length_target(g) -> None:
    """grpo.length_target against grpo.reward_weights.length_target: on needs a range of reachable targets."""
    lt, weight = g.length_target, g.reward_weights.get("length_target")
    if weight is None:
        if lt.range:  # a range alone does nothing: say so rather than train without it
            raise ConfigError(
                "key 'grpo.length_target.range' is set but grpo.reward_weights.length_target is not: give it a weight "
                "(L1: 1), or 0 to leave the length target off"
            )
        return
    _at_least("grpo.reward_weights.length_target", weight, 0)
    if weight == 0:
        return
    if len(lt.range) != 2:
        raise ConfigError(
            f"grpo.reward_weights.length_target > 0 needs grpo.length_target.range=[min,max] (tokens; L1: [100,4000]), "
            f"got {lt.range}"
        )
    low, high = lt.range
    if not 1 <= low <= high:
        raise ConfigError(
            f"key 'grpo.length_target.range' expects [min,max] with 1 <= min <= max tokens, got {lt.range}"
        )
    if high > g.max_completion_length:
        raise ConfigError(
            f"key 'grpo.length_target.range' asks for up to {high} tokens, more than grpo.max_completion_length "
            f"({g.max_completion_length}) lets a completion reach"
        )
    _at_least("grpo.length_target.alpha", lt.alpha, 0, strict=True)
    try:
        ok = "{n}" in lt.instruction and lt.instruction.format(n=1) is not None
    except (KeyError, IndexError, ValueError):  # other braces: str.format would fail on the first prompt
        ok = False
    if not ok:
        raise ConfigError(
            "key 'grpo.length_target.instruction' must hold {n}, where the prompt's target goes, and no other "
            f"braces; got {lt.instruction!r}"
        )


def check_kd(cfg: Config) -> None:
    from distill.training.prompts import TEMPLATES

    kd = cfg.kd
    _one_of("kd.method", kd.method, METHODS)
    _one_of("kd.template", kd.template, TEMPLATES)
    if not 0 <= kd.beta <= 1:
        raise ConfigError(f"key 'kd.beta' expects 0 (forward KL) to 1 (reverse KL), got {kd.beta}")
    names = ("kd.per_device_train_batch_size", "kd.temperature", "kd.top_p", "kd.max_completion_length")
    _sampling(names, kd.per_device_train_batch_size, kd.temperature, kd.top_p, kd.max_completion_length)
    _at_least("kd.temperature", kd.temperature, 0, strict=True)  # the loss divides both distributions by it
    _at_least("kd.max_flops", kd.max_flops, 0, strict=True)
    _resume("kd.resume", kd.resume)
    for key, value in (("kd.init_from", kd.init_from), ("kd.teacher", kd.teacher)):
        if value and not (Path(value).is_dir() or "/" in value):
            raise ConfigError(f"{key}={value}: not a folder or hub id")
    _prompts("kd.prompts", kd.prompts)
    if kd.teacher_server.urls:
        _at_least("kd.teacher_server.top_k", kd.teacher_server.top_k, 1)
        _at_least("kd.teacher_server.concurrency", kd.teacher_server.concurrency, 1)


def check_eval(cfg: Config) -> None:
    ev = cfg.eval
    _one_of("eval.engine.kind", ev.engine.kind, ENGINES)
    if ev.budgets and ev.engine.kind != "vllm":
        raise ConfigError("key 'eval.budgets' needs eval.engine.kind=vllm (the forced answer continues raw text)")
    for budget in ev.budgets:
        _at_least("eval.budgets", budget, 1)
    _at_least("eval.budget_answer_tokens", ev.budget_answer_tokens, 1)
    if ev.engine.kind == "openai" and ev.sampling.prefill_think:
        raise ConfigError(
            "key 'eval.sampling.prefill_think' needs eval.engine.kind=vllm (a server applies its own template)"
        )
    sets = ev.prompts.sets
    if len(set(sets)) != len(sets):
        raise ConfigError(f"key 'eval.prompts.sets' names a benchmark twice: {sets}")
    s = ev.sampling
    names = tuple(f"eval.sampling.{k}" for k in ("n", "temperature", "top_p", "max_tokens"))
    _sampling(names, s.n, s.temperature, s.top_p, s.max_tokens)
    _at_least("eval.bootstrap", ev.bootstrap, 0)
    _prompts("eval.prompts", ev.prompts)
    _verify("eval.verify", ev.verify)
    if ev.models and ev.run_name:
        raise ConfigError("keys 'eval.models' and 'eval.run_name' exclude each other: name each model as NAME=MODEL")


def same_model(a: str, b: str) -> bool:
    """Two model names that name one model: equal, or folders that resolve to one."""
    return a == b or (Path(a).is_dir() and Path(b).is_dir() and Path(a).resolve() == Path(b).resolve())


def check_compare(cfg: Config) -> None:
    arms = cfg.compare.arms
    if not arms or any(a not in ARMS for a in arms):
        raise ConfigError(f"key 'compare.arms' expects some of {', '.join(ARMS)}, got {arms}")
    _at_least("compare.grpo_max_steps", cfg.compare.grpo_max_steps, 1)
    _at_least("compare.teacher_max_steps", cfg.compare.teacher_max_steps, 1)
    _at_least("compare.kd_max_steps", cfg.compare.kd_max_steps, 1)
    _one_of("compare.teacher_from", cfg.compare.teacher_from, TEACHER_FROM)
    if cfg.compare.min_detectable is not None and not 0 < cfg.compare.min_detectable <= 100:
        raise ConfigError(
            f"key 'compare.min_detectable' expects points of pass@1 in (0, 100], got {cfg.compare.min_detectable}"
        )
    _at_least("compare.planning_sd", cfg.compare.planning_sd, 0, strict=True)
    _at_least("compare.context_problems", cfg.compare.context_problems, 1)
    if "kd" in arms and cfg.compare.teacher_from == "given" and same_model(teacher_name(cfg), cfg.model.name):
        raise ConfigError(
            "key 'compare.arms' has kd but the teacher is the student itself (generate.teacher): on-policy "
            "distillation from itself starts at zero divergence and learns nothing; set generate.teacher, or "
            "compare.teacher_from=rl (R1's order), or leave kd out"
        )
    if not 0 < cfg.compare.offline_kd_weight <= 1:
        raise ConfigError(
            "key 'compare.offline_kd_weight' expects the okd arm's KD share of its loss in (0, 1] (0 would be arm b), "
            f"got {cfg.compare.offline_kd_weight}"
        )
    _at_least("compare.bootstrap", cfg.compare.bootstrap, 100)
    seeds = cfg.compare.seeds
    if seeds and (len(seeds) < 2 or len(set(seeds)) != len(seeds)):
        raise ConfigError(
            f"key 'compare.seeds' expects two or more distinct training seeds (one run: seed=N), got {seeds}"
        )
    _one_of("compare.launcher", cfg.compare.launcher, LAUNCHERS)
    _at_least("compare.num_processes", cfg.compare.num_processes, 1)
    _at_least("compare.teacher_servers", cfg.compare.teacher_servers, 0)
    if cfg.compare.teacher_servers and cfg.compare.teacher_urls:
        raise ConfigError("keys 'compare.teacher_servers' and 'compare.teacher_urls' exclude each other: start "
                          "servers, or name running ones")  # fmt: skip
    if not 0.5 < cfg.compare.confidence < 1:
        raise ConfigError(f"key 'compare.confidence' expects a level between 0.5 and 1, got {cfg.compare.confidence}")


def _fractions(key: str, values: list[float]) -> None:
    if any(not 0 < v < 1 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"key '{key}' expects distinct fractions between 0 and 1 (exclusive), got {values}")


def check_config(cfg: Config) -> None:
    """Every section's values against what they must mean; raises ConfigError naming the first bad key."""
    _one_of("model.dtype", cfg.model.dtype, DTYPES)
    for key in ("sft", "grpo", "kd"):
        _one_of(f"{key}.quant.compute_dtype", getattr(cfg, key).quant.compute_dtype, DTYPES)
    check_generate(cfg)
    check_sft(cfg)
    check_grpo(cfg)
    check_kd(cfg)
    check_eval(cfg)
    check_compare(cfg)
    for key in ("sft", "grpo", "kd"):
        _fractions(f"{key}.save_fractions", getattr(cfg, key).save_fractions)
    _fractions("compare.sweep", cfg.compare.sweep)
    check_trackers(cfg)
    _one_of("hardware.sharding", cfg.hardware.sharding, SHARDING)
    _at_least("hardware.gpu_memory_gib", cfg.hardware.gpu_memory_gib, 0, strict=True)

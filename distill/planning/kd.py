"""On-policy distillation's plan (distill.kd; grpo.compare's arm (e)): the student trains on its own samples while the
teacher scores every token, so both models are on the device, and they must share a vocabulary.

Memory per device: the student's training parts (as SFT's and GRPO's, distill.planning.memory), the teacher's
weights (no gradients, no optimizer states) and its logits over the batch (float32) unless it is served
(kd.teacher_server: its FLOPs are still the run's, distill.compute.kd_compute), and -- where the student samples
through vLLM colocated (kd.use_vllm) -- the engine's share of the device.
"""

from __future__ import annotations

from distill.config import Config, teacher_name
from distill.planning.memory import training_parts
from distill.planning.parts import Row, StagePlan, device_bytes, processes_for
from distill.planning.shapes import adapter_base
from distill.planning.stages import Ctx, add_total, common_training, dtype_bytes, gib, problem, read_shape, train_setup


def kd_teacher(cfg: Config) -> str:
    """The teacher distill.kd loads: kd.teacher, else generate.teacher, else model.name (distill.kd.teacher_of)."""
    return cfg.kd.teacher or teacher_name(cfg)


def plan_kd(ctx: Ctx, sp: StagePlan, kd=None, teacher: str | None = None) -> None:
    """distill.kd with section `kd` (default the recipe's) and `teacher` (default kd_teacher: a comparison's teacher
    may not exist yet; its base model stands for it)."""
    cfg, kd = ctx.cfg, kd or ctx.cfg.kd
    student_name = (adapter_base(kd.init_from) or kd.init_from) if kd.init_from else cfg.model.name
    student = read_shape(sp, student_name)
    teacher_model = teacher or kd_teacher(cfg)
    teacher_shape = read_shape(sp, teacher_model)
    if teacher_shape.vocab != student.vocab:
        sp.problems.append(
            problem(
                f"{sp.stage}: the teacher {teacher_model} has a vocabulary of {teacher_shape.vocab:,} tokens and the "
                f"student {student_name} {student.vocab:,}: on-policy distillation compares their next-token "
                "distributions token by token and needs one vocabulary",
                "kd.teacher",
                "model.name",
            )
        )
    processes = processes_for(ctx.hw, "kd")
    common_training(ctx, sp, kd, "kd", processes)
    sequence = ctx.prompt(kd.prompts.sets) + kd.max_completion_length
    for who, shape in (("student", student), ("teacher", teacher_shape)):
        if sequence > shape.context:
            ctx.flag(
                sp,
                problem(
                    f"{sp.stage}: prompt + completion ({sequence:,}) above the {who} {shape.name}'s context "
                    f"({shape.context:,})",
                    "kd.max_completion_length",
                ),
            )
    setup = train_setup(ctx, kd, "kd", kd.per_device_train_batch_size, sequence)
    parts = training_parts(student, setup)
    for part in parts:
        sp.rows.append(Row(sp.stage, part.name, gib(part.bytes)))
    used = sum(p.bytes for p in parts)
    label = "peak per device (student + teacher)"
    if kd.teacher_server.urls:  # its weights and logits stay on its servers; the scores are k floats a token
        sp.rows.append(Row(sp.stage, "teacher: on its vLLM servers (kd.teacher_server.urls)", gib(0)))
        label = "peak per device (student; teacher served)"
    else:
        teacher_weights = teacher_shape.params * dtype_bytes(ctx)
        logits = kd.per_device_train_batch_size * sequence * teacher_shape.vocab * 4
        sp.rows.append(Row(sp.stage, "teacher: weights (no gradients)", gib(teacher_weights)))
        sp.rows.append(Row(sp.stage, "teacher: float32 logits of the batch", gib(logits)))
        used += teacher_weights + logits
    if kd.use_vllm is not False and ctx.hw.cuda:  # None: auto, vllm is installed with the CUDA setup
        engine = kd.vllm_gpu_memory_utilization * device_bytes(ctx.hw)
        sp.rows.append(Row(sp.stage, "vLLM colocated (kd.vllm_gpu_memory_utilization)", gib(engine)))
        used, label = used + engine, "peak per device (student + teacher + vLLM)"
    if ctx.check_memory:
        keys = ("kd.per_device_train_batch_size", "kd.max_completion_length", "kd.gradient_checkpointing", "kd.method")
        add_total(sp, sp.stage, label, used, device_bytes(ctx.hw), *keys)

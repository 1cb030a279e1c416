"""The processes of one multi-process launch (torchrun, `accelerate launch`): which one writes the run's files, how
they agree on a decision, and the one launch that looks like several processes but is not.

Every rank runs the same entry point on the same inputs. Files the run writes once (config.yaml, metrics.jsonl, the
card, plots, the merge) and lines the user reads once (the stage's first line, `next:`) belong to rank 0; a decision
that only rank 0 can take (its metric history drives the FLOP budget) is shared with an all-reduce, so that every
rank stops or saves at the same step -- a rank that went on alone would wait forever in its next collective.
"""

from __future__ import annotations

import os

from distill.errors import ConfigError


def is_main_process() -> bool:
    """Rank 0 of the launch, or a plain single-process run. Read from the environment torchrun (and accelerate's
    launchers) set before our code runs, so it holds before torch.distributed is initialized."""
    return os.environ.get("RANK", "0") == "0"


def agreed(flags: list[bool], device) -> list[bool]:
    """Each flag true on every rank when it is true on any rank (all-reduce MAX); as given without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or not flags:
        return list(flags)
    import torch

    tensor = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def check_launch() -> None:
    """Two launches that run but not as asked, refused in one line:

    - `accelerate launch --cpu --num_processes N` starts ONE process whatever N is (accelerate 1.15 runs its simple
      launcher for --cpu; huggingface/accelerate#2741): it would train alone with another global batch than asked
      for. Its mark: the launcher set MASTER_ADDR and ACCELERATE_USE_CPU for N > 1 but no rank exists.
    - FSDP (recipes/accelerate/fsdp.yaml) without CUDA: accelerate 1.15 turns FSDP on only for GPU-like process
      groups (AcceleratorState), so on CPUs each process would hold and train the whole model as plain data
      parallel -- none of the memory FSDP was asked for. torch's own fully_shard does train over gloo.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "FSDP through accelerate needs CUDA GPUs: on CPUs accelerate 1.15 leaves the model unsharded (plain "
                "data parallel); drop --config_file recipes/accelerate/fsdp.yaml and use --multi_gpu --num_processes N"
            )
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cpu and "MASTER_ADDR" in os.environ and "RANK" not in os.environ and "LOCAL_RANK" not in os.environ:
        raise ConfigError(
            "accelerate launch --cpu starts one process whatever --num_processes says; for several processes on "
            "CPUs use `accelerate launch --multi_gpu --num_processes N` (torchrun; the processes join over gloo)"
        )

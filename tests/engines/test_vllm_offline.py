import os

from distill.engines import vllm_offline


def test_cpu_defaults_shorten_the_engine_shutdown_and_keep_user_values(monkeypatch):
    for key in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    vllm_offline._cpu_defaults()
    # vLLM-CPU's worker ignores its shutdown request: every close waited vLLM's 5 s grace before the kill.
    assert os.environ["VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS"] == "1"
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == f"0-{(os.cpu_count() or 1) - 1}"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"  # the user's own value wins

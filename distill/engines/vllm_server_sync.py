"""GRPO against a vLLM server (grpo.vllm_mode=server) where TRL's weight sync cannot run: no CUDA.

TRL 1.16's server mode pushes the trained weights into the server over vLLM's NCCL weight-transfer engine, and
VLLMClient.init_communicator refuses any device but CUDA. Here the trainer instead writes the weights TRL would
stream (the same iterator: LoRA merged into the base, names as vLLM's checkpoint loader expects) as safetensors into
a folder the server can read, and asks the server to reload them in place: POST /collective_rpc with vLLM's worker
method `reload_weights(weights_path=...)`, a development endpoint the server has with VLLM_SERVER_DEV_MODE=1 (which
TRL's own server mode needs as well). It is the reload the colocated CPU engine uses (distill.engines.vllm_colocate):
it puts back the checkpoint layout that vLLM's CPU kernels repacked, loads, and repacks. Where the trainer is on CUDA
and the server has a weight-transfer engine, TRL's NCCL path runs unchanged.

Why not a LoRA adapter loaded through /v1/load_lora_adapter (--enable-lora): TRL asks for completions under the
served model's name (the base, first in /v1/models) and syncs merged weights for every method (LoRA, QLoRA, full).
The reload keeps TRL's generation untouched and serves full training too, in one path; the adapter would be about a
hundredth of the bytes to write. What the full weights cost here: README, "GRPO with a served vLLM".
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from trl.generation.vllm_client import VLLMClient

# Weights are written in shards of this size, so that safetensors' serialization (a copy) never holds more than one
# shard (a 7B model is never in memory twice); vLLM loads every *.safetensors file of the folder.
SHARD_BYTES = 1 << 30
# A line on stderr at the first sync and every this many: the sync's cost, as figures.
REPORT_EVERY = 10


class FolderSyncClient(VLLMClient):
    """TRL's VLLMClient, syncing through a folder (see the module's docstring) unless NCCL can run.

    sync_dir: the folder both sides see (None: a new one in /dev/shm, in memory, removed at exit -- for a server on
    this machine). sync_seconds: (write, reload) seconds of each sync, for the figures (the time TRL's iterator takes to
    gather and merge comes on top: TRL's sync_weights phase has the whole)."""

    sync_dir: str | None = None

    def init_communicator(self, device=0) -> None:
        import torch

        self.folder: Path | None = None
        self.sync_seconds: list[tuple[float, float]] = []
        self._syncs = 0
        info = self.get_server_info()  # a clear error when the server lacks VLLM_SERVER_DEV_MODE=1
        on_cuda = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if on_cuda.type == "cuda" and info.get("weight_transfer_config") is not None:
            return super().init_communicator(device)
        self.folder = _sync_folder(self.sync_dir)
        print(f"grpo: weights reach the vLLM server at {self.base_url} through {self.folder} (vLLM's in-place "
              f"reload; NCCL needs CUDA on the trainer)", file=sys.stderr)  # fmt: skip

    def update_named_params(self, metadata, named_params: Iterator) -> None:
        if getattr(self, "folder", None) is None:
            return super().update_named_params(metadata, named_params)
        previous, self._syncs = self.folder / f"sync-{self._syncs}", self._syncs + 1
        shutil.rmtree(previous, ignore_errors=True)  # already loaded: keep one copy on disk
        target = self.folder / f"sync-{self._syncs}"
        try:  # the tensors as they are (no copy), before TRL unmerges the adapter once its iterator ends
            write = _write_shards(itertools.islice(named_params, len(metadata)), target)
        finally:
            for _ in named_params:
                pass
        reload = time.perf_counter()
        response = self.session.post(
            f"{self.base_url}/collective_rpc",
            json={"method": "reload_weights", "kwargs": {"weights_path": str(target)}},
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"the vLLM server at {self.base_url} could not reload the weights from {target} "
                f"({response.status_code}: {response.text[:300]}); it must see that folder: set grpo.vllm_sync_dir "
                "to a folder both machines share"
            )
        self.sync_seconds.append((write, time.perf_counter() - reload))
        if self._syncs == 1 or self._syncs % REPORT_EVERY == 0:
            write, reload = (sum(t) / len(self.sync_seconds) for t in zip(*self.sync_seconds, strict=True))
            print(f"grpo: weight sync {self._syncs}: write {write:.2f} s, reload {reload:.2f} s on average (TRL's "
                  "gathering and adapter merge come on top, as in every mode)", file=sys.stderr)  # fmt: skip

    # TRL's weight_update() brackets a sync with these; the reload needs neither.
    def _start_weight_update(self) -> None:
        if getattr(self, "folder", None) is None:
            super()._start_weight_update()

    def _finish_weight_update(self) -> None:
        if getattr(self, "folder", None) is None:
            super()._finish_weight_update()


def _sync_folder(sync_dir: str | None) -> Path:
    shm = Path("/dev/shm")
    parent = Path(sync_dir) if sync_dir is not None else shm if shm.is_dir() else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="grpo-vllm-sync-", dir=parent))  # a folder of its own: no stale shards
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _write_shards(named_params: Iterator, target: Path) -> float:
    """Every tensor into <target>/*.safetensors, a shard at a time; returns the seconds spent writing."""
    from safetensors.torch import save_file

    target.mkdir(parents=True)
    shard: dict = {}
    size = count = 0
    seconds = 0.0

    def save() -> None:
        nonlocal count, seconds, shard, size
        start, count = time.perf_counter(), count + 1
        save_file(shard, str(target / f"model-{count:05d}.safetensors"))
        seconds += time.perf_counter() - start
        shard, size = {}, 0

    for name, tensor in named_params:
        shard[name] = tensor.detach().to("cpu").contiguous()
        size += shard[name].numel() * shard[name].element_size()
        if size >= SHARD_BYTES:
            save()
    if shard:
        save()
    return seconds


def enable_folder_sync(sync_dir: str | None) -> None:
    """Make TRL's server mode build FolderSyncClient (idempotent); `sync_dir` as FolderSyncClient.sync_dir."""
    import trl.generation.vllm_generation as vg

    FolderSyncClient.sync_dir = sync_dir
    vg.VLLMClient = FolderSyncClient

"""The resume journal: one verified record per prompt, appended and fsynced as prompts finish."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict
from pathlib import Path

from distill.config import Config, teacher_name
from distill.errors import ConfigError


def read_journal(path: Path) -> dict[str, dict]:
    """Records by prompt id. A last line cut off by a kill is dropped (and cut from the file before appending)."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as f:
            f.truncate(len(complete))
    records = (json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip())
    return {r["id"]: r for r in records}


def append_journal(path: Path, records: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def run_fingerprint(cfg: Config, prompts: list[dict]) -> dict:
    """What must not change between a run and its resumption (else the journal would mix two experiments)."""
    gen = cfg.generate
    return {
        "teacher": teacher_name(cfg),
        "revision": cfg.model.revision,
        "sampling": asdict(gen.sampling),  # its seed resolved (distill.recipes.resolve)
        "dtype": cfg.model.dtype if gen.engine.kind == "vllm" else None,  # a server's own precision is its own
        # the stored top-k is part of each journaled sample: a rerun with another k would mix two kinds
        "teacher_logprobs": gen.teacher_logprobs or None,
        "prompt_ids_crc32": zlib.crc32("\n".join(p["id"] for p in prompts).encode()),
    }


def open_work_dir(work: Path, fingerprint: dict, other_name: str = "generate.dataset_name") -> None:
    """Stamp `work` with the run's fingerprint, or check the stamp already there; other_name: the key that picks
    another folder, named in the error."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "run.json"
    if stamp.exists():
        before = json.loads(stamp.read_text())
        changed = sorted(k for k in fingerprint if before.get(k) != fingerprint[k])
        if changed:
            raise ConfigError(
                f"{work} holds a run with different {', '.join(changed)}; resume with the same settings, "
                f"or choose another {other_name} (or delete the folder)"
            )
    else:
        stamp.write_text(json.dumps(fingerprint, indent=2) + "\n")

"""The SFT dataset: a folder written by distill.generate, a local chat file, or a hub dataset, as prompt/completion.

Every row becomes conversational prompt/completion: `prompt` = the messages before the last assistant turn,
`completion` = that assistant turn (reasoning included). TRL renders both with the chat template and computes the
loss on the completion tokens only (its completion-only loss), which works with every template -- unlike
`assistant_only_loss`, which needs `{% generation %}` markers that most templates (SmolLM2's, Qwen's) lack.
Only the last assistant turn of a multi-turn conversation is trained; earlier ones are context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.config import Config
from distill.data import DataError

FILE_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass
class DatasetSource:
    """Where the training rows came from, for the model card."""

    name: str  # as given (a path or a hub id)
    kind: str  # generate-folder | file | folder | hub
    data_card: str | None  # path (or URL) of the data card describing the rows, if there is one
    rows: int = 0


def default_dataset(cfg: Config) -> str:
    """The dataset this recipe's `python -m distill.generate` writes."""
    return str(Path(cfg.output_dir) / "datasets" / cfg.generate.dataset_name)


def _looks_local(name: str) -> bool:
    """A hub id is `owner/name`; anything else (absolute, relative with more parts, a file name) is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") != 1 or Path(name).suffix in FILE_FORMATS


def _generate_card(cfg: Config, folder: Path) -> str | None:
    """distill.generate writes <card_dir>/<name>.md and a copy as the folder's README.md."""
    for card in (Path(cfg.generate.card_dir) / f"{folder.name}.md", folder / "README.md"):
        if card.is_file():
            return str(card)
    return None


def _read(cfg: Config, name: str):
    from datasets import load_dataset, load_from_disk

    sft, path = cfg.sft, Path(name).expanduser()
    shards = sorted(str(p) for p in (path / "data").glob("*.parquet")) if path.is_dir() else []
    if shards:
        return load_dataset("parquet", data_files=shards, split="train"), "generate-folder", _generate_card(cfg, path)
    if path.is_file() and path.suffix in FILE_FORMATS:
        return load_dataset(FILE_FORMATS[path.suffix], data_files=str(path), split="train"), "file", None
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():  # Dataset.save_to_disk
            return load_from_disk(str(path)), "folder", None
        card = str(path / "README.md") if (path / "README.md").is_file() else None
        return load_dataset(str(path), sft.subset, split=sft.split), "folder", card
    if _looks_local(name):
        if sft.dataset is None:
            raise DataError(
                f"dataset {name} not found: run python -m distill.generate recipe={cfg.recipe or 'NAME'} first "
                "(or set sft.dataset to a generate folder, a .parquet/.jsonl file or a hub dataset id)"
            )
        raise DataError(f"sft.dataset {name} not found (expected a folder, a .parquet/.jsonl file or a hub id)")
    return load_dataset(name, sft.subset, split=sft.split), "hub", f"https://huggingface.co/datasets/{name}"


def from_sharegpt(row: dict) -> dict:
    """ShareGPT rows (`conversations` of from/value, roles human/gpt) as `messages` (TRL's helper keeps the roles)."""
    turns = row["conversations"]
    return {"messages": [{"role": SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]} for t in turns]}


def split_last_assistant(row: dict) -> dict:
    """messages -> prompt (everything before the last assistant turn) + completion (that turn)."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not messages[last]["content"]:
        roles = [m["role"] for m in messages]
        raise DataError(f"a row has no assistant turn with content to train on (roles: {roles})")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def load_sft_dataset(cfg: Config):
    """(prompt/completion Dataset, DatasetSource); raises DataError with one line when it cannot."""
    name = cfg.sft.dataset or default_dataset(cfg)
    try:
        dataset, kind, card = _read(cfg, name)
    except DataError:
        raise
    except Exception as e:  # datasets raises many kinds (missing split, no network, bad file): one line for the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot load sft.dataset {name}: {type(e).__name__}: {first}") from None
    columns = dataset.column_names
    if "messages" not in columns and "conversations" in columns:
        dataset = dataset.map(from_sharegpt, remove_columns=["conversations"])
        columns = dataset.column_names
    if cfg.sft.limit is not None:
        dataset = dataset.select(range(min(cfg.sft.limit, len(dataset))))
    if len(dataset) == 0:
        raise DataError(f"dataset {name} has no rows")
    if "messages" in columns:
        dataset = dataset.map(split_last_assistant, remove_columns=columns, desc="prompt/completion")
    elif {"prompt", "completion"} <= set(columns):
        dataset = dataset.select_columns(["prompt", "completion"])
    else:
        raise DataError(f"dataset {name} needs a `messages` column (or prompt/completion); it has {columns}")
    return dataset, DatasetSource(name=name, kind=kind, data_card=card, rows=len(dataset))

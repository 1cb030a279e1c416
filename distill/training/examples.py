"""The SFT dataset: a folder written by distill.generate, a local chat file, or a hub dataset, as prompt/completion.

Every row becomes conversational prompt/completion: `prompt` = the messages before the last assistant turn,
`completion` = that assistant turn (reasoning included). TRL renders both with the chat template and computes the
loss on the completion tokens only (its completion-only loss), which works with every template -- unlike
`assistant_only_loss`, which needs `{% generation %}` markers that most templates (SmolLM2's, Qwen's) lack.
Only the last assistant turn of a multi-turn conversation is trained; earlier ones are context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill.config import Config, card_dir
from distill.prompt_sets import DataError

FILE_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass
class DatasetSource:
    """Where the training rows came from, for the model card."""

    name: str  # as given (a path or a hub id)
    kind: str  # generate-folder | file | folder | hub
    data_card: str | None  # path (or URL) of the data card describing the rows, if there is one
    rows: int = 0
    dropped_long: int = 0  # rows left out as longer than sft.max_length (sft.long_rows=drop)


def default_dataset(cfg: Config) -> str:
    """The dataset this recipe's `python -m distill.generate` writes."""
    return str(Path(cfg.output_dir) / "datasets" / cfg.generate.dataset_name)


def _looks_local(name: str) -> bool:
    """A hub id is `owner/name`; anything else (absolute, relative with more parts, a file name) is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") != 1 or Path(name).suffix in FILE_FORMATS


def _generate_card(cfg: Config, folder: Path) -> str | None:
    """distill.generate writes <card_dir>/<name>.md and a copy as the folder's README.md."""
    for card in (card_dir(cfg) / f"{folder.name}.md", folder / "README.md"):
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
        if path.suffix == ".jsonl":
            _check_jsonl(path)
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


def _check_jsonl(path: Path) -> None:
    """Every line of a .jsonl file is a JSON object (datasets' own errors name no line); raises DataError."""
    count = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            count += 1
    if count == 0:
        raise DataError(f"{path} is empty: no rows to train on")


def check_messages(messages: object, where: str) -> None:
    """A `messages` value is a list of {role, content} objects with an assistant turn to train on."""
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise DataError(
            f"{where}: field 'messages': expected a list of {{role, content}} objects, got {messages!r:.80}"
        )
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        roles = [m["role"] for m in messages]
        raise DataError(f"{where}: no assistant turn with content to train on (roles: {roles})")


def _row_place(name: str, kind: str, index: int) -> str:
    return f"{name}:{index + 1}" if kind == "file" and name.endswith(".jsonl") else f"{name}: row {index}"


def from_sharegpt(row: dict) -> dict:
    """ShareGPT rows (`conversations` of from/value, roles human/gpt) as `messages` (TRL's helper keeps the roles)."""
    turns = row["conversations"]
    return {"messages": [{"role": SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]} for t in turns]}


def split_last_assistant(row: dict) -> dict:
    """messages -> prompt (everything before the last assistant turn) + completion (that turn)."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant" and m["content"])
    return {"prompt": messages[:last], "completion": [messages[last]]}


def drop_long_rows(dataset, tokenizer, max_length: int, chat_template: str | None = None):
    """(dataset, rows dropped): the rows whose prompt + completion, rendered with the training chat template, fit
    in max_length tokens. Cutting a long row instead keeps its start: the </think>, the answer and the end-of-turn
    token are lost, and the student learns not to stop (open-r1#492)."""

    def lengths(batch: dict) -> dict:
        texts = [
            tokenizer.apply_chat_template(p + c, tokenize=False, chat_template=chat_template)
            for p, c in zip(batch["prompt"], batch["completion"], strict=True)
        ]
        return {"_tokens": [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]}

    measured = dataset.map(lengths, batched=True, desc="token lengths")
    kept = measured.filter(lambda n: n <= max_length, input_columns="_tokens").remove_columns("_tokens")
    return kept, len(dataset) - len(kept)


def training_template(cfg: Config) -> str | None:
    """The chat template SFT trains with when sft.chat_template_path names one (a .jinja file or a tokenizer)."""
    path = cfg.sft.chat_template_path
    if path is None:
        return None
    if path.endswith(".jinja"):
        return Path(path).expanduser().read_text()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path).chat_template


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
    keep = []  # sft.kd_weight > 0: the teacher's ids and top-k travel with each row (distill.training.offline_kd)
    if cfg.sft.kd_weight > 0:
        from distill.training.offline_kd import KD_COLUMNS, check_kd_columns

        check_kd_columns(columns, name, cfg.sft.kd_weight)
        keep = list(KD_COLUMNS)
    if "messages" in columns:
        for index, messages in enumerate(dataset["messages"]):
            check_messages(messages, _row_place(name, kind, index))
        dropped = [c for c in columns if c not in keep]
        dataset = dataset.map(split_last_assistant, remove_columns=dropped, desc="prompt/completion")
    elif {"prompt", "completion"} <= set(columns):
        dataset = dataset.select_columns(["prompt", "completion", *keep])
    else:
        raise DataError(f"dataset {name} needs a `messages` column (or prompt/completion); it has {columns}")
    return dataset, DatasetSource(name=name, kind=kind, data_card=card, rows=len(dataset))

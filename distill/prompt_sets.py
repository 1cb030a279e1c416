"""Prompt sets for generation and evaluation, as prompt rows: built-in benchmarks, local files and hub datasets.

A prompt row is a dict: `id` (unique str), `problem` (the text shown to the model; the pipeline appends the R1
instruction), `task` ("math" or "code"), that task's reference fields (`answer`; or `tests` / `io`), `source` (the
set's name) and extras kept as they are (`level`, `subject`, `fallback_last_number`, ...).

`load_prompts(name)` takes
- a built-in name (BUILTIN_PROMPTS), read from the local data folder when its file is there, else from its hub
  alternative; the folder is `data_dir`, else `$DISTILL_DATA`, else `shared/data` beside the checkout;
- `synthetic`: distill.tasks' arithmetic tasks (seed 0; 8 per level, or `limit` rows spread over the levels);
- a local `.jsonl`, `.json` (JSON lines or one array) or `.parquet` file;
- a hub dataset id `owner/name` (`subset` = its config, `split`), through `datasets.load_dataset`.

`split`, `subset`, `fields` and `task` apply to files and hub ids only: built-ins follow their table, so one generate
config can mix both. Rows without a `task` get `task`, else the one their reference fields imply (`answer`: math;
`tests`/`io`: code); sets without any `id` column get positional ids `<source>-<index>`. Every row is checked before
it is returned, so bad rows stop a run before any sampling, with a one-line DataError naming the place and field.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distill import hub
from distill.errors import UserError
from distill.verifiers.registry import implied_task
from distill.verifiers.rows import RowError, check_reference, prompt_helpers, with_prompt_helpers

REPO_ROOT = Path(__file__).resolve().parents[1]
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
Located = list[tuple[str, dict]]  # (where the row came from, for messages; the row)
Transform = Callable[[dict, int], "dict | None"]  # (source row, its index) -> prompt row, or None to drop it


class DataError(UserError, ValueError):
    """A prompt set that cannot be loaded or holds a bad row; the message is one line meant for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(re.sub(r"\s*\n\s*", " ", message).strip())


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Per-row transforms of the built-in sets. They see rows after the table's field renaming; a KeyError names a
# missing source column.


def _math(row: dict, index: int) -> dict:
    """MATH-style rows keep everything; the hub's MATH-500 has its id only as `unique_id`."""
    return row if "id" in row or "unique_id" not in row else {"id": row["unique_id"], **row}


def _canonical_int(value: object) -> str:
    """`"025"`, `25` and `25.0` all become `"25"` (AIME/AMC answers are integers, stored in varying forms)."""
    text = str(value).strip()
    return str(int(text.split(".")[0])) if re.fullmatch(r"-?\d+(\.0*)?", text) else text


_CONTEST_URL = re.compile(r"(\d{4})_(AIME|AMC)(?:_(\w+?))?_Problems/Problem_(\d+)")


def _competition(row: dict, index: int) -> dict:
    """AIME/AMC: string ids kept; otherwise (hub sets number them) the id comes from the AoPS url: 2024-AIME-I-1."""
    ident = row.get("id", index)
    match = _CONTEST_URL.search(str(row.get("url") or ""))
    if not isinstance(ident, str) and match:
        ident = "-".join(part for part in match.groups() if part)
    return {**row, "id": ident, "answer": _canonical_int(row["answer"])}


def _amc23(row: dict, index: int) -> dict | None:
    """AMC23 is the 2023 half of the hub's AMC 2022-2023 validation set; every local row is from 2023."""
    return _competition(row, index) if "2023_AMC" in str(row.get("url") or "") else None


def _gsm8k(row: dict, index: int) -> dict:
    """The number after `####` in the rationale (the local file has it as `final`); plain-number fallback allowed."""
    rationale = row["answer"]
    if row.get("final") is None and "####" not in str(rationale):
        raise RowError("field 'answer': expected a rationale ending in '#### <number>'")
    final = row.get("final") or str(rationale).rsplit("####", 1)[1].strip().replace(",", "")
    return {
        "id": row.get("id", f"gsm8k-test-{index}"),
        "problem": row["problem"],
        "answer": str(final),
        "solution": rationale,
        "fallback_last_number": True,
        **({"source": row["source"]} if "source" in row else {}),
    }


def _humaneval(row: dict, index: int) -> dict:
    """The signature and docstring to complete; the tests call the file's `check` on the entry point.

    The prompt's own imports and helpers (HumanEval/32 `poly`, /38 `encode_cyclic`, ...) go into the tests too, so
    the tests use the prompt's helpers and never a program's redefinition of them.
    """
    prompt = row["prompt"] if row["prompt"].endswith("\n") else row["prompt"] + "\n"
    return {
        "id": row["task_id"],
        "problem": f"Complete the following Python function:\n```python\n{prompt}```",
        "tests": f"{prompt_helpers(prompt, row['entry_point'])}{row['test']}\ncheck({row['entry_point']})\n",
        "entry_point": row["entry_point"],
    }


def _mbpp(row: dict, index: int) -> dict:
    """The task text plus its asserts (they fix the function's name and signature, as in the MBPP paper)."""
    asserts = list(row["test_list"])
    extras = {key: row[key] for key in ("entry_point", "split") if key in row}
    return {
        "id": f"mbpp-{row['task_id']}",
        "problem": row["prompt"] + "\nYour code should pass these tests:\n" + "\n".join(asserts),
        "tests": "\n".join([*row.get("test_imports", []), *asserts]),
        **extras,
    }


@dataclass(frozen=True)
class BuiltinPrompts:
    file: str  # in the local data folder
    task: str
    license: str  # of the local file's data (see the data folder's README), for data cards
    hub: str | None = None  # the hub alternative when the file is missing
    hub_config: str | None = None
    hub_split: str = "train"
    fields: dict[str, str] = field(default_factory=dict)  # our field -> source column, applied before `transform`
    transform: Transform = _math


_MAA = "problems (c) MAA"
BUILTIN_PROMPTS: dict[str, BuiltinPrompts] = {
    "gsm8k": BuiltinPrompts(
        "gsm8k_test.jsonl", "math", "MIT (openai/grade-school-math)", "openai/gsm8k", "main", "test",
        fields={"problem": "question"}, transform=_gsm8k,
    ),
    "math500": BuiltinPrompts(
        "math500.jsonl", "math", "MIT (openai/prm800k; MATH, Hendrycks et al.)", "HuggingFaceH4/MATH-500", None, "test"
    ),
    "math_train": BuiltinPrompts("math_train.jsonl", "math", "MIT (agentica-project/rllm; MATH, Hendrycks et al.)"),
    "aime": BuiltinPrompts(
        "aime_1983_2023.jsonl", "math", f"MIT (agentica-project/rllm); {_MAA}, solutions AoPS wiki",
        transform=_competition,
    ),
    "aime24": BuiltinPrompts(
        "aime24.jsonl", "math", f"MIT (Qwen2.5-Math evaluation data); {_MAA}", "HuggingFaceH4/aime_2024",
        transform=_competition,
    ),
    "aime25": BuiltinPrompts(
        "aime25.jsonl", "math", f"MIT (AReaL evaluation data); {_MAA}", "math-ai/aime25", None, "test",
        transform=_competition,
    ),
    "amc23": BuiltinPrompts(
        "amc23.jsonl", "math", f"MIT (Qwen2.5-Math evaluation data); {_MAA}", "AI-MO/aimo-validation-amc",
        transform=_amc23,
    ),
    "humaneval": BuiltinPrompts(
        "humaneval.jsonl", "code", "MIT (openai/human-eval)", "openai/openai_humaneval", None, "test",
        transform=_humaneval,
    ),
    "mbpp": BuiltinPrompts(
        "mbpp_sanitized.jsonl", "code", "CC-BY-4.0 (MBPP, Austin et al. 2021)", "google-research-datasets/mbpp",
        "sanitized", "prompt+test+validation+train", transform=_mbpp,  # all 427 in task_id order, as the file
    ),
}  # fmt: skip


def builtin_license(name: str) -> str | None:
    """The license of a built-in set's data, for data cards; None for other names."""
    entry = BUILTIN_PROMPTS.get(name)
    return entry.license if entry else None


def data_folder(data_dir: Path | str | None = None) -> Path:
    """Where built-in sets' files live: `data_dir`, else `$DISTILL_DATA`, else `shared/data` beside the checkout."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("DISTILL_DATA"):
        return Path(os.environ["DISTILL_DATA"])
    return REPO_ROOT.parent / "shared" / "data"


def load_prompts(
    name: str,
    *,
    split: str | None = None,
    subset: str | None = None,
    fields: dict[str, str] | None = None,
    task: str | None = None,
    limit: int | None = None,
    data_dir: Path | None = None,
) -> list[dict]:
    """The checked prompt rows of a built-in set, `synthetic`, a local file or a hub dataset (see the module doc)."""
    if limit is not None and limit < 1:
        raise DataError(f"prompt set '{name}': limit must be a positive number of rows, got {limit}")
    if name == "synthetic":
        return _synthetic(limit)
    if name in BUILTIN_PROMPTS:
        entry = BUILTIN_PROMPTS[name]
        rows = _read_builtin(name, entry, data_dir)
        return _finish(rows, name, entry.fields, entry.transform, entry.task, limit, own_source=True)
    path = Path(name).expanduser()
    if path.suffix in FILE_SUFFIXES or path.exists():
        return _finish(_read_file(path), path.stem, fields or {}, None, task, limit)
    if "/" in name:
        return _finish(_read_hub(name, subset, split), name, fields or {}, None, task, limit)
    names = [*BUILTIN_PROMPTS, "synthetic"]
    close = difflib.get_close_matches(name, names, n=1)
    raise DataError(
        f"unknown prompt set '{name}': not a built-in ({', '.join(names)}), a .jsonl/.json/.parquet file "
        f"or a hub id owner/name" + (f"; did you mean '{close[0]}'?" if close else "")
    )


def _synthetic(limit: int | None) -> list[dict]:
    """A `limit` spreads over all levels (rows come level by level), so a small one is not all level 1."""
    from distill.tasks import LEVELS, synthetic_rows

    rows = synthetic_rows(per_level=-(-limit // len(LEVELS)) if limit else 8, seed=0)
    return rows[:limit] if limit else rows


def _read_builtin(name: str, entry: BuiltinPrompts, data_dir: Path | None) -> Located:
    path = data_folder(data_dir) / entry.file
    if path.is_file():
        return _read_file(path)
    if entry.hub is None:
        raise DataError(
            f"built-in set '{name}' needs its local file {path} (it has no hub alternative); "
            f"point DISTILL_DATA (or data_dir) at the folder holding {entry.file}"
        )
    try:
        return _read_hub(entry.hub, entry.hub_config, entry.hub_split)
    except DataError as e:
        raise DataError(f"built-in set '{name}': no local file {path}, and {e}") from None


def _read_file(path: Path) -> Located:
    if not path.exists():
        raise DataError(f"prompt file not found: {path}")
    if not path.is_file() or path.suffix not in FILE_SUFFIXES:
        raise DataError(f"{path}: not a prompt file; expected a .jsonl, .json or .parquet file")
    if path.suffix == ".parquet":
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path.name}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
        return [_as_object(f"{path.name} row {i}", row) for i, row in enumerate(rows)]
    located = []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and other characters splitlines breaks at.
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path.name}:{number}: invalid JSON ({e.msg}, column {e.colno})") from None
            located.append(_as_object(f"{path.name}:{number}", row))
    return located


def _as_object(loc: str, row: object) -> tuple[str, dict]:
    if not isinstance(row, dict):
        raise DataError(f"{loc}: expected a JSON object, got {type(row).__name__}")
    return loc, row


def _read_parquet(path: Path) -> Located:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged or non-Parquet file
        raise DataError(f"{path}: cannot read Parquet ({_first_line(e)})") from None
    return [(f"{path.name} row {i}", row) for i, row in enumerate(rows)]


def _read_hub(hub_id: str, config: str | None, split: str | None) -> Located:
    label = f"hub dataset {hub_id}" + (f" ({config})" if config else "")
    hub.offline()  # decided once, quickly: datasets would otherwise retry an unreachable hub with backoff
    try:
        import datasets

        data = datasets.load_dataset(hub_id, config, split=split)
    except ConnectionError as e:  # also what HF_HUB_OFFLINE=1 raises, at once, for a dataset not in the cache
        raise DataError(f"{label}: cannot reach the Hugging Face hub ({_first_line(e)})") from None
    except FileNotFoundError:
        raise DataError(f"{label}: not found on the hub (or gated: log in with a token that has access)") from None
    except Exception as e:
        raise DataError(f"{label}: {type(e).__name__}: {_first_line(e)}") from None
    if isinstance(data, datasets.DatasetDict):  # no split asked for: the only one, else train
        names = list(data)
        split = names[0] if len(names) == 1 else "train" if "train" in names else None
        if split is None:
            raise DataError(f"{label}: several splits ({', '.join(names)}); choose one with split=")
        data = data[split]
    return [(f"{hub_id}[{split}] row {i}", dict(row)) for i, row in enumerate(data)]


def _finish(
    located: Located,
    source: str,
    fields: dict[str, str],
    transform: Transform | None,
    task: str | None,
    limit: int | None,
    own_source: bool = False,
) -> list[dict]:
    """Rename, transform, fill defaults, keep `limit` rows, then check them all. Built-ins name rows by the set's
    name (`own_source`); other sets keep a row's own `source`, so a merged file still says where rows came from."""
    rows: Located = []
    for index, (loc, raw) in enumerate(located):
        row = _renamed(loc, raw, fields)
        if transform is not None:
            try:
                row = transform(row, index)
            except KeyError as e:
                raise DataError(f"{loc}: field {e.args[0]!r}: missing") from None
            except (TypeError, AttributeError, ValueError) as e:  # a source column of the wrong type
                raise DataError(f"{loc}: {e}") from None
            if row is None:
                continue
        row = with_prompt_helpers(row)
        row["source"] = source if own_source else row.get("source", source)
        if "task" not in row and (row_task := task or implied_task(row)):
            row["task"] = row_task
        rows.append((loc, row))
    rows = rows[:limit] if limit else rows
    if not rows:
        raise DataError(f"prompt set '{source}' has no rows")
    if not any("id" in row for _, row in rows):  # no id column at all: positional ids, stable for a given file
        rows = [(loc, {"id": f"{source}-{i}", **row}) for i, (loc, row) in enumerate(rows)]
    first_seen: dict[str, str] = {}
    for loc, row in rows:
        _check_row(loc, row)
        if row["id"] in first_seen:
            raise DataError(f"{loc}: field 'id': duplicate id {_short(row['id'])}, first at {first_seen[row['id']]}")
        first_seen[row["id"]] = loc
    return [row for _, row in rows]


def _renamed(loc: str, raw: dict, fields: dict[str, str]) -> dict:
    """Our field names for the source's columns (a rename: the source column itself is not kept twice)."""
    for ours, column in fields.items():
        if column not in raw:
            raise DataError(f"{loc}: column {column!r} (mapped to field {ours!r}) is missing")
    row = {key: value for key, value in raw.items() if key not in fields.values()}
    row.update({ours: raw[column] for ours, column in fields.items()})
    return row


def _check_row(loc: str, row: dict) -> None:
    """The checks every row gets; numbers are cast where a source commonly stores them (ids, integer answers)."""
    for key in ("id", "answer"):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = str(int(value)) if float(value).is_integer() else str(value)
    for key in ("id", "problem"):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{loc}: field '{key}': expected a non-empty string, got {_short(value)}")
    try:
        check_reference(row)
    except RowError as e:
        hint = " (or pass task=)" if "'task'" in str(e) and row.get("task") is None else ""
        raise DataError(f"{loc}: {e}{hint}") from None

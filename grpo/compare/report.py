"""grpo.compare's report: a Table-6-like Markdown table, two plots, the JSON behind them, and a plain statement,
rendered from the rows and from grpo.compare.analysis' statistics (this module computes none of its own).

Each arm's row holds its evaluation (distill.eval's results.json), its per-problem pass@1 (for the paired statistics),
its compute (distill.compute.Compute as a dict) and, for GRPO arms, the metrics.jsonl lines of its training run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from distill.config import Config
from grpo.compare.analysis import (
    arms_only,
    benchmarks,
    on_problems,
    paired_statistics,
    resolved,
    score,
    sweep_leaders,
    sweep_levels,
)


def _human(x: float) -> str:
    if x == 0:
        return "0"
    exponent = int(math.floor(math.log10(abs(x))))
    return f"{x / 10**exponent:.2f}e{exponent}"


def table(rows: dict[str, dict]) -> str:
    """One line per arm: pass@1 ± stderr and cons@k per benchmark, then its compute."""
    rows = arms_only(rows)
    benches = benchmarks(rows)
    header = ["arm"]
    for b in benches:
        k = next(iter(rows.values()))["results"]["benchmarks"][b]["samples"]
        header += [f"{b} pass@1", f"{b} cons@{k}"]
    scored = any(row["compute"].get("scored_tokens") for row in rows.values())
    header += ["teacher + rollout tokens", *(["teacher-scored tokens"] if scored else []), "trained tokens"]
    header += ["FLOPs", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # The rows evaluated on fewer problems (compare.context_problems) say so: their score is not on the others' set.
    most = {b: max(row["results"]["benchmarks"][b].get("problems") or 0 for row in rows.values()) for b in benches}
    for row in rows.values():
        cells = [row["label"]]
        for b in benches:
            r = row["results"]["benchmarks"][b]
            stderr = "" if r["pass@1_stderr"] is None else f" ± {100 * r['pass@1_stderr']:.1f}"
            fewer = f" ({r['problems']} problems)" if (r.get("problems") or most[b]) < most[b] else ""
            cells.append(f"{100 * r['pass@1']:.1f}{stderr}{fewer}")
            cells.append("–" if r.get("cons@k") is None else f"{100 * r['cons@k']:.1f}")
        c = row["compute"]
        cells += [
            f"{c['generated_tokens']:,}",
            *([f"{c.get('scored_tokens', 0):,}"] if scored else []),
            f"{c['trained_tokens']:,}",
            _human(c["flops"]),
            f"{c['wall_s'] / 60:.1f} min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _points(x: float) -> str:
    return f"{100 * x:.1f}"


def paired_table(rows: dict[str, dict], stats: list[dict]) -> str:
    """One line per pair and benchmark: the difference in pass@1 points, its interval, p and the minimum detectable
    difference at the eval's size."""
    if not stats:
        return ""
    c, power = stats[0]["confidence"], stats[0]["power"]
    lines = [
        f"| A − B | benchmark | problems | Δ pass@1 | {100 * c:.0f}% CI | p | detectable at {100 * power:.0f}% power |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for s in stats:
        mdd = "–" if s["min_detectable"] is None else _points(s["min_detectable"])
        lines.append(
            f"| {rows[s['a']]['label'].split(' ', 1)[0]} − {rows[s['b']]['label'].split(' ', 1)[0]} | "
            f"{s['benchmark']} | {s['problems']} | {float(100 * s['difference']):+.1f} | "
            f"{_points(s['ci'][0])} to {_points(s['ci'][1])} | {s['p_value']:.3g} | {mdd} |"
        )
    return "\n".join(lines)


def _sentence(rows: dict[str, dict], s: dict) -> str:
    """ "A beats B by d (CI)" only where the interval excludes 0; otherwise the gap, and the power to see one."""
    a, b = rows[s["a"]]["label"], rows[s["b"]]["label"]
    low, high = s["ci"]
    level = f"{100 * s['confidence']:.0f}% CI {_points(low)} to {_points(high)}, p = {s['p_value']:.3g}"
    if resolved(s):
        verb = "beats" if s["difference"] > 0 else "trails"
        return f"- {s['benchmark']}: {a} {verb} {b} by {_points(abs(s['difference']))} points pass@1 ({level})."
    if s["min_detectable"] is None:
        reach = "the two scored alike on every problem"
    else:
        reach = (
            f"at {s['problems']} problems this evaluation resolves a true gap of {_points(s['min_detectable'])} "
            f"points {100 * s['power']:.0f}% of the time"
        )
    return (
        f"- {s['benchmark']}: {a} vs {b}: {float(100 * s['difference']):+.1f} points pass@1 ({level}) -- not "
        f"resolved; {reach}."
    )


def statement(rows: dict[str, dict], stats: list[dict]) -> list[str]:
    """What the numbers show, in sentences, from the paired statistics; then the compute the arms spent."""
    out = [_sentence(rows, s) for s in stats]
    for arm, name in (("rl", "RL"), ("kd", "On-policy distillation")):
        if "distill" in rows and arm in rows:
            ratio = rows[arm]["compute"]["flops"] / max(rows["distill"]["compute"]["flops"], 1.0)
            capped = " (its step cap ended it before the budget)" if ratio < 0.95 else ""
            out.append(f"- {name} spent {ratio:.2f}x the FLOPs of distillation (teacher generation included){capped}.")
    if "distill" in rows and "okd" in rows:
        ratio = rows["okd"]["compute"]["flops"] / max(rows["distill"]["compute"]["flops"], 1.0)
        out.append(
            f"- Offline KD spent {ratio:.2f}x the FLOPs of distillation: the same teacher samples and SFT steps (not "
            "matched to a budget: equal by construction); its top-k log-probs came out of the sampling pass itself."
        )
    if "teacher" in rows:
        c = rows["teacher"]["compute"]
        out.append(
            f"- Making the teacher (R1-Zero GRPO, row (t)) cost {_human(c['flops'])} FLOPs and {c['wall_s'] / 60:.1f} "
            "min, in no arm's budget: the paper's teacher is given too."
        )
    return out


def power_statement(stats: list[dict]) -> list[str]:
    """What this evaluation can and cannot show: per benchmark and evaluation size (the context rows may see fewer
    problems, compare.context_problems), the smallest true gap its pairs resolve."""
    out = []
    for bench in dict.fromkeys(s["benchmark"] for s in stats):
        sizes = sorted({s["problems"] for s in stats if s["benchmark"] == bench}, reverse=True)
        for n in sizes:
            group = [s for s in stats if s["benchmark"] == bench and s["problems"] == n]
            sized = [s["min_detectable"] for s in group if s["min_detectable"] is not None]
            pairs = f"{len(group)} pair{'s' * (len(group) > 1)}"
            if not sized:
                out.append(f"- {bench}: {pairs} scored alike on all {n} problems; no gap to size.")
                continue
            out.append(
                f"- {bench}: {pairs} on {n} problems; the smallest gap they resolve at {100 * group[0]['power']:.0f}% "
                f"power is {_points(min(sized))} to {_points(max(sized))} points pass@1 (by pair). Smaller true gaps "
                "go unresolved here: a larger eval narrows them (compare.min_detectable sizes it for a given gap)."
            )
    return out


def sweep_table(rows: dict[str, dict], leaders: list[dict]) -> str:
    """One line per fraction of the runs and benchmark: each swept arm's pass@1 ± stderr and FLOPs there, and who
    leads -- resolved only where the paired interval against the runner-up excludes 0."""
    levels = sweep_levels(rows)
    if not levels:
        return ""
    arms = list(dict.fromkeys(arm for at in levels.values() for arm in at))
    short = {arm: rows[arm]["label"].split(" ", 1)[0] for arm in arms}
    lines = ["| share of each run | benchmark | " + " | ".join(short[a] for a in arms) + " | leads |"]
    lines.append("|---|---|" + "---|" * len(arms) + "---|")
    for entry in leaders:
        at, bench = levels[entry["fraction"]], entry["benchmark"]
        cells = []
        for arm in arms:
            if arm not in at:
                cells.append("–")
                continue
            p, se = score(at[arm], bench)
            cells.append(f"{_points(p)} ± {_points(se)} ({_human(at[arm]['compute']['flops'])} FLOPs)")
        lead = short[entry["ranking"][0]]
        if "paired" in entry:
            d = entry["paired"]
            low, high = d["ci"]
            if d["difference"] == 0:  # no one ahead: say who is level
                lead = f"{lead} = {short[entry['ranking'][1]]}"
            lead = f"{lead} by {_points(d['difference'])} ({_points(low)} to {_points(high)})"
            lead += "" if resolved(d) else ": not resolved"
        lines.append(f"| {entry['fraction']:.0%} | {bench} | " + " | ".join(cells) + f" | {lead} |")
    return "\n".join(lines)


def budget_curves(rows: dict[str, dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """Benchmark -> arm -> budget -> its point (distill.eval's budget_curve rows), for the arms' final models that
    have one (eval.budgets); {} without."""
    curves: dict[str, dict[str, dict[int, dict]]] = {}
    for arm, row in arms_only(rows).items():
        for bench, points in (row["results"].get("budget_curve") or {}).items():
            curves.setdefault(bench, {})[arm] = {p["budget"]: p for p in points}
    return curves


def budget_table(rows: dict[str, dict]) -> str:
    """One line per arm and benchmark: pass@1 ± stderr at each thinking budget, then without forcing ("" when no
    row has a budget curve)."""
    curves = budget_curves(rows)
    if not curves:
        return ""
    budgets = sorted({b for at in curves.values() for points in at.values() for b in points})
    lines = ["| arm | benchmark | " + " | ".join(f"{b:,} tokens" for b in budgets) + " | no forcing |"]
    lines.append("|---|---|" + "---|" * (len(budgets) + 1))
    for bench, at in curves.items():
        for arm, points in at.items():
            cells = []
            for budget in budgets:
                p = points.get(budget)
                stderr = "" if p is None or p["pass@1_stderr"] is None else f" ± {_points(p['pass@1_stderr'])}"
                cells.append("–" if p is None else f"{_points(p['pass@1'])}{stderr}")
            full, se = score(rows[arm], bench)
            label = rows[arm]["label"].split(" ", 1)[0]
            lines.append(f"| {label} | {bench} | " + " | ".join(cells) + f" | {_points(full)} ± {_points(se)} |")
    return "\n".join(lines)


def plot_accuracy_vs_budget(rows: dict[str, dict], path: Path) -> None:
    """pass@1 against the thinking budget, a curve per arm and a panel per benchmark (eval.budgets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = budget_curves(rows)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
    for ax, (bench, at) in zip(axes[0], curves.items(), strict=True):
        for arm, points in at.items():
            x = sorted(points)
            y = [100 * points[b]["pass@1"] for b in x]
            err = [200 * (points[b]["pass@1_stderr"] or 0.0) for b in x]
            ax.errorbar(x, y, yerr=err, fmt="o-", capsize=4, label=rows[arm]["label"])
        _pass_at_1_axes(ax, bench, "thinking budget (tokens, log)")
        ax.set_xscale("log", base=2)
    _save(fig, axes, path)


def plot_accuracy_vs_compute(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = benchmarks(rows)
    curves: dict[str, list[dict]] = {}  # arm -> its sweep points and its final row: a curve along its own run
    for key, row in rows.items():
        curves.setdefault(row.get("sweep_of", key), []).append(row)
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 3.8), squeeze=False)
    for ax, bench in zip(axes[0], benches, strict=True):
        for arm, points in curves.items():
            final = rows[arm]
            p, se = score(final, bench)
            points = [on_problems(r, points[-1]) if r is final else r for r in points]  # one problem set per curve
            if final["compute"]["flops"] == 0:  # the student as is spent nothing: a reference line, not a point
                ax.axhline(100 * p, color="grey", linestyle="--", label=final["label"])
                ax.axhspan(100 * (p - 2 * se), 100 * (p + 2 * se), color="grey", alpha=0.12)
                continue
            points = sorted(points, key=lambda r: r["compute"]["flops"])
            x = [r["compute"]["flops"] for r in points]
            y, err = zip(*(score(r, bench) for r in points), strict=True)
            ax.errorbar(x, [100 * v for v in y], yerr=[200 * e for e in err], fmt="o-", capsize=4, label=final["label"])
        _pass_at_1_axes(ax, bench, "compute (FLOPs, log)")
        ax.set_xscale("log")
    _save(fig, axes, path)


def _pass_at_1_axes(ax, bench: str, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pass@1 (%) ± 2 s.e.")
    ax.set_title(bench)
    ax.grid(alpha=0.3)


def _save(fig, axes, path: Path) -> None:
    import matplotlib.pyplot as plt

    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_grpo_length(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for row in rows.values():
        metrics = row.get("grpo_metrics") or []
        points = [(m["step"], m["mean_length"]) for m in metrics if m.get("mean_length") is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=row["label"], marker="." if len(points) < 60 else "")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("tokens")
    ax.set_title("Average length per response during GRPO")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(cfg: Config, rows: dict[str, dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_compute(rows, folder / "accuracy_vs_compute.png")
    plot_grpo_length(rows, folder / "grpo_response_length.png")
    budgets = budget_table(rows)
    if budgets:
        plot_accuracy_vs_budget(rows, folder / "accuracy_vs_budget.png")
    c = cfg.compare
    stats = paired_statistics(rows, c.bootstrap, cfg.seed, c.confidence)
    leaders = sweep_leaders(rows, c.bootstrap, cfg.seed, c.confidence)
    summary = {"recipe": cfg.recipe, "paired": stats, "sweep": leaders, "arms": rows}
    (folder / "compare.json").write_text(json.dumps(summary, indent=2) + "\n")
    student, teacher = cfg.model.name, cfg.generate.teacher or cfg.model.name
    if "teacher" in rows:
        teacher = f"{teacher} after R1-Zero GRPO (row (t), R1's order)"
    text = [
        f"# RL against distillation: recipe `{cfg.recipe}`",
        "",
        f"Student `{student}`, teacher `{teacher}`; every arm evaluated with distill.eval (pass@1 over k samples "
        "± bootstrap standard error, cons@k by majority vote). Compute: 2·N FLOPs per generated token (teacher "
        "generation, GRPO and on-policy rollouts) and per token a teacher scores, 6·N per trained token; wall time "
        "includes model loading."
        + (
            " Offline KD (f) counts as SFT: the teacher's top-k log-probs come out of its sampling pass (no second "
            "forward pass), and its KL over k + 1 outcomes per token (about V operations, V the vocabulary) is "
            "negligible beside 6·N."
            if "okd" in rows
            else ""
        ),
        "",
        table(rows),
        "",
        "## What the numbers show",
        "",
        "Arm against arm on the same problems and seeds: the paired bootstrap over problems "
        f"({cfg.compare.bootstrap:,} resamples; distill.metrics.paired_difference).",
        "",
        paired_table(rows, stats),
        "",
        *statement(rows, stats),
        "",
        *(
            [
                "## Along each run (the budget sweep)",
                "",
                "Each trained arm evaluated from checkpoints at shares of its run (of its steps, or of its FLOP "
                "budget where that ends it), on the same problems; who leads at each share, against the runner-up "
                f"({100 * c.confidence:.0f}% paired interval):",
                "",
                sweep_table(rows, leaders),
                "",
            ]
            if leaders
            else []
        ),
        *(
            [
                "## Accuracy against the thinking budget",
                "",
                "Each arm's model with its reasoning cut at each budget (thinking tokens), closed and made to answer "
                "(s1's budget forcing, eval.budgets; distill/budget.py), pass@1 ± standard error on the same problems; "
                "no forcing: the table above.",
                "",
                budgets,
                "",
                "![accuracy against the thinking budget](accuracy_vs_budget.png)",
                "",
            ]
            if budgets
            else []
        ),
        "## What this evaluation can show",
        "",
        *power_statement(stats),
        *(
            [
                "- Teacher and student are the same model here: arm (b) is rejection-sampling self-training, not the "
                "paper's distillation from a much stronger teacher, which is what its finding is about."
            ]
            if teacher == student
            else [
                "- The teacher is the student's own model after RL (row (t)): a far smaller gap than the paper's "
                "teacher, so what distillation can pass on here is bounded by what RL made of this model."
            ]
            if "teacher" in rows
            else []
        ),
        "",
        "![accuracy against compute](accuracy_vs_compute.png)",
        "",
        "![GRPO response length](grpo_response_length.png)",
        "",
    ]
    (folder / "table.md").write_text("\n".join(text))
    return folder

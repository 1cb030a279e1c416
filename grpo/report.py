"""grpo.compare's report: a Table-6-like Markdown table, two plots, the JSON behind them, and a plain statement.

Each arm's row holds its evaluation (distill.eval's results.json), its compute (grpo.compute.Compute as a dict) and,
for GRPO arms, the metrics.jsonl lines of its training run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from distill.config import Config


def _benchmarks(rows: dict[str, dict]) -> list[str]:
    first = next(iter(rows.values()))
    return list(first["results"]["benchmarks"])


def _score(row: dict, bench: str) -> tuple[float, float]:
    r = row["results"]["benchmarks"][bench]
    return r["pass@1"], r["pass@1_stderr"] or 0.0  # None: one problem, or eval.bootstrap=0


def _human(x: float) -> str:
    if x == 0:
        return "0"
    exponent = int(math.floor(math.log10(abs(x))))
    return f"{x / 10**exponent:.2f}e{exponent}"


def table(rows: dict[str, dict]) -> str:
    """One line per arm: pass@1 ± stderr and cons@k per benchmark, then its compute."""
    benches = _benchmarks(rows)
    header = ["arm"]
    for b in benches:
        k = next(iter(rows.values()))["results"]["benchmarks"][b]["samples"]
        header += [f"{b} pass@1", f"{b} cons@{k}"]
    header += ["teacher + rollout tokens", "trained tokens", "FLOPs", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows.values():
        cells = [row["label"]]
        for b in benches:
            r = row["results"]["benchmarks"][b]
            stderr = "" if r["pass@1_stderr"] is None else f" ± {100 * r['pass@1_stderr']:.1f}"
            cells.append(f"{100 * r['pass@1']:.1f}{stderr}")
            cells.append("–" if r.get("cons@k") is None else f"{100 * r['cons@k']:.1f}")
        c = row["compute"]
        cells += [
            f"{c['generated_tokens']:,}",
            f"{c['trained_tokens']:,}",
            _human(c["flops"]),
            f"{c['wall_s'] / 60:.1f} min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gap(a: dict, b: dict, bench: str) -> tuple[float, float]:
    (pa, sa), (pb, sb) = _score(a, bench), _score(b, bench)
    return pa - pb, math.hypot(sa, sb)


def statement(rows: dict[str, dict]) -> list[str]:
    """What the numbers show, per benchmark, in sentences: distillation against RL (the paper's question), and each
    trained arm against the student as is. A gap under two standard errors is called what it is: not resolved."""
    out = []
    for bench in _benchmarks(rows):
        pairs = [("distill", "rl"), ("distill", "base"), ("rl", "base"), ("distill_rl", "distill")]
        for a, b in pairs:
            if a not in rows or b not in rows:
                continue
            gap, se = _gap(rows[a], rows[b], bench)
            verdict = (
                "within noise (under two standard errors)" if abs(gap) < 2 * se else ("better" if gap > 0 else "worse")
            )
            out.append(
                f"- {bench}: {rows[a]['label']} vs {rows[b]['label']}: {100 * gap:+.1f} points pass@1 "
                f"(± {100 * se:.1f}) -- {verdict}."
            )
    if "distill" in rows and "rl" in rows:
        ratio = rows["rl"]["compute"]["flops"] / max(rows["distill"]["compute"]["flops"], 1.0)
        capped = " (its step cap ended it before the budget)" if ratio < 0.95 else ""
        out.append(f"- RL spent {ratio:.2f}x the FLOPs of distillation (teacher generation included){capped}.")
    return out


def plot_accuracy_vs_compute(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = _benchmarks(rows)
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 3.8), squeeze=False)
    for ax, bench in zip(axes[0], benches, strict=True):
        for row in rows.values():
            p, se = _score(row, bench)
            if row["compute"]["flops"] == 0:  # the student as is spent nothing: a reference line, not a point
                ax.axhline(100 * p, color="grey", linestyle="--", label=row["label"])
                ax.axhspan(100 * (p - 2 * se), 100 * (p + 2 * se), color="grey", alpha=0.12)
                continue
            ax.errorbar([row["compute"]["flops"]], [100 * p], yerr=[200 * se], fmt="o", capsize=4, label=row["label"])
        ax.set_xscale("log")
        ax.set_xlabel("compute (FLOPs, log)")
        ax.set_ylabel("pass@1 (%) ± 2 s.e.")
        ax.set_title(bench)
        ax.grid(alpha=0.3)
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
    (folder / "compare.json").write_text(json.dumps({"recipe": cfg.recipe, "arms": rows}, indent=2) + "\n")
    student, teacher = cfg.model.name, cfg.generate.teacher or cfg.model.name
    text = [
        f"# RL against distillation: recipe `{cfg.recipe}`",
        "",
        f"Student `{student}`, teacher `{teacher}`; every arm evaluated with distill.eval (pass@1 over k samples "
        "± bootstrap standard error, cons@k by majority vote). Compute: 2·N FLOPs per generated token (teacher "
        "generation, GRPO rollouts), 6·N per trained token; wall time includes model loading.",
        "",
        table(rows),
        "",
        "## What the numbers show",
        "",
        *statement(rows),
        *(
            [
                "- Teacher and student are the same model here: arm (b) is rejection-sampling self-training, not the "
                "paper's distillation from a much stronger teacher, which is what its finding is about."
            ]
            if teacher == student
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

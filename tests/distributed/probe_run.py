"""`python -m probe_run <module> key=value ...`: run a stage's entry point as `__main__` with test probes installed,
so that a test can see inside each rank of a real `accelerate launch` without any hook in the product.

Each rank writes <PROBE_DIR>/rank<RANK>.json when it ends: `params_sha256` (its trainable parameters after
training, in name order, and `params_sha256_begin` before it), `step` (the optimizer step it ended at), `scored`
(completions its accuracy reward judged, grpo.train) and `exit` (its exit status). grpo.train also gets the test-only
`chars` reward (tests/grpo/reward_doubles.py), so that a tiny random policy has advantages to learn from.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from pathlib import Path


def _probe_training(report: dict) -> None:
    from transformers import Trainer

    train = Trainer.train

    def digest(model) -> str:
        sha = hashlib.sha256()
        for name, param in sorted(model.named_parameters()):
            if param.requires_grad:
                sha.update(name.encode() + param.detach().cpu().float().numpy().tobytes())
        return sha.hexdigest()

    def probed(self, *args, **kwargs):
        report["params_sha256_begin"] = digest(self.model)
        result = train(self, *args, **kwargs)
        report.update(params_sha256=digest(self.model), step=self.state.global_step)
        return result

    Trainer.train = probed


def _probe_rewards(report: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grpo"))
    from reward_doubles import add_chars_reward

    import grpo.rewards

    add_chars_reward()
    build = grpo.rewards.accuracy_reward

    def counted(*args, **kwargs):
        accuracy = build(*args, **kwargs)

        def scored(completions, **columns):
            report["scored"] += len(completions)
            return accuracy(completions=completions, **columns)

        return grpo.rewards._named("accuracy", scored)

    grpo.rewards.accuracy_reward = counted


def main() -> None:
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    report = {"rank": int(os.environ.get("RANK", "0")), "scored": 0, "exit": None}
    _probe_training(report)
    if module.startswith("grpo."):
        _probe_rewards(report)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        report["exit"] = e.code
        raise
    finally:
        path = Path(os.environ["PROBE_DIR"]) / f"rank{report['rank']}.json"
        path.write_text(json.dumps(report))


if __name__ == "__main__":
    main()

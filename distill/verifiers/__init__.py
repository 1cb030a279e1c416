"""Rule-based verifiers: pure functions (no torch, no network), one module each, and one registry
(`distill.verifiers.registry`) that rejection sampling, evaluation and GRPO rewards all call."""

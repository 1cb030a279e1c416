"""GRPO on the shared verifier rewards, built on TRL's GRPOTrainer. May import `distill`, never the reverse."""

"""Plumbing for distill.sft: data, TRL/PEFT/bitsandbytes objects, the pre-flight template check, callbacks, cards."""

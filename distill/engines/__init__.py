"""Samplers: one interface (`Sampler.sample`) over vLLM offline, OpenAI-compatible servers and transformers."""

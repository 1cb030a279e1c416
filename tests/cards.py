"""A model card checked as the Hub reads it: huggingface_hub's ModelCard, not string matching."""

from __future__ import annotations

from pathlib import Path


def assert_hub_model_card(folder: Path, stage: str, base_model: str) -> dict:
    """The folder's README.md parses as a model card naming its base, method and library; returns its metadata."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == base_model and data["library_name"] in ("peft", "transformers"), data
    assert {"trl", stage, "distill-factory"} <= set(data["tags"]), data["tags"]
    assert "None" not in card.text.split("## Provenance")[0], card.text[:400]  # TRL's default card said "[None]"
    return data

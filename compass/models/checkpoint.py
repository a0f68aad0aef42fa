"""Checkpoint plumbing shared by the model stages: what a directory holds, and its tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from compass.io import CompassError, require_dir

VLM_TYPES = {"llava_onevision"}
# Tensors of the Phase 1 VLM that Phase 2 never trains (names as saved on disk).
FROZEN_PREFIXES = ("vision_tower.", "multi_modal_projector.", "image_newline", "model.vision_tower.", "model.multi_modal_projector.", "model.image_newline")


def model_type(path, what: str = "model") -> str:
    path = require_dir(path, what)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CompassError(f"{what}: {path} holds no config.json (not a transformers checkpoint)")
    return json.loads(cfg.read_text())["model_type"]


def is_vlm(path) -> bool:
    return model_type(path) in VLM_TYPES


def iter_tensors(path) -> Iterator[tuple[str, "object"]]:
    """(name, tensor) for every tensor in a checkpoint directory's safetensors files."""
    from safetensors import safe_open

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise CompassError(f"{path}: no *.safetensors files")
    for file in files:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


def frozen_tensors(path) -> dict:
    return {k: v for k, v in iter_tensors(path) if k.startswith(FROZEN_PREFIXES)}


def compare_frozen(phase1_dir, other_dir) -> int:
    """Check every vision-tower / projector tensor is bit-identical; return how many were checked."""
    import torch

    ref = frozen_tensors(phase1_dir)
    got = frozen_tensors(other_dir)
    if not ref:
        raise CompassError(f"{phase1_dir}: no vision tower or projector tensors found")
    if set(ref) != set(got):
        missing = sorted(set(ref) ^ set(got))[:3]
        raise CompassError(f"{other_dir}: vision/projector tensor names differ from Phase 1 (e.g. {missing})")
    for name, t in ref.items():
        if t.dtype != got[name].dtype or t.shape != got[name].shape or not torch.equal(t, got[name]):
            raise CompassError(f"{other_dir}: tensor {name} differs from Phase 1")
    return len(ref)

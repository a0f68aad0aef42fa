"""Checkpoint plumbing shared by the model stages: what a directory holds, its tensors, and how a VLM is saved."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from compass.io import CompassError, file_hashes, require_dir

VLM_TYPES = {"llava_onevision"}
# Tensors of the Phase 1 VLM that Phase 2 never trains (names as save_vlm writes them, see vlm_tensor_name).
FROZEN_PREFIXES = ("vision_tower.", "multi_modal_projector.", "image_newline")


def model_type(path, what: str = "model") -> str:
    path = require_dir(path, what)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CompassError(f"{what}: {path} holds no config.json (not a transformers checkpoint)")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))["model_type"]
    except (ValueError, KeyError, TypeError):
        raise CompassError(f"{cfg}: not a transformers config (no model_type)") from None


def is_vlm(path) -> bool:
    return model_type(path) in VLM_TYPES


def weights_id(path, what: str = "model") -> str:
    """What a checkpoint is, wherever it lies: a SHA-256 over the hashes of its config.json and weight
    files (from its manifest when a compass stage wrote it, else hashed now)."""
    model_type(path, what)
    path = Path(path)
    names = ["config.json"] + [f.relative_to(path).as_posix() for f in weight_files(path)]
    return hashlib.sha256(json.dumps(file_hashes(path, names), sort_keys=True).encode()).hexdigest()


def base_record(path) -> dict:
    """What an adapter records of the model it was trained on (training_log.json `base_model`), so a
    merge onto another model of the same shape is refused."""
    return {"path": str(path), "weights_sha256": weights_id(path, "base model")}


def vlm_tensor_name(name: str) -> str:
    """A LLaVA-OneVision tensor name, in any of the forms in use, as compass writes it.

    The names written are llava-hf's layout, which is also vLLM's own module naming (its
    llava_onevision loader builds `vision_tower.vision_model.*`, `multi_modal_projector.*`,
    `image_newline`, `language_model.model.*`, `language_model.lm_head.*`). transformers 5.23 loads
    them through its conversion mapping for llava_onevision, but writes the vision tower as
    `vision_tower.embeddings…` (without `vision_model.`), which vLLM refuses. Accepted forms:
    transformers' in-memory names (`model.vision_tower.…`, `model.language_model.…`, `lm_head.…`),
    its saved names, llava-hf's; a name already in the written form is returned unchanged."""
    if name.startswith("model."):
        name = name[len("model."):]
        if name.startswith("language_model."):
            name = "language_model.model." + name[len("language_model."):]
    elif name.startswith("lm_head."):
        name = "language_model." + name
    if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
        name = "vision_tower.vision_model." + name[len("vision_tower."):]
    return name


def vlm_state_dict(model) -> dict:
    """The VLM's tensors under the names save_vlm writes (a tied lm_head is left to be re-tied on load)."""
    state = {vlm_tensor_name(k): v for k, v in model.state_dict().items()}
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        state.pop("language_model.lm_head.weight", None)
    return state


def save_vlm(model, processor, out_dir) -> None:
    """Write a LLaVA-OneVision VLM that both transformers (AutoModelForImageTextToText) and vLLM load as is."""
    model.save_pretrained(out_dir, state_dict=vlm_state_dict(model), save_original_format=False)
    processor.save_pretrained(out_dir)


def weight_files(path) -> list[Path]:
    """A checkpoint directory's weight files: those its safetensors index names, else model.safetensors,
    else every *.safetensors (a repository may also hold other variants beside them), else *.bin."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    return sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))


def iter_tensors(path) -> Iterator[tuple[str, "object"]]:
    """(name, tensor) for every tensor in a checkpoint directory's weight files."""
    from safetensors import safe_open

    files = weight_files(path)
    if not files:
        raise CompassError(f"{path}: no *.safetensors (or *.bin) weight files")
    for file in files:
        if file.suffix == ".bin":
            import torch

            yield from torch.load(file, map_location="cpu", weights_only=True).items()
            continue
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


def frozen_tensors(path) -> dict:
    """The vision-tower and projector tensors of a VLM directory, by vlm_tensor_name (whatever form it was saved in)."""
    return {n: t for n, t in ((vlm_tensor_name(k), v) for k, v in iter_tensors(path)) if n.startswith(FROZEN_PREFIXES)}


def compare_tensors(ref: dict, got: dict, other, source: str = "Phase 1") -> int:
    """Check `got` holds exactly the tensors of `ref`, bit for bit; return how many were checked."""
    import torch

    if set(ref) != set(got):
        missing = sorted(set(ref) ^ set(got))[:3]
        raise CompassError(f"{other}: vision/projector tensor names differ from {source} (e.g. {missing})")
    for name, t in ref.items():
        if t.dtype != got[name].dtype or t.shape != got[name].shape or not torch.equal(t, got[name]):
            raise CompassError(f"{other}: tensor {name} differs from {source}")
    return len(ref)


def compare_frozen(phase1_dir, other_dir) -> int:
    """Check every vision-tower / projector tensor is bit-identical; return how many were checked."""
    ref = frozen_tensors(phase1_dir)
    if not ref:
        raise CompassError(f"{phase1_dir}: no vision tower or projector tensors found")
    return compare_tensors(ref, frozen_tensors(other_dir), other_dir)


# What a tensor of a LLaVA-OneVision checkpoint belongs to (names as vlm_tensor_name writes them).
PARTS = {"vision_tower": "vision_tower.", "projector": "multi_modal_projector.", "image_newline": "image_newline",
         "language_model": "language_model."}


def part_of(name: str) -> str:
    return next((part for part, prefix in PARTS.items() if name.startswith(prefix)), "other")


def _tensor_index(path) -> dict:
    """name (vlm_tensor_name) -> a function loading that tensor, reading one tensor at a time from safetensors."""
    from safetensors import safe_open

    index = {}
    for file in weight_files(path):
        if file.suffix == ".bin":
            import torch

            for k, v in torch.load(file, map_location="cpu", weights_only=True).items():
                index[vlm_tensor_name(k)] = (lambda v=v: v)
            continue
        with safe_open(str(file), "pt") as f:
            for k in f.keys():
                index[vlm_tensor_name(k)] = (lambda file=file, k=k: _read(file, k))
    if not index:
        raise CompassError(f"{path}: no *.safetensors (or *.bin) weight files")
    return index


def _read(file, key):
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        return f.get_tensor(key)


def tensor_changes(phase1_dir, other_dir) -> dict:
    """Per part of the VLM (vision_tower, projector, image_newline, language_model): how many tensors it has and
    the names of those that differ from Phase 1's, bit for bit (one tensor in memory at a time). A tensor missing
    on either side, or of another shape or dtype, is an error naming it."""
    import torch

    ref, got = _tensor_index(phase1_dir), _tensor_index(other_dir)
    if set(ref) != set(got):
        odd = sorted(set(ref) ^ set(got))[:3]
        raise CompassError(f"{other_dir}: tensor names differ from {phase1_dir} (e.g. {odd})")
    out: dict[str, dict] = {}
    for name in sorted(ref):
        a, b = ref[name](), got[name]()
        if a.shape != b.shape or a.dtype != b.dtype:
            raise CompassError(f"{other_dir}: tensor {name} is {b.dtype} {tuple(b.shape)}, Phase 1's {a.dtype} {tuple(a.shape)}")
        part = out.setdefault(part_of(name), {"tensors": 0, "changed": []})
        part["tensors"] += 1
        if not torch.equal(a, b):
            part["changed"].append(name)
    return out

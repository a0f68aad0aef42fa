"""`compass compose`: the Phase 2 VLM = Phase 1's vision tower and projector + the trained LLM.

The result is a standard `LlavaOnevisionForConditionalGeneration` checkpoint with Phase 1's
processor and chat template, written by checkpoint.save_vlm (names transformers and vLLM both
load). Before the output is put in place, every vision-tower and projector tensor is checked to be
bit-identical to Phase 1's.

When the stages trained the whole VLM (`vision.train`), `--llm` is the last stage's merged VLM: it is
checked against Phase 1 instead -- the vision tower (and image_newline) bit-identical, the projector
bit-identical when `vision.projector` is frozen, the language model untouched when it is `only` -- and
written the same way. Either way `compose.json` in the output names every tensor that changed from Phase 1,
part by part (the report shows it), and the processor carries the configured tiling (`vision.tiling`).
"""

from __future__ import annotations

import json
from pathlib import Path

from compass.io import CompassError, atomic_output
from compass.models.checkpoint import VLM_TYPES, compare_frozen, model_type, save_vlm, tensor_changes
from compass.models.vlm import load_vlm, put_llm

_SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "head_dim", "vocab_size")


def check_llm_fits(llm_config, text_config, llm_dir) -> None:
    for key in _SHAPE_KEYS:
        if getattr(llm_config, key, None) != getattr(text_config, key, None):
            raise CompassError(
                f"{llm_dir}: {key}={getattr(llm_config, key, None)} does not match Phase 1's text model ({getattr(text_config, key, None)})"
            )


def compose(phase1_dir, llm_dir, out_dir, vision_cfg: dict | None = None) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

    from compass import vision

    vision_cfg = vision_cfg or {}
    if model_type(llm_dir, "llm") in VLM_TYPES:
        if not vision_cfg.get("train"):
            raise CompassError(f"llm: {llm_dir} is a VLM checkpoint; compose takes the trained language model "
                               "(or set vision.train: true for a VLM trained as a whole)")
        return compose_vlm(phase1_dir, llm_dir, out_dir, vision_cfg)
    vlm = load_vlm(phase1_dir)
    check_llm_fits(AutoConfig.from_pretrained(llm_dir), vlm.config.text_config, llm_dir)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=vlm.model.language_model.embed_tokens.weight.dtype)
    put_llm(vlm, llm)
    del llm
    processor = AutoProcessor.from_pretrained(phase1_dir)
    vision.apply_tiling(processor, vlm.config, vision_cfg.get("tiling"))
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(vlm, processor, tmp)
        n = compare_frozen(phase1_dir, tmp)
        write_record(tmp, phase1_dir, llm_dir, "frozen", tensor_changes(phase1_dir, tmp))
    print(f"composed Phase 2 VLM -> {out_dir} ({n} vision/projector tensors bit-identical to Phase 1)")
    return n


def check_changes(changes: dict, projector: str, trained) -> None:
    """What may differ from Phase 1 after training the whole VLM with `vision.projector` = `projector`."""
    for part in ("vision_tower", "image_newline"):
        if changes.get(part, {}).get("changed"):
            raise CompassError(f"{trained}: tensor {changes[part]['changed'][0]} differs from Phase 1 (the vision tower "
                               "is frozen)")
    if projector == "frozen" and changes.get("projector", {}).get("changed"):
        raise CompassError(f"{trained}: tensor {changes['projector']['changed'][0]} differs from Phase 1, but "
                           "vision.projector is frozen")
    if projector == "only" and changes.get("language_model", {}).get("changed"):
        raise CompassError(f"{trained}: tensor {changes['language_model']['changed'][0]} differs from Phase 1, but "
                           "vision.projector is only (the projector alone is trained)")


def compose_vlm(phase1_dir, vlm_dir, out_dir, vision_cfg: dict) -> int:
    """The final VLM from a VLM trained as a whole: checked against Phase 1 (`check_changes`), written as save_vlm
    writes, with its processor and tiling."""
    from transformers import AutoProcessor

    from compass import vision

    projector = vision_cfg.get("projector", "frozen")
    vlm = load_vlm(vlm_dir)
    processor = AutoProcessor.from_pretrained(vlm_dir)
    vision.apply_tiling(processor, vlm.config, vision_cfg.get("tiling"))
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(vlm, processor, tmp)
        changes = tensor_changes(phase1_dir, tmp)
        check_changes(changes, projector, vlm_dir)
        write_record(tmp, phase1_dir, vlm_dir, projector, changes)
    frozen = sum(changes.get(p, {}).get("tensors", 0) for p in ("vision_tower", "image_newline"))
    print(f"composed Phase 2 VLM from {vlm_dir} -> {out_dir} ({frozen} vision tensors bit-identical to Phase 1; "
          f"changed: {summary(changes)})")
    return frozen


def summary(changes: dict) -> str:
    return ", ".join(f"{part} {len(c['changed'])}/{c['tensors']}" for part, c in changes.items())


def write_record(out_dir, phase1_dir, trained_dir, projector: str, changes: dict) -> None:
    """compose.json: where the model came from and, part by part, every tensor that changed from Phase 1."""
    record = {"phase1": str(phase1_dir), "trained": str(trained_dir), "projector": projector, "parts": changes}
    (Path(out_dir) / "compose.json").write_text(json.dumps(record, indent=1) + "\n")


def add_arguments(p) -> None:
    p.add_argument("--phase1", required=True, type=Path, help="Phase 1 VLM checkpoint directory")
    p.add_argument("--llm", required=True, type=Path, help="trained (merged) language model directory, or the last "
                   "stage's merged VLM when the whole VLM was trained (vision.train)")
    p.add_argument("--out", required=True, type=Path, help="output directory of the Phase 2 VLM")


def main(args, cfg) -> None:
    compose(args.phase1, args.llm, args.out, cfg["vision"])

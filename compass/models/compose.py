"""`compass compose`: the Phase 2 VLM = Phase 1's vision tower and projector + the trained LLM.

The result is a standard `LlavaOnevisionForConditionalGeneration` checkpoint with Phase 1's
processor and chat template, written by checkpoint.save_vlm (names transformers and vLLM both
load). Before the output is put in place, every vision-tower and projector tensor is checked to be
bit-identical to Phase 1's.
"""

from __future__ import annotations

from pathlib import Path

from compass.io import CompassError, atomic_output
from compass.models.checkpoint import VLM_TYPES, compare_frozen, model_type, save_vlm
from compass.models.vlm import load_vlm, put_llm

_SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "head_dim", "vocab_size")


def check_llm_fits(llm_config, text_config, llm_dir) -> None:
    for key in _SHAPE_KEYS:
        if getattr(llm_config, key, None) != getattr(text_config, key, None):
            raise CompassError(
                f"{llm_dir}: {key}={getattr(llm_config, key, None)} does not match Phase 1's text model ({getattr(text_config, key, None)})"
            )


def compose(phase1_dir, llm_dir, out_dir) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

    if model_type(llm_dir, "llm") in VLM_TYPES:
        raise CompassError(f"llm: {llm_dir} is a VLM checkpoint; compose takes the trained language model")
    vlm = load_vlm(phase1_dir)
    check_llm_fits(AutoConfig.from_pretrained(llm_dir), vlm.config.text_config, llm_dir)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=vlm.model.language_model.embed_tokens.weight.dtype)
    put_llm(vlm, llm)
    del llm
    processor = AutoProcessor.from_pretrained(phase1_dir)
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(vlm, processor, tmp)
        n = compare_frozen(phase1_dir, tmp)
    print(f"composed Phase 2 VLM -> {out_dir} ({n} vision/projector tensors bit-identical to Phase 1)")
    return n


def add_arguments(p) -> None:
    p.add_argument("--phase1", required=True, type=Path, help="Phase 1 VLM checkpoint directory")
    p.add_argument("--llm", required=True, type=Path, help="trained (merged) language model directory")
    p.add_argument("--out", required=True, type=Path, help="output directory of the Phase 2 VLM")


def main(args, cfg) -> None:
    compose(args.phase1, args.llm, args.out)

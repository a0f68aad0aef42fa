"""`compass extract-llm`: take the language model out of a Phase 1 LLaVA-OneVision checkpoint.

SFT and DPO train the LLM alone (the vision tower and projector stay frozen and untouched); this
writes it as a plain causal-LM checkpoint (`LlamaForCausalLM` for llm-jp-4) with the Phase 1
tokenizer and chat template, so TRL and PEFT see an ordinary language model. The tensor mapping
both ways (llm_from_vlm, put_llm) lives here; compose and assemble-phase1 put an LLM back with it.
"""

from __future__ import annotations

from pathlib import Path

from compass.io import CompassError, atomic_output
from compass.models.checkpoint import VLM_TYPES, model_type


def load_vlm(path, dtype="auto"):
    from transformers import AutoModelForImageTextToText

    kind = model_type(path, "phase1.path")
    if kind not in VLM_TYPES:
        raise CompassError(f"{path}: model_type {kind!r} is not a LLaVA-OneVision VLM ({', '.join(sorted(VLM_TYPES))})")
    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)


def llm_state_dict(vlm, base_prefix: str = "model") -> dict:
    """The VLM's language-model tensors under the causal LM's names (`model.*`, `lm_head.*` for Llama)."""
    state = {f"{base_prefix}.{k}": v for k, v in vlm.model.language_model.state_dict().items()}
    state.update({f"lm_head.{k}": v for k, v in vlm.lm_head.state_dict().items()})
    return state


def llm_from_vlm(vlm):
    """The VLM's language model as a causal LM (`LlamaForCausalLM` for llm-jp-4) holding the VLM's own
    tensors (assign=True: no second copy of the 8B weights; meta tensors stay meta)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = vlm.model.language_model.embed_tokens.weight.dtype
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(vlm.config.text_config, dtype=dtype)
    llm.load_state_dict(llm_state_dict(vlm, llm.base_model_prefix), assign=True, strict=True)
    llm.generation_config = vlm.generation_config
    return llm


def put_llm(vlm, llm):
    """The VLM with its language model and lm_head replaced by the causal LM's tensors (assign=True:
    no copies; works on meta tensors). The vision tower and projector are left as they are."""
    vlm.model.language_model.load_state_dict(llm.base_model.state_dict(), assign=True, strict=True)
    vlm.lm_head.load_state_dict(llm.get_output_embeddings().state_dict(), assign=True, strict=True)
    return vlm


def extract_llm(vlm_dir, out_dir) -> None:
    from transformers import AutoTokenizer

    llm = llm_from_vlm(load_vlm(vlm_dir))
    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    with atomic_output(out_dir, directory=True) as tmp:
        llm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    print(f"extracted {type(llm).__name__} ({sum(p.numel() for p in llm.parameters()) / 1e6:.1f}M parameters) -> {out_dir}")


def add_arguments(p) -> None:
    p.add_argument("--phase1", required=True, type=Path, help="Phase 1 VLM checkpoint directory")
    p.add_argument("--out", required=True, type=Path, help="output directory of the language model")


def main(args, cfg) -> None:
    extract_llm(args.phase1, args.out)

"""The language model inside a LLaVA-OneVision VLM, both ways: `llm_from_vlm` takes it out as a plain
causal LM (compass extract-llm, compass/models/extract_llm.py) and `put_llm` puts a trained one back
(compose, assemble-phase1). The tensors are assigned, not copied.
"""

from __future__ import annotations

from compass.io import CompassError
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

"""The real shapes (llm-jp-4-8b, SigLIP so400m/14-384) through the product's tensor mappings on the
meta device (no memory): assemble (parts -> VLM), extract (VLM -> LlamaForCausalLM), the LoRA merge
(r 32, all-linear, PEFT) and compose (LLM -> VLM, names as save_vlm writes them)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import shared_file

LAYERS, HIDDEN, KV, FFN, VOCAB = 32, 4096, 1024, 14336, 196_608


def _config(name, cls):
    data = json.loads(shared_file("model_configs", name).read_text())
    return cls(**{k: v for k, v in data.items() if not k.startswith("_") and k not in ("model_type", "architectures")})


def _params(tensors) -> int:
    return sum(t.numel() for t in tensors.values())


@pytest.fixture(scope="module")
def meta_vlm():
    """The Phase 1 VLM at the real shapes, built by assemble's mapping from meta parts."""
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from compass.models.assemble_phase1 import check_projector_shapes, llava_config, llava_projector, vlm_from_parts

    text = _config("llm-jp-4-8b.llama-shape.json", LlamaConfig)
    vision = _config("siglip2-so400m-patch14-384.vision-shape.json", SiglipVisionConfig)
    with torch.device("meta"):
        llm = LlamaForCausalLM(text).to(torch.bfloat16)
        tower = SiglipVisionModel(vision).to(torch.bfloat16)
    mm_projector = {  # LLaVA training's mm_projector.bin at these shapes
        "model.mm_projector.0.weight": torch.empty(HIDDEN, vision.hidden_size, device="meta", dtype=torch.bfloat16),
        "model.mm_projector.0.bias": torch.empty(HIDDEN, device="meta", dtype=torch.bfloat16),
        "model.mm_projector.2.weight": torch.empty(HIDDEN, HIDDEN, device="meta", dtype=torch.bfloat16),
        "model.mm_projector.2.bias": torch.empty(HIDDEN, device="meta", dtype=torch.bfloat16),
        "model.image_newline": torch.empty(HIDDEN, device="meta", dtype=torch.bfloat16),
    }
    projector = llava_projector(mm_projector, "mm_projector.bin")
    check_projector_shapes(projector, vision.hidden_size, text.hidden_size, "mm_projector.bin")
    config = llava_config(vision, text, image_token_id=VOCAB - 1, video_token_id=None, vision_feature_layer=-1)
    return vlm_from_parts(tower, projector, llm, config)


def test_the_vlm_at_real_shapes(meta_vlm):
    from compass.models.checkpoint import FROZEN_PREFIXES, vlm_state_dict

    state = vlm_state_dict(meta_vlm)
    assert all(t.is_meta for t in state.values())
    assert round(_params(state) / 1e9, 2) == 9.04
    assert state["language_model.model.embed_tokens.weight"].shape == state["language_model.lm_head.weight"].shape == (VOCAB, HIDDEN)
    assert state["multi_modal_projector.linear_1.weight"].shape == (HIDDEN, 1152)
    assert sum(k.startswith(FROZEN_PREFIXES) for k in state) == 453


def test_extract_merge_and_compose_at_real_shapes(meta_vlm):
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import LlamaForCausalLM

    from compass.models.checkpoint import FROZEN_PREFIXES, vlm_state_dict
    from compass.models.compose import check_llm_fits
    from compass.models.vlm import llm_from_vlm, put_llm
    from compass.train.common import lora_config

    # extract: the VLM's language model as a LlamaForCausalLM
    llm = llm_from_vlm(meta_vlm)
    base = llm.state_dict()
    assert type(llm) is LlamaForCausalLM
    assert len(base) == 291 and round(_params(base) / 1e9, 2) == 8.59
    shapes = {k: tuple(t.shape) for k, t in base.items()}

    # merge: an r-32 all-linear adapter (SFT's LoraConfig) is named onto the base and folds back into its tensors
    sec = {"lora": {"r": 32, "alpha": 64, "dropout": 0.05, "target_modules": "all-linear"}}
    with torch.device("meta"):
        adapter = get_peft_model(llm, lora_config(sec))
    saved = get_peft_model_state_dict(adapter)  # what SFT writes into adapter_model.safetensors
    assert len(saved) == LAYERS * 7 * 2
    assert saved["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (32, HIDDEN)
    assert saved["base_model.model.model.layers.31.self_attn.k_proj.lora_B.weight"].shape == (KV, 32)
    assert saved["base_model.model.model.layers.5.mlp.down_proj.lora_A.weight"].shape == (32, FFN)
    assert not any("lm_head" in k or "embed_tokens" in k for k in saved)
    result = set_peft_model_state_dict(adapter, saved)  # what PeftModel.from_pretrained does with them
    assert not result.unexpected_keys and not [k for k in result.missing_keys if "lora_" in k]
    merged = adapter.merge_and_unload()  # what compass merge does
    assert {k: tuple(t.shape) for k, t in merged.state_dict().items()} == shapes

    # compose: the merged LLM back into the VLM, under the names save_vlm writes
    check_llm_fits(merged.config, meta_vlm.config.text_config, "merged")
    state = vlm_state_dict(put_llm(meta_vlm, merged))
    frozen = [k for k in state if k.startswith(FROZEN_PREFIXES)]
    assert len(state) == 744 and len(frozen) == 453 and len(state) - len(frozen) == 291
    assert round(_params(state) / 1e9, 2) == 9.04
    assert all(k.startswith(("vision_tower.vision_model.", "multi_modal_projector.", "image_newline", "language_model.model.",
                             "language_model.lm_head.")) for k in state)

"""Phase 1 demo build, LLM extraction, merge parity and recomposition on tiny real-class models."""

from __future__ import annotations

import json

import pytest
import torch

from compass.io import CompassError


def test_phase1_demo_is_the_real_layout(phase1_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(phase1_dir)
    processor = AutoProcessor.from_pretrained(phase1_dir)
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert type(model.model.vision_tower).__name__ == "SiglipVisionModel"
    assert type(model.model.language_model).__name__ == "LlamaModel"
    proj = model.model.multi_modal_projector
    assert [type(m).__name__ for m in (proj.linear_1, proj.act, proj.linear_2)] == ["Linear", "GELUActivation", "Linear"]
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    # digits are single tokens: the arithmetic is learnable
    assert processor.tokenizer.tokenize("123") == ["1", "2", "3"]


def test_extracted_llm_has_the_vlm_language_weights(phase1_dir, phase1_llm):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    vlm = AutoModelForImageTextToText.from_pretrained(phase1_dir)
    llm = AutoModelForCausalLM.from_pretrained(phase1_llm)
    assert type(llm).__name__ == "LlamaForCausalLM"
    for name, tensor in vlm.model.language_model.state_dict().items():
        assert torch.equal(tensor, llm.model.state_dict()[name]), name
    assert torch.equal(vlm.lm_head.weight, llm.lm_head.weight)


def _random_adapter(base_dir, out_dir, scale=0.05):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=4, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=scale)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)


def test_merge_passes_parity_and_changes_the_model(phase1_llm, tmp_path, demo_config):
    from compass.models.merge import merge

    _random_adapter(phase1_llm, tmp_path / "adapter")
    report = merge(phase1_llm, tmp_path / "adapter", tmp_path / "merged", demo_config["merge"])
    assert report["max_abs_logit_diff"] <= report["atol"]
    assert json.loads((tmp_path / "merged" / "merge_parity.json").read_text()) == report
    from compass.models.checkpoint import iter_tensors

    base = dict(iter_tensors(phase1_llm))
    merged = dict(iter_tensors(tmp_path / "merged"))
    assert any(not torch.equal(base[k], merged[k]) for k in base)


def test_merge_parity_failure_fails_the_stage_and_writes_nothing(phase1_llm, tmp_path, demo_config):
    from compass.models.merge import merge

    _random_adapter(phase1_llm, tmp_path / "adapter")
    strict = dict(demo_config["merge"], atol_fp32=1e-12)
    with pytest.raises(CompassError, match="parity check failed"):
        merge(phase1_llm, tmp_path / "adapter", tmp_path / "merged", strict)
    assert not (tmp_path / "merged").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]


def test_compose_keeps_vision_bit_identical(phase1_dir, phase1_llm, tmp_path, demo_config):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from compass.models.checkpoint import compare_frozen
    from compass.models.compose import compose
    from compass.models.merge import merge

    _random_adapter(phase1_llm, tmp_path / "adapter")
    merge(phase1_llm, tmp_path / "adapter", tmp_path / "merged", demo_config["merge"])
    compose(phase1_dir, tmp_path / "merged", tmp_path / "vlm")
    assert compare_frozen(phase1_dir, tmp_path / "vlm") > 10
    vlm = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm")
    llm = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    for name, tensor in llm.model.state_dict().items():
        assert torch.equal(vlm.model.language_model.state_dict()[name], tensor), name


def test_compare_frozen_catches_a_changed_projector(phase1_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from compass.models.checkpoint import compare_frozen

    shutil.copytree(phase1_dir, tmp_path / "vlm")
    tensors = load_file(tmp_path / "vlm" / "model.safetensors")
    key = next(k for k in tensors if "multi_modal_projector" in k)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += 1e-3
    save_file(tensors, tmp_path / "vlm" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CompassError, match=key.replace(".", r"\.")):
        compare_frozen(phase1_dir, tmp_path / "vlm")


def test_compose_refuses_a_mismatched_llm(phase1_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from compass.models.compose import compose

    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "llm")
    with pytest.raises(CompassError, match="does not match Phase 1"):
        compose(phase1_dir, tmp_path / "llm", tmp_path / "vlm")
    assert not (tmp_path / "vlm").exists()


# What vLLM's llava_onevision loader reads (its own module names; vllm/model_executor/models/llava_onevision.py).
VLLM_PREFIXES = ("vision_tower.vision_model.", "multi_modal_projector.", "image_newline", "language_model.model.",
                 "language_model.lm_head.")


def test_vlm_tensor_name_maps_every_form_to_the_vllm_one():
    from compass.models.checkpoint import vlm_tensor_name

    forms = {
        # transformers 5.23 in memory / as it saves / llava-hf (= vLLM's) -> written name
        "model.vision_tower.embeddings.patch_embedding.weight": "vision_tower.vision_model.embeddings.patch_embedding.weight",
        "vision_tower.encoder.layers.0.mlp.fc1.weight": "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        "model.vision_tower.vision_model.post_layernorm.bias": "vision_tower.vision_model.post_layernorm.bias",
        "model.multi_modal_projector.linear_1.weight": "multi_modal_projector.linear_1.weight",
        "model.image_newline": "image_newline",
        "model.language_model.layers.0.self_attn.q_proj.weight": "language_model.model.layers.0.self_attn.q_proj.weight",
        "lm_head.weight": "language_model.lm_head.weight",
    }
    for name, written in forms.items():
        assert vlm_tensor_name(name) == written, name
        assert vlm_tensor_name(written) == written  # the written form is a fixed point


def _image_prompt(processor, text="How many apples are there?"):
    import numpy as np
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return image, processor.apply_chat_template(messages, add_generation_prompt=True)


def _image_inputs(processor):
    image, prompt = _image_prompt(processor)
    return processor(images=image, text=prompt, return_tensors="pt")


def test_save_vlm_writes_vllm_names_and_reloads_identically(phase1_dir, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from compass.models.checkpoint import iter_tensors, save_vlm

    model = AutoModelForImageTextToText.from_pretrained(phase1_dir).eval()
    processor = AutoProcessor.from_pretrained(phase1_dir)
    inputs = _image_inputs(processor)
    with torch.inference_mode():
        before = model(**inputs).logits
    save_vlm(model, processor, tmp_path / "vlm")
    names = [name for name, _ in iter_tensors(tmp_path / "vlm")]
    assert len(names) == len(model.state_dict())
    assert all(name.startswith(VLLM_PREFIXES) for name in names), [n for n in names if not n.startswith(VLLM_PREFIXES)][:3]
    assert any(name.startswith("vision_tower.vision_model.encoder.") for name in names)
    reloaded, info = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm", output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched tensor
    with torch.inference_mode():
        after = reloaded.eval()(**inputs).logits
    assert torch.equal(before, after)


def test_compare_frozen_reads_any_naming(phase1_dir, tmp_path):
    """A Phase 1 saved the way transformers 5.23 saves it (vision_tower.embeddings…) compares with
    one written by save_vlm (vision_tower.vision_model.embeddings…)."""
    from transformers import AutoModelForImageTextToText

    from compass.models.checkpoint import compare_frozen, iter_tensors

    loaded = AutoModelForImageTextToText.from_pretrained(phase1_dir)
    built = AutoModelForImageTextToText.from_config(loaded.config)  # built, not loaded: saved as transformers does
    built.load_state_dict(loaded.state_dict())
    built.save_pretrained(tmp_path / "plain")
    plain = [name for name, _ in iter_tensors(tmp_path / "plain")]
    assert not any(name.startswith("vision_tower.vision_model.") for name in plain)  # what vLLM refuses
    assert compare_frozen(tmp_path / "plain", phase1_dir) == compare_frozen(phase1_dir, phase1_dir) > 10


def test_composed_vlm_answers_in_vllm_as_in_transformers(phase1_dir, phase1_llm, tmp_path, monkeypatch):
    """What compass publishes serves as is: vLLM loads the final VLM and, greedy, gives transformers' tokens."""
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from vllm import LLM, SamplingParams

    from compass.models.compose import compose

    compose(phase1_dir, phase1_llm, tmp_path / "vlm")
    processor = AutoProcessor.from_pretrained(tmp_path / "vlm")
    image, prompt = _image_prompt(processor)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm").eval()
    expected = model.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
    # (an image-only model: no video to profile for)
    engine = LLM(str(tmp_path / "vlm"), dtype="float32", enforce_eager=True, kv_cache_memory_bytes=64 << 20,
                 limit_mm_per_prompt={"image": 1, "video": 0})
    out = engine.generate({"prompt": prompt, "multi_modal_data": {"image": image}}, SamplingParams(temperature=0, max_tokens=8))
    assert list(out[0].outputs[0].token_ids) == expected

"""Phase 1 as users have it: a Hub LLaVA-OneVision checkpoint, or parts (SigLIP vision tower, LLaVA
mm_projector.bin, LLM, tokenizer) assembled into the stock layout (`compass assemble-phase1`)."""

from __future__ import annotations

import pytest
import torch

from compass.io import CompassError

from conftest import REPO, planned_jobs, snakemake

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8)
TEXT_HIDDEN = 64
CHAT_TEMPLATE = (  # LLM-jp-4-VL's way of writing an image part
    "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<|image_start|><|image_pad|><|image_end|>{% else %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|start|>assistant<|message|>{% endif %}"
)


def _tokenizer(specials):
    """A character-level tokenizer with the given special tokens (no image_token attribute)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ?.,")
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(["<unk>", *chars])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|end|>", pad_token="<|end|>",
                                 additional_special_tokens=["<|start|>", "<|message|>", *specials])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _llm(path, vocab_size, dtype=torch.float32, head=True):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    (LlamaForCausalLM if head else LlamaModel)(cfg).to(dtype).save_pretrained(path)


def _projector(path, prefix="model.", newline=True, vision_hidden=VISION["hidden_size"], extra=None):
    tensors = {
        f"{prefix}mm_projector.0.weight": torch.randn(TEXT_HIDDEN, vision_hidden),
        f"{prefix}mm_projector.0.bias": torch.randn(TEXT_HIDDEN),
        f"{prefix}mm_projector.2.weight": torch.randn(TEXT_HIDDEN, TEXT_HIDDEN),
        f"{prefix}mm_projector.2.bias": torch.randn(TEXT_HIDDEN),
        **({f"{prefix}image_newline": torch.randn(TEXT_HIDDEN)} if newline else {}),
        **(extra or {}),
    }
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(tensors, path)
    else:
        torch.save(tensors, path)
    return tensors


@pytest.fixture(scope="module")
def parts(tmp_path_factory, phase1_dir):
    """Tiny parts: SiglipVisionModel and SiglipModel directories, projector files, LLMs, tokenizers."""
    from transformers import AutoTokenizer, SiglipConfig, SiglipModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("parts")
    SiglipVisionModel(SiglipVisionConfig(**VISION)).save_pretrained(root / "vision")
    SiglipModel(SiglipConfig(vision_config=VISION, text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                                    num_attention_heads=2, vocab_size=50))).save_pretrained(root / "siglip")
    demo_tok = AutoTokenizer.from_pretrained(phase1_dir)  # has <image> as its image_token
    _llm(root / "llm", len(demo_tok))
    demo_tok.save_pretrained(root / "llm")
    pad_tok = _tokenizer(["<|end|>", "<|image_start|>", "<|image_pad|>", "<|image_end|>"])
    pad_tok.save_pretrained(root / "tok_pad")
    _llm(root / "llm_bf16", len(pad_tok), dtype=torch.bfloat16)
    _tokenizer(["<|end|>"]).save_pretrained(root / "tok_none")
    _llm(root / "headless", len(demo_tok), head=False)
    _projector(root / "mm_projector.bin")
    _projector(root / "mm_projector.safetensors", prefix="", newline=False)
    return root


def _parts(root, **over):
    spec = {"vision_tower": str(root / "vision"), "projector": str(root / "mm_projector.bin"), "llm": str(root / "llm"),
            "tokenizer": None, "vision_feature_layer": -2}
    spec.update({k: str(root / v) if isinstance(v, str) and (root / v).exists() else v for k, v in over.items()})
    return spec


def _image_prompt(processor):
    import numpy as np
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many apples?"}]}]
    return processor(images=image, text=processor.apply_chat_template(messages, add_generation_prompt=True), return_tensors="pt")


def test_parts_assemble_into_the_stock_layout(parts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, SiglipVisionModel

    from compass.models.assemble_phase1 import assemble_parts
    from compass.models.checkpoint import iter_tensors

    n = assemble_parts(_parts(parts), tmp_path / "vlm")
    assert n == 3 + 16 * VISION["num_hidden_layers"] + 2 + 11 + 4 + 1  # embeddings, layers, post-LN, head; projector; newline
    vlm, info = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm", output_loading_info=True)
    assert not any(info.values()), info
    assert type(vlm).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert vlm.config.vision_feature_layer == -2 and vlm.config.vision_feature_select_strategy == "full"
    # every tensor where it belongs, bit for bit
    vision = SiglipVisionModel.from_pretrained(parts / "vision")
    for name, t in vision.state_dict().items():
        assert torch.equal(vlm.model.vision_tower.state_dict()[name], t), name
    source = torch.load(parts / "mm_projector.bin", weights_only=True)
    proj = vlm.model.multi_modal_projector
    assert torch.equal(proj.linear_1.weight, source["model.mm_projector.0.weight"])
    assert torch.equal(proj.linear_2.bias, source["model.mm_projector.2.bias"])
    assert torch.equal(vlm.model.image_newline, source["model.image_newline"])
    llm = AutoModelForCausalLM.from_pretrained(parts / "llm")
    processor = AutoProcessor.from_pretrained(tmp_path / "vlm")
    ids = processor.tokenizer("12 apples", return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(vlm(**ids).logits, llm(**ids).logits)
    # names vLLM loads; the processor expands the image token; the model answers
    assert all(k.startswith(("vision_tower.vision_model.", "multi_modal_projector.", "image_newline", "language_model."))
               for k, _ in iter_tensors(tmp_path / "vlm"))
    inputs = _image_prompt(processor)
    assert (inputs["input_ids"] == vlm.config.image_token_id).sum() > VISION["image_size"] ** 2 // VISION["patch_size"] ** 2
    out = vlm.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_parts_from_a_siglip_model_a_safetensors_projector_and_another_tokenizer(parts, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor, SiglipModel

    from compass.models.assemble_phase1 import assemble_parts

    spec = _parts(parts, vision_tower="siglip", projector="mm_projector.safetensors", llm="llm_bf16", tokenizer="tok_pad",
                  vision_feature_layer=-1)
    assemble_parts(spec, tmp_path / "vlm")
    vlm = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm")
    assert vlm.lm_head.weight.dtype == torch.bfloat16  # the LLM's dtype; the float32 sources are cast to it
    siglip = SiglipModel.from_pretrained(parts / "siglip")
    for name, t in siglip.vision_model.state_dict().items():
        assert torch.equal(vlm.model.vision_tower.state_dict()[name], t.to(torch.bfloat16)), name
    source = load_file(parts / "mm_projector.safetensors")
    assert torch.equal(vlm.model.multi_modal_projector.linear_1.weight, source["mm_projector.0.weight"].to(torch.bfloat16))
    assert not vlm.model.image_newline.any()  # none trained: zero
    processor = AutoProcessor.from_pretrained(tmp_path / "vlm")
    assert processor.image_token == "<|image_pad|>" == processor.tokenizer.image_token
    assert vlm.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    inputs = _image_prompt(processor)
    text = processor.tokenizer.decode(inputs["input_ids"][0]).replace(" ", "")  # a character-level vocabulary
    assert text.startswith("<|start|>user<|message|><|image_start|><|image_pad|><|image_pad|>")
    with torch.inference_mode():
        assert torch.isfinite(vlm(**inputs).logits.float()).all()


@pytest.mark.parametrize("over, message", [
    (dict(projector="bad_keys.bin"), r"holds \[.*mm_projector\.1\.weight.*expected LLaVA's 2-layer MLP"),
    (dict(projector="bad_shape.bin"), r"mm_projector\.0\.weight has shape \(64, 48\); expected \(64, 32\) \(vision hidden 32 -> text hidden 64\)"),
    (dict(projector="missing.bin"), r"phase1\.parts\.projector: file not found"),
    (dict(vision_tower="llm"), r"vision_tower: .* model_type 'llama'; expected a SigLIP vision tower"),
    (dict(llm="vision"), r"llm: .* model_type 'siglip_vision_model'; expected a causal language model"),
    (dict(llm="headless", tokenizer="llm"), r"llm: .* has no weights for \['lm_head\.weight'\]"),
    (dict(tokenizer="tok_none"), r"tokenizer: .* has no image token"),
])
def test_any_other_layout_fails_with_one_line(parts, tmp_path, over, message):
    from compass.models.assemble_phase1 import assemble_parts

    _projector(parts / "bad_keys.bin", extra={"model.mm_projector.1.weight": torch.zeros(1)})
    _projector(parts / "bad_shape.bin", vision_hidden=48)
    spec = _parts(parts, **over)
    if over.get("tokenizer") == "tok_none":
        spec["llm"] = str(parts / "llm_bf16")  # its vocabulary fits the tokenizer
    with pytest.raises(CompassError, match=message) as err:
        assemble_parts(spec, tmp_path / "vlm")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "vlm").exists()


def test_a_hub_checkpoint_is_rewritten_with_names_vllm_loads(phase1_dir, tmp_path):
    """(A local directory stands in for the cached snapshot of a Hub id.)"""
    from transformers import AutoModelForImageTextToText

    from compass.models.assemble_phase1 import assemble_hub
    from compass.models.checkpoint import compare_frozen, iter_tensors

    loaded = AutoModelForImageTextToText.from_pretrained(phase1_dir)
    built = AutoModelForImageTextToText.from_config(loaded.config)
    built.load_state_dict(loaded.state_dict())
    built.save_pretrained(tmp_path / "hub")  # transformers' own naming: vision_tower.embeddings…
    for f in phase1_dir.iterdir():
        if not f.name.startswith(("model", "config", "compass-manifest")):
            (tmp_path / "hub" / f.name).write_bytes(f.read_bytes())  # processor and tokenizer files
    assert assemble_hub(str(tmp_path / "hub"), tmp_path / "vlm") > 10
    assert compare_frozen(tmp_path / "hub", tmp_path / "vlm") > 10
    assert any(k.startswith("vision_tower.vision_model.") for k, _ in iter_tensors(tmp_path / "vlm"))


def test_a_hub_id_that_is_not_a_vlm_or_not_fetched_fails_with_one_line(parts, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from compass.models.assemble_phase1 import assemble_hub

    with pytest.raises(CompassError, match=r"phase1\.hf_id: .* model_type 'llama'; expected a LLaVA-OneVision VLM"):
        assemble_hub(str(parts / "llm"), tmp_path / "vlm")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache" / "hub"))
    with pytest.raises(CompassError, match=r"phase1\.hf_id: no-such-org/no-such-vlm is neither .* fetch_model") as err:
        assemble_hub("no-such-org/no-such-vlm", tmp_path / "vlm")
    assert "\n" not in str(err.value)


def test_cli_assembles_from_config_and_reports_errors_in_one_line(parts, tmp_path, capsys):
    import json

    from compass import cli

    spec = _parts(parts)
    params = json.dumps({"phase1": {"parts": spec}})
    assert cli.main(["assemble-phase1", "--params", params, "--out", str(tmp_path / "vlm")]) == 0
    assert (tmp_path / "vlm" / "config.json").is_file()
    capsys.readouterr()
    params = json.dumps({"phase1": {"parts": dict(spec, tokenizer=str(parts / "tok_none"))}})
    assert cli.main(["assemble-phase1", "--params", params, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("compass assemble-phase1: error: phase1.parts.tokenizer:"), err


@pytest.mark.parametrize("sets, message", [
    (["phase1.path=x", "phase1.hf_id=org/vlm"], "phase1.hf_id"),
    (["phase1.hf_id=org/vlm", "phase1.parts={vision_tower: a, projector: b, llm: c}"], "phase1.parts"),
    (["phase1.path=x", "phase1.parts={vision_tower: a, projector: b, llm: c}"], "phase1.parts"),
    (["phase1.hf_id=not an id"], "phase1.hf_id"),
    (["phase1.parts={vision_tower: a, llm: c}"], "'projector' is a required property"),
])
def test_config_takes_one_phase1_source(sets, message):
    from compass import config

    with pytest.raises(CompassError, match=message):
        config.load([REPO / "config" / "config.yaml"], sets)
    assert config.load([REPO / "config" / "config.yaml"], ["phase1.hf_id=org/vlm"])["phase1"]["parts"] is None


def test_dry_run_plans_the_fetch_and_the_assembly_with_nothing_downloaded(tmp_path):
    import json

    (tmp_path / "mm_projector.bin").write_bytes(b"")
    (tmp_path / "llm").mkdir()
    base = ["--configfile", str(REPO / "config" / "config.yaml"), "-n", "final_vlm", "--config"]
    hub = planned_jobs(snakemake(tmp_path, *base, "phase1=" + json.dumps({"hf_id": "org/phase1-vlm"})))
    assert hub["fetch_model"] == 1 and hub["assemble_phase1"] == 1 and "phase1_demo" not in hub
    parts = {"vision_tower": "google/siglip-so400m-patch14-384", "projector": "mm_projector.bin", "llm": "llm"}
    planned = planned_jobs(snakemake(tmp_path, *base, "phase1=" + json.dumps({"parts": parts})))
    assert planned["fetch_model"] == 1 and planned["assemble_phase1"] == 1 and "phase1_demo" not in planned
    missing = snakemake(tmp_path, *base, "phase1=" + json.dumps({"parts": dict(parts, projector="none.bin")}), check=False)
    assert missing.returncode != 0 and "compass: phase1.parts.projector: not found: none.bin" in missing.stderr

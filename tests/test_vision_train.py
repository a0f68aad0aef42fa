"""Training through the whole VLM (compass.train.vlm, vision.*): the stages' own trainers on image + text rows,
LoRA on the language model only, the projector frozen / trained / trained alone, image tokens counted and
checked, examples cut inside their image dropped; merge and compose of the trained VLM with exactly the
tensors that changed; AnyRes tiling saved with every checkpoint."""

from __future__ import annotations

import json

import pytest

from compass.data import demo
from compass.io import CompassError, read_json, read_jsonl, write_jsonl
from compass.teacher.distill import reference_response


def small(section: dict, **kw) -> dict:
    return {**section, "num_train_epochs": 1, "global_batch_size": 4, "micro_batch_size": 4, "logging_steps": 1,
            "save_steps": 50, "max_length": 512, **kw}


def vision_cfg(**kw) -> dict:
    return {"train": True, "projector": "frozen", "tiling": {"image_grid_pinpoints": None, "max_tiles": None}, **kw}


def write_image(path, seed: int, size=(64, 48)):
    """A small non-uniform picture (bars of seeded heights), as a chart would be."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    im = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for i in range(4):
        h = rng.randint(4, size[1] - 4)
        draw.rectangle([4 + i * 14, size[1] - h, 14 + i * 14, size[1] - 1], fill=(40 * i, 90, 200 - 40 * i))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


@pytest.fixture(scope="module")
def image_traces(tmp_path_factory):
    """Demo traces, every other one with an image (paths relative to the JSONL's directory, compass.images)."""
    root = tmp_path_factory.mktemp("vision_traces")
    train, _ = demo.generate(12, 1, seed=5)
    rows = []
    for i, r in enumerate(train):
        row = {**r, "response": reference_response(r)}
        if i % 2 == 0:
            write_image(root / "images" / f"{r['id']}.png", i, size=(64 + 8 * i, 48))
            row["images"] = [f"images/{r['id']}.png"]
        rows.append(row)
    path = root / "traces.jsonl"
    write_jsonl(path, rows)
    return path


def build_sft(phase1_dir, traces, out, demo_config, projector="frozen", **kw):
    from compass.train import sft

    return sft.build(traces, phase1_dir, out, small(demo_config["sft"], **kw), 0, demo_config["chat"],
                     vision_cfg(projector=projector))


def test_lora_targets_only_the_language_model(phase1_dir, image_traces, tmp_path, demo_config):
    """frozen: LoRA matrices on the language model's linear layers only, nothing of the vision tower or projector."""
    trainer, processor, record = build_sft(phase1_dir, image_traces, tmp_path / "c", demo_config)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all(".language_model." in n and "lora_" in n for n in names)
    lora_layers = {n.split(".lora_")[0].split("language_model.")[1] for n in names}
    assert {"layers.0.self_attn.q_proj", "layers.0.mlp.down_proj"} <= lora_layers
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n, _ in trainer.model.named_modules()
                   if "lora_" in n)
    assert record["vision"]["projector"] == "frozen"
    assert record["vision"]["trainable_tensors"]["projector"] == 0


@pytest.mark.parametrize("projector, lora", [("train", True), ("only", False)])
def test_projector_modes(projector, lora, phase1_dir, image_traces, tmp_path, demo_config):
    trainer, _, record = build_sft(phase1_dir, image_traces, tmp_path / "c", demo_config, projector=projector)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    proj = [n for n in names if "multi_modal_projector" in n]
    assert sorted(n.split("multi_modal_projector.")[1].split(".", 2)[-1] for n in proj) == [
        "linear_1.bias", "linear_1.weight", "linear_2.bias", "linear_2.weight"]
    assert any("lora_" in n for n in names) is lora
    assert not any("vision_tower" in n for n in names)
    assert record["vision"]["trainable_tensors"]["projector"] == 4


def test_batch_mixes_image_and_text_rows_with_no_loss_on_image_tokens(phase1_dir, image_traces, tmp_path, demo_config):
    """The stage's own collator batches an image row and a text-only row: the image row holds exactly the image
    tokens its image's size gives, none of them (nor any prompt token) is labelled, the completion is."""
    from compass import vision

    trainer, processor, record = build_sft(phase1_dir, image_traces, tmp_path / "c", demo_config)
    examples = [dict(trainer.train_dataset[i]) for i in (0, 1)]
    want = [e["image_tokens"] for e in examples]
    assert want[0] > 0 and want[1] == 0
    batch = trainer.data_collator(examples)
    image_id = vision.image_token_id(processor)
    got = (batch["input_ids"] == image_id).sum(1).tolist()
    assert got == want
    assert not ((batch["labels"] != -100) & (batch["input_ids"] == image_id)).any()
    completion = processor.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != -100])
    assert completion.startswith("<Problem>") and "\\boxed{" in completion
    assert batch["pixel_values"].shape[0] == 1  # one image in the batch
    assert record["vision"]["examples"]["with_images"] == 6


def test_image_token_mismatch_names_the_example(phase1_dir, image_traces, tmp_path, demo_config):
    trainer, _, _ = build_sft(phase1_dir, image_traces, tmp_path / "c", demo_config)
    example = dict(trainer.train_dataset[0])
    example["image_tokens"] += 1
    with pytest.raises(CompassError, match=f"example '{example['id']}': .* image tokens in the training batch"):
        trainer.data_collator([example])


def test_examples_cut_inside_their_image_are_dropped(phase1_dir, image_traces, tmp_path, demo_config):
    """max_length below the image rows' image spans: they are dropped and counted, the text rows train."""
    trainer, _, record = build_sft(phase1_dir, image_traces, tmp_path / "c", demo_config, max_length=60)
    kept = record["vision"]["examples"]
    assert kept["cut_in_image"] == 6 and kept["kept"] == 6 and kept["with_images"] == 0
    assert all(n == 0 for n in trainer.train_dataset["image_tokens"])


def test_trl_inserts_the_image_parts_as_prompt_messages_does(phase1_dir):
    """TRL puts one image part per image before the first user text: the prompt compass renders everywhere else."""
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    from compass import chat
    from compass.trace_format import prompt_messages

    processor = AutoProcessor.from_pretrained(phase1_dir)
    trl_side = prepare_multimodal_messages(prompt_messages("What is 2 + 3?", "en"), images=["x"])
    for part in trl_side[1]["content"]:
        part.pop("image", None)
    assert chat.render(processor, trl_side, {}) == chat.render(processor, prompt_messages("What is 2 + 3?", "en", n_images=1), {})


def test_tiling_from_config(phase1_dir):
    from transformers import AutoConfig, AutoProcessor

    from compass import vision

    processor = AutoProcessor.from_pretrained(phase1_dir)
    config = AutoConfig.from_pretrained(phase1_dir)
    grid = vision.apply_tiling(processor, config, {"max_tiles": 3})
    assert grid == [[32, 32], [32, 64], [32, 96], [64, 32], [96, 32]]
    assert config.image_grid_pinpoints == grid
    # a wide image now takes a 1 x 3 grid: more tokens than under the demo's 2 x 2 maximum
    assert vision.image_token_count(processor, [(96, 32)]) > vision.image_token_count(processor, [(32, 32)])
    with pytest.raises(CompassError, match="multiples of the vision tower's 32-pixel tile"):
        vision.apply_tiling(processor, config, {"image_grid_pinpoints": [[32, 40]]})
    with pytest.raises(CompassError, match="not both"):
        vision.pinpoints({"image_grid_pinpoints": [[32, 32]], "max_tiles": 2}, 32)


@pytest.mark.parametrize("projector", ["frozen", "train", "only"])
def test_train_merge_compose_names_the_changed_tensors(projector, phase1_dir, image_traces, tmp_path, demo_config):
    """Two steps through the stage, its adapter (with the processor and its tiling) merged into the VLM with the
    parity check, and compose: the vision tower bit-identical, the projector changed exactly when it trained,
    the language model unchanged when the projector trained alone -- all named in compose.json."""
    from compass.models.compose import compose
    from compass.models.merge import merge
    from compass.train import sft

    sec = small(demo_config["sft"], max_length=512, learning_rate=1e-2)
    vcfg = vision_cfg(projector=projector, tiling={"image_grid_pinpoints": None, "max_tiles": 2})
    sft.train(image_traces, phase1_dir, tmp_path / "adapter", tmp_path / "ckpt", sec, 0, demo_config["chat"], vcfg)
    saved = read_json(tmp_path / "adapter" / "processor_config.json")
    assert saved["image_processor"]["image_grid_pinpoints"] == [[32, 32], [32, 64], [64, 32]]
    log = read_json(tmp_path / "adapter" / "training_log.json")
    assert log["vision"]["projector"] == projector and log["global_step"] == 3
    merge(phase1_dir, tmp_path / "adapter", tmp_path / "merged", demo_config["merge"], demo_config["chat"])
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["image_grid_pinpoints"] == [[32, 32], [32, 64], [64, 32]]
    compose(phase1_dir, tmp_path / "merged", tmp_path / "vlm", vcfg)
    parts = read_json(tmp_path / "vlm" / "compose.json")["parts"]
    assert parts["vision_tower"]["changed"] == [] and parts["vision_tower"]["tensors"] > 0
    changed_projector = sorted(parts["projector"]["changed"])
    if projector == "frozen":
        assert changed_projector == []
    else:
        assert changed_projector == [f"multi_modal_projector.linear_{i}.{k}" for i in (1, 2) for k in ("bias", "weight")]
    assert bool(parts["language_model"]["changed"]) is (projector != "only")
    # the report's section names them
    from compass.report import render_changes

    page = render_changes(read_json(tmp_path / "vlm" / "compose.json"))
    assert f"<code>{projector}</code>" in page and ("multi_modal_projector.linear_1.weight" in page) is (projector != "frozen")
    # a frozen-projector compose refuses a VLM whose projector trained
    if projector == "train":
        with pytest.raises(CompassError, match="multi_modal_projector.* differs from Phase 1, but vision.projector is frozen"):
            compose(phase1_dir, tmp_path / "merged", tmp_path / "vlm2", vision_cfg(projector="frozen"))


@pytest.fixture(scope="module")
def image_pairs(image_traces):
    """DPO pairs of the image traces (the pairs stage's rows, with the traces' images), beside the traces."""
    from compass.pairs.build import pair_dict

    rows = read_jsonl(image_traces)
    pairs = [pair_dict(r, "tampered", r["response"].replace("\\boxed{", "\\boxed{1")) for r in rows]
    path = image_traces.parent / "pairs.jsonl"
    write_jsonl(path, pairs)
    return path


@pytest.mark.parametrize("projector", ["frozen", "train"])
def test_dpo_on_the_vlm(projector, phase1_dir, image_pairs, tmp_path, demo_config):
    """The DPO stage's own trainer on the VLM: chosen and rejected batched with the image twice, image tokens
    checked, LoRA on the language model (and the projector when it trains), reference = adapter disabled; two steps."""
    from compass import vision
    from compass.train import dpo

    sec = small(demo_config["dpo"], precompute_ref_log_probs=False)
    trainer, processor, record = dpo.build(image_pairs, phase1_dir, tmp_path / "c", sec, 0, demo_config["chat"],
                                           vision_cfg(projector=projector))
    assert trainer.ref_model is None
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert all(("lora_" in n and ".language_model." in n) or "multi_modal_projector" in n for n in names)
    assert any("multi_modal_projector" in n for n in names) is (projector == "train")
    examples = [dict(trainer.train_dataset[i]) for i in (0, 1)]
    want = [e["image_tokens"] for e in examples]
    batch = trainer.data_collator(examples)
    assert (batch["input_ids"] == vision.image_token_id(processor)).sum(1).tolist() == want * 2
    trainer.train()
    assert trainer.state.global_step == 3 and record["vision"]["examples"]["with_images"] == 6


def test_dpo_on_the_vlm_refuses_precomputed_reference(phase1_dir, image_pairs, tmp_path, demo_config):
    from compass.train import dpo

    with pytest.raises(CompassError, match="dpo.precompute_ref_log_probs"):
        dpo.build(image_pairs, phase1_dir, tmp_path / "c", small(demo_config["dpo"], precompute_ref_log_probs=True),
                  0, demo_config["chat"], vision_cfg())


def test_grpo_on_the_vlm(phase1_dir, image_traces, tmp_path, demo_config):
    """A GRPO stage on the VLM: image and text prompts, LoRA on the language model, rollouts that never sample the
    image token (TRL suppresses it), one step."""
    from compass.train import grpo

    sec = {**grpo.stage_section(demo_config["grpo"], "grpo_accuracy"), "bf16": False, "global_batch_size": 4,
           "micro_batch_size": 4, "num_generations": 2, "max_completion_length": 8, "max_length": 512, "max_steps": 1,
           "logging_steps": 1, "gradient_checkpointing": False}
    trainer, processor, record = grpo.build(image_traces, phase1_dir, tmp_path / "c", sec, 0, demo_config["chat"],
                                            "grpo_accuracy", vision_cfg())
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and ".language_model." in n for n in names)
    assert trainer.generation_config.suppress_tokens == [processor.image_token_id]
    assert sum(bool(x) for x in trainer.train_dataset["images"]) == 6
    assert record["data"]["cut_in_image"] == 0 and record["data"]["fit_max_length"] == 12
    trainer.train()
    assert trainer.state.global_step == 1


PROBE = (80, 48)  # the probe image's size


def probe_prompt(processor):
    from PIL import Image

    from compass.trace_format import prompt_messages

    image = Image.new("RGB", PROBE, (10, 200, 30))
    text = processor.apply_chat_template(prompt_messages("2 + 3?", "en", n_images=1), add_generation_prompt=True)
    return image, processor(text=[text], images=[[image]], return_tensors="pt", add_special_tokens=False)


@pytest.fixture(scope="module")
def image_loving_vlm(phase1_dir, tmp_path_factory):
    """The demo Phase 1 with the output rows of its first greedy token and the image token swapped: left alone it
    answers the probe prompt with the image token."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from compass.models.checkpoint import save_vlm

    model = AutoModelForImageTextToText.from_pretrained(phase1_dir)
    processor = AutoProcessor.from_pretrained(phase1_dir)
    _, enc = probe_prompt(processor)
    with torch.no_grad():
        first = int(model(**enc).logits[0, -1].argmax())
        image_id = model.config.image_token_id
        w = model.lm_head.weight
        w[[first, image_id]] = w[[image_id, first]].clone()
    out = tmp_path_factory.mktemp("image_loving") / "vlm"
    save_vlm(model, processor, out)
    return out


def test_hf_generation_never_emits_the_image_token(image_loving_vlm, tmp_path):
    """Left alone the model answers with the image token first; the engine's generation never samples it,
    and it checks each prompt's expanded image tokens against its image."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from compass import generation
    from compass.trace_format import prompt_messages

    processor = AutoProcessor.from_pretrained(image_loving_vlm)
    raw = AutoModelForImageTextToText.from_pretrained(image_loving_vlm)
    image, enc = probe_prompt(processor)
    with torch.inference_mode():
        plain = raw.generate(**enc, max_new_tokens=6, do_sample=False)[0, enc["input_ids"].shape[1]:]
    assert plain[0] == raw.config.image_token_id
    engine = generation.load("hf", image_loving_vlm, {})
    assert engine.banned == [("<image>", raw.config.image_token_id), ("<video>", raw.config.video_token_id)]
    new_ids = []
    model_generate = engine.model.generate

    def recording_generate(**kw):
        out = model_generate(**kw)
        new_ids.append(out[:, kw["input_ids"].shape[1]:])
        return out

    engine.model.generate = recording_generate
    out = engine.generate([prompt_messages("2 + 3?", "en", n_images=1), prompt_messages("2 + 3?", "en")],
                          generation.Sampling(max_new_tokens=6), images=[[image], []], ids=["a", "b"])
    assert len(out) == 2 and new_ids and new_ids[0].numel()
    assert not (new_ids[0] == raw.config.image_token_id).any()
    # a prompt whose expansion disagrees with the count its image gives is named by its example id
    with pytest.raises(CompassError, match="example 'a': .* image tokens in the hf prompt"):
        engine.expected_image_tokens = lambda images: [999, 0]
        engine.generate([prompt_messages("2 + 3?", "en", n_images=1), prompt_messages("2 + 3?", "en")],
                        generation.Sampling(max_new_tokens=2), images=[[image], []], ids=["a", "b"])


def test_vllm_generation_never_emits_the_image_token(image_loving_vlm):
    """vLLM's engine on the same checkpoint: its own sampling (no ban) starts with the image token; the engine's
    (bad_words) never samples it, and the image tokens vLLM expanded match the count compass expects."""
    from PIL import Image
    from vllm import SamplingParams

    from compass import generation
    from compass.trace_format import prompt_messages

    engine = generation.load("vllm", image_loving_vlm, {}, engine_kwargs={
        "enforce_eager": True, "kv_cache_memory_bytes": 64 << 20, "max_model_len": 1024})
    image = Image.new("RGB", PROBE, (10, 200, 30))
    image_id = engine.processor.image_token_id
    prompt = engine.prompts([prompt_messages("2 + 3?", "en", n_images=1)])[0]
    request = {"prompt_token_ids": engine.tokenizer(prompt, add_special_tokens=False).input_ids,
               "multi_modal_data": {"image": image}}
    plain = engine.llm.generate([request], SamplingParams(max_tokens=6, temperature=0.0, detokenize=False))
    assert plain[0].outputs[0].token_ids[0] == image_id
    recorded = []
    llm_generate = engine.llm.generate
    engine.llm.generate = lambda *a, **kw: recorded.extend(llm_generate(*a, **kw)) or recorded
    engine.generate([prompt_messages("2 + 3?", "en", n_images=1)], generation.Sampling(max_new_tokens=6),
                    images=[[image]], ids=["a"])
    ids = list(recorded[0].outputs[0].token_ids)
    assert ids and image_id not in ids
    assert sum(t == image_id for t in recorded[0].prompt_token_ids) == engine.expected_image_tokens([[image]])[0] > 0

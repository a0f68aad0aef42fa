"""SFT and DPO stages on a tiny model: thin over TRL/PEFT, LoRA only, loss on the assistant turn."""

from __future__ import annotations

import json

import pytest

from compass.data import demo
from compass.io import CompassError, write_jsonl
from compass.teacher.distill import reference_response
from compass.train import common


def small(section: dict, **kw) -> dict:
    return {**section, "num_train_epochs": 1, "global_batch_size": 8, "micro_batch_size": 4, "logging_steps": 1,
            "save_steps": 2, "max_length": 256, **kw}


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    train, _ = demo.generate(16, 1, seed=3)
    rows = [{**r, "response": reference_response(r)} for r in train]
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    write_jsonl(path, rows)
    return path


def test_gradient_accumulation_from_global_batch():
    assert common.gradient_accumulation(64, 2, 4, "sft") == 8
    with pytest.raises(CompassError, match="sft.global_batch_size=64 is not a multiple"):
        common.gradient_accumulation(64, 3, 1, "sft")


def test_sft_trains_lora_only_on_the_assistant_turn(traces, phase1_llm, tmp_path, demo_config):
    from trl import SFTConfig, SFTTrainer

    from compass.io import read_jsonl
    from compass.train import sft

    sec = small(demo_config["sft"])
    # The examples TRL sees: the prompt is masked out of the loss.
    from datasets import Dataset

    model, tok = common.load_llm(phase1_llm, bf16=False)
    ds = Dataset.from_list([sft.to_example(r) for r in read_jsonl(traces)])
    trainer = SFTTrainer(model=model, args=SFTConfig(**common.training_kwargs(sec, "sft", tmp_path / "c", 0), completion_only_loss=True),
                         train_dataset=ds, processing_class=tok, peft_config=common.lora_config(sec))
    row = trainer.train_dataset[0]
    mask = [label != -100 for label in row["labels"]]
    assert 0 < sum(mask) < len(mask) and not mask[0] and mask[-1]
    completion = tok.decode([t for t, m in zip(row["input_ids"], mask) if m])
    assert completion.startswith("<Problem>") and "\\boxed{" in completion and tok.eos_token in completion
    assert tok.decode([t for t, m in zip(row["input_ids"], mask) if not m]).endswith("<|im_start|>assistant\n")
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    sft.train(traces, phase1_llm, tmp_path / "adapter", tmp_path / "ckpt", sec, seed=0)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    log = json.loads((tmp_path / "adapter" / "training_log.json").read_text())
    assert log["global_step"] == 2 and any("loss" in e for e in log["log_history"])
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == sec["lora"]["r"]


def test_dpo_uses_the_adapter_disabled_model_as_reference(traces, phase1_llm, tmp_path, demo_config):
    from trl import DPOConfig, DPOTrainer

    from compass.pairs.build import build_pairs
    from compass.io import read_jsonl
    from compass.train import dpo

    pairs, _ = build_pairs(read_jsonl(traces), seed=0, weights=demo_config["pairs"]["weights"], require_tags=True)
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    sec = small(demo_config["dpo"])
    model, tok = common.load_llm(phase1_llm, bf16=False)
    from datasets import Dataset

    ds = Dataset.from_list([{k: p[k] for k in dpo.PAIR_FIELDS} for p in pairs])
    trainer = DPOTrainer(model=model, ref_model=None, args=DPOConfig(**common.training_kwargs(sec, "dpo", tmp_path / "c", 0), beta=0.1),
                         train_dataset=ds, processing_class=tok, peft_config=common.lora_config(sec))
    assert trainer.ref_model is None  # reference = same weights with the adapter disabled

    dpo.train(tmp_path / "pairs.jsonl", phase1_llm, tmp_path / "adapter", tmp_path / "ckpt", sec, seed=0)
    log = json.loads((tmp_path / "adapter" / "training_log.json").read_text())
    assert any("rewards/margins" in e for e in log["log_history"])

"""SFT and DPO stages on a tiny model: thin over TRL/PEFT, LoRA only, loss on the assistant turn;
packing keeps examples apart; the GPU settings fall back on a CPU without changing the loss."""

from __future__ import annotations

import json
import warnings

import pytest

from compass.data import demo
from compass.io import CompassError, read_jsonl, write_jsonl
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


@pytest.fixture(scope="module")
def pairs(traces, tmp_path_factory, demo_config):
    from compass.pairs.build import build_pairs

    rows, _ = build_pairs(read_jsonl(traces), seed=0, weights=demo_config["pairs"]["weights"], require_tags=True)
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.fixture(scope="module")
def phase2_config():
    """config/phase2.yaml over the embedded default, as Snakemake merges them."""
    from conftest import REPO

    from compass import config

    return config.load([REPO / "config" / "config.yaml", REPO / "config" / "phase2.yaml"])


def sft_trainer(sec, phase1_llm, traces, out, **overrides):
    """The SFT stage's own trainer (`compass.train.sft.build`, what `sft.train` trains) and tokenizer."""
    from compass.train import sft

    trainer, tokenizer, _ = sft.build(traces, phase1_llm, out, sec, 0, **overrides)
    return trainer, tokenizer


def test_gradient_accumulation_from_global_batch():
    assert common.gradient_accumulation(64, 2, 4, "sft") == 8
    with pytest.raises(CompassError, match="sft.global_batch_size=64 is not a multiple"):
        common.gradient_accumulation(64, 3, 1, "sft")


def test_sft_trains_lora_only_on_the_assistant_turn(traces, phase1_llm, tmp_path, demo_config):
    """The stage's own trainer: the loss falls on the assistant turn only (labels of the prompt masked, as
    the collator batches them) and only LoRA weights train."""
    from compass.train import sft

    sec = small(demo_config["sft"])
    trainer, tok = sft_trainer(sec, phase1_llm, traces, tmp_path / "c")
    batch = trainer.data_collator([trainer.train_dataset[0]])  # one example, as the loss sees it
    row = {k: batch[k][0].tolist() for k in ("input_ids", "labels")}
    mask = [label != -100 for label in row["labels"]]
    assert 0 < sum(mask) < len(mask) and not mask[0] and mask[-1]
    completion = tok.decode([t for t, m in zip(row["input_ids"], mask) if m])
    assert completion.startswith("<Problem>") and "\\boxed{" in completion and tok.eos_token in completion
    assert tok.decode([t for t, m in zip(row["input_ids"], mask) if not m]).endswith("<|im_start|>assistant\n")
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    # The stage end to end, packed: nothing processed is padding, and the log says so.
    sft.train(traces, phase1_llm, tmp_path / "adapter", tmp_path / "ckpt", {**sec, "packing": True}, seed=0)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    log = json.loads((tmp_path / "adapter" / "training_log.json").read_text())
    assert log["global_step"] >= 1 and any("loss" in e for e in log["log_history"])
    assert log["packing"] and common.real_token_fraction(log["log_history"]) == 1.0
    assert log["log_history"][-1]["real_tokens"] == log["log_history"][-1]["processed_tokens"] > 0
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == sec["lora"]["r"]


def test_packing_keeps_the_loss_on_completions_and_examples_apart(traces, phase1_llm, tmp_path, demo_config):
    """A packed sequence is its examples side by side: each keeps the labels it has alone (prompt masked,
    first token of each example masked too), and its logits and loss are those it has alone, so no token
    attends to another example (SDPA here: transformers builds a block-diagonal mask from the restarting
    positions; FlashAttention gets the same boundaries as cu_seq_lens)."""
    import torch

    sec = small(demo_config["sft"], packing=True, micro_batch_size=2, global_batch_size=2, max_length=512)
    packed, _ = sft_trainer(sec, phase1_llm, traces, tmp_path / "p")
    plain, _ = sft_trainer({**sec, "packing": False}, phase1_llm, traces, tmp_path / "u")
    alone = {tuple(r["input_ids"]): r["labels"] for r in plain.train_dataset}

    # A micro-batch of the two fullest packs, batched as the trainer batches them.
    fullest = sorted(packed.train_dataset, key=lambda r: len(r["seq_lengths"]), reverse=True)[:2]
    batch = packed.data_collator(fullest)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free: one flat row
    bounds = batch["cu_seq_lens_q"].tolist()
    assert len(bounds) >= 5 and bounds[0] == 0 and bounds[-1] == batch["input_ids"].shape[1]  # >= 4 examples
    model = packed.model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        loss = packed.compute_loss(model, batch)
        nll, n = 0.0, 0
        for a, b in zip(bounds, bounds[1:]):
            ids = batch["input_ids"][0, a:b]
            assert batch["position_ids"][0, a:b].tolist() == list(range(b - a))
            labels = alone[tuple(ids.tolist())]  # the same example, unpacked
            assert batch["labels"][0, a:b].tolist() == labels and labels[0] == -100 and labels[-1] != -100
            own = model(input_ids=ids[None]).logits[0]
            torch.testing.assert_close(logits[a:b], own, atol=1e-5, rtol=1e-5)
            target = torch.tensor(labels[1:])
            nll += torch.nn.functional.cross_entropy(own[:-1], target, ignore_index=-100, reduction="sum")
            n += int((target != -100).sum())
        torch.testing.assert_close(loss, nll / n, atol=1e-5, rtol=1e-5)

        # The check bites: with positions running on across the pack, the second example sees the first.
        a, b = bounds[1], bounds[2]
        leaky = model(input_ids=batch["input_ids"], position_ids=torch.arange(bounds[-1])[None]).logits[0]
        assert (leaky[a:b] - logits[a:b]).abs().max() > 1e-2


def production(section: dict, **kw) -> dict:
    """A phase2.yaml section at test sizes, dropout off so that two runs draw nothing at random."""
    return small(section, micro_batch_size=2, global_batch_size=2, max_length=512,
                 lora={**section["lora"], "dropout": 0.0}, **kw)


CPU_SETTINGS = {"attn_implementation": "sdpa", "use_liger_kernel": False, "bf16": False, "dataloader_num_workers": 0,
                "gradient_checkpointing": False}


def losses(trainer) -> list[float]:
    trainer.train()
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_sft_gpu_settings_fall_back_on_a_cpu_without_changing_the_loss(traces, phase1_llm, tmp_path, phase2_config):
    """phase2.yaml's SFT (FlashAttention-2, Liger, bf16, workers, checkpointing, packing) on a CPU falls
    back, with a warning for each, and trains to the same losses as the CPU settings."""
    import torch

    sec = production(phase2_config["sft"])
    assert sec["packing"] and sec["gradient_checkpointing"] and sec["bf16"] and sec["dataloader_num_workers"] > 0
    assert sec["attn_implementation"] != "sdpa" and sec["use_liger_kernel"]
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    with pytest.warns(UserWarning) as caught:
        fast, _ = sft_trainer(sec, phase1_llm, traces, tmp_path / "gpu", max_steps=2, save_strategy="no")
    said = " ".join(str(w.message) for w in caught)
    for key in ("attn_implementation", "use_liger_kernel", "bf16", "dataloader_num_workers"):
        assert f"sft.{key}" in said
    assert fast.model.config._attn_implementation == "sdpa" and not fast.args.use_liger_kernel
    assert fast.args.activation_checkpointing_kwargs == {"use_reentrant": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the CPU settings need no fallback
        cpu, _ = sft_trainer({**sec, **CPU_SETTINGS}, phase1_llm, traces, tmp_path / "cpu", max_steps=2,
                                save_strategy="no")
    got, want = losses(fast), losses(cpu)
    assert len(got) == 2 and got == pytest.approx(want, rel=1e-4)
    assert common.real_token_fraction(fast.state.log_history) == 1.0


def test_dpo_reference_precomputed_or_from_the_disabled_adapter_gives_the_same_loss(pairs, phase1_llm, tmp_path,
                                                                                      phase2_config):
    """The DPO stage's own trainer (`dpo.build`) with phase2.yaml's settings on a CPU (falling back): the
    policy is the model with a fresh LoRA adapter and no second model is held; the reference is that
    model with the adapter disabled, so its log-probs computed in each step, after the adapter has moved,
    equal those precomputed before training: the same losses."""
    from peft import PeftModel

    from compass.train import dpo

    def run(sec, out):
        trainer, _, _ = dpo.build(pairs, phase1_llm, out, sec, 0, max_steps=2, save_strategy="no")
        assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)
        return losses(trainer), trainer

    sec = production(phase2_config["dpo"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        each_step, trainer = run({**sec, "precompute_ref_log_probs": False}, tmp_path / "a")
        precomputed, trainer_pre = run({**sec, "precompute_ref_log_probs": True}, tmp_path / "b")
    assert "ref_chosen_logps" in trainer_pre.train_dataset.column_names
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    moved = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert moved and any(p.abs().max() > 0 for p in moved)  # the policy left the reference after step 1
    assert len(each_step) == 2 and each_step == pytest.approx(precomputed, rel=1e-4)
    assert 0 < common.real_token_fraction(trainer.state.log_history) < 1  # pairs padded to their longer side


def test_report_to_is_configuration_off_by_default(demo_config, tmp_path, monkeypatch):
    """Trainer metrics go to the trackers the section names (none in the embedded default); a tracker
    without its package, or TensorBoard without TENSORBOARD_LOGGING_DIR, stops the stage at once."""
    import transformers.integrations
    from conftest import REPO

    from compass import config
    from compass.train import dpo, sft

    assert demo_config["sft"]["report_to"] == demo_config["dpo"]["report_to"] == "none"
    assert sft.config(demo_config["sft"], 0, tmp_path).report_to == []
    monkeypatch.setattr(transformers.integrations, "is_wandb_available", lambda: False)
    with pytest.raises(CompassError, match="dpo.report_to: wandb needs its Python package"):
        dpo.config({**demo_config["dpo"], "report_to": "wandb"}, 0, tmp_path)
    for name in ("tensorboard", "mlflow"):
        monkeypatch.setattr(transformers.integrations, f"is_{name}_available", lambda: True)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    with pytest.raises(CompassError, match="sft.report_to: tensorboard needs TENSORBOARD_LOGGING_DIR"):
        sft.config({**demo_config["sft"], "report_to": "tensorboard"}, 0, tmp_path)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    sec = config.load([REPO / "config" / "config.yaml"], sets=["sft.report_to=[tensorboard, mlflow]"])["sft"]
    assert sft.config(sec, 0, tmp_path).report_to == ["tensorboard", "mlflow"]
    with pytest.raises(CompassError, match="report_to"):
        config.load([REPO / "config" / "config.yaml"], sets=["dpo.report_to=comet"])


def test_dpo_stage_writes_the_adapter_and_its_log(pairs, phase1_llm, tmp_path, demo_config):
    from compass.train import dpo

    sec = small(demo_config["dpo"])
    dpo.train(pairs, phase1_llm, tmp_path / "adapter", tmp_path / "ckpt", sec, seed=0)
    log = json.loads((tmp_path / "adapter" / "training_log.json").read_text())
    assert any("rewards/margins" in e for e in log["log_history"])
    assert 0 < common.real_token_fraction(log["log_history"]) <= 1

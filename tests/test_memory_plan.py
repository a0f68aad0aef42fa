"""The memory plan (compass/train/memory_plan.py): the production settings fit one 40 GB GPU at the
llm-jp-4-8b shape, and the plan agrees with the peak measured at small shapes on this CPU."""

from __future__ import annotations

import json
import random
import warnings

import pytest
from conftest import REPO, shared_file

from compass.train import memory_plan as mp

TOLERANCE = 0.15  # |plan / measured - 1| at the small shapes below (measured 0.93-1.07 over 13 shapes)


def test_llm_jp_4_8b_sft_4096_and_dpo_2048_each_fit_one_40gb_gpu():
    from compass import config

    shape = json.loads(shared_file("model_configs", "llm-jp-4-8b.llama-shape.json").read_text())
    s = mp.Shape.from_config(shape)
    assert round(s.params() / 1e9, 2) == 8.59 and s.lora_params(32) == 83_886_080
    cfg = config.load([REPO / "config" / "config.yaml", REPO / "config" / "phase2.yaml"])
    sft, dpo = mp.production_plans(shape, cfg)
    assert (sft["max_length"], dpo["max_length"]) == (4096, 2048)
    margin = 3 * mp.GiB  # CUDA context, allocator fragmentation
    for p in (sft, dpo):
        assert p["total"] + margin < 40e9, mp.table([p])
    # Without checkpointing SFT would not fit: the plan is not vacuous.
    sec = cfg["sft"]
    assert mp.stage_plan(s, "sft", sec["max_length"], sec["micro_batch_size"], checkpointing=False)["total"] > 40e9


def tiny_sft_step(hidden: int, layers: int, tokens: int, dropout: float):
    """One production-settings SFT step (packing, checkpointing, LoRA r 32 all-linear) on a random Llama."""
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from compass.train import sft

    vocab = 512
    shape = dict(hidden_size=hidden, intermediate_size=int(hidden * 2.6875), num_hidden_layers=layers,
                 num_attention_heads=hidden // 32, num_key_value_heads=max(1, hidden // 128), vocab_size=vocab,
                 max_position_embeddings=tokens, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape))
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=words, eos_token="w1", pad_token="w2")
    rng = random.Random(0)
    n = tokens // 4
    rows = [{"input_ids": [rng.randrange(3, vocab) for _ in range(n)], "completion_mask": [0] * 20 + [1] * (n - 20)}
            for _ in range(8)]
    from compass import config

    sec = {**config.load([])["sft"], "learning_rate": 1e-3, "num_train_epochs": 1, "global_batch_size": 1, "micro_batch_size": 1,
           "max_length": tokens, "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "optim": "adamw_torch",
           "weight_decay": 0.0, "bf16": False, "gradient_checkpointing": True, "attn_implementation": "sdpa",
           "use_liger_kernel": False, "dataloader_num_workers": 0, "logging_steps": 1, "save_steps": 100,
           "packing": True, "lora": {"r": 32, "alpha": 64, "dropout": dropout, "target_modules": "all-linear"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = sft.config(sec, 0, "unused", max_steps=1, save_strategy="no", disable_tqdm=True)
        trainer = sft.trainer(args, model, tok, Dataset.from_list(rows), sec)
    return trainer, mp.Shape.from_config(shape)


@pytest.mark.parametrize("hidden,layers,tokens,dropout", [
    (1536, 2, 512, 0.05),  # a layer's backward is the peak
    (256, 4, 1024, 0.0),  # the loss's backward is the peak
])
def test_plan_is_within_tolerance_of_the_measured_peak(hidden, layers, tokens, dropout):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU check (the loss kernel's torch fallback differs from Triton)")
    trainer, shape = tiny_sft_step(hidden, layers, tokens, dropout)
    measured = mp.measure_peak(trainer.train, list(trainer.model.parameters()) + list(trainer.model.buffers()))
    plan = mp.stage_plan(shape, "sft", tokens, 1, r=32, dropout=dropout > 0, bf16=False, checkpointing=True,
                         attention="sdpa", device="cpu")
    assert abs(plan["total"] / measured - 1) < TOLERANCE, (measured / 2**20, mp.table([plan | {"attention": "sdpa",
                                                                                          "max_length": tokens,
                                                                                          "micro_batch_size": 1}]))
    phase = "layer_backward" if hidden > 1000 else "loss_backward"
    assert plan["parts"][phase] > 0  # each case checks the moment it is meant to

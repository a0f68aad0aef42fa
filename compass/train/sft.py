"""`compass sft`: SFT with LoRA on the teacher traces — TRL's SFTTrainer over a PEFT adapter.

Rows become prompt-completion conversations (system + user -> assistant), so the loss falls on
the assistant turn only. Only the LLM is trained; the vision tower and projector stay in Phase 1.

With `sft.packing` the examples are packed into sequences of `max_length` tokens by TRL (best-fit
decreasing, padding-free): positions restart at each example, so FlashAttention's varlen kernel (or
SDPA's block-diagonal mask, which transformers builds from the positions) keeps every example to
itself, and the first label of each example is masked, so no loss crosses a boundary.
"""

from __future__ import annotations

from pathlib import Path

from compass.train import common

TRACE_FIELDS = ("id", "problem", "response")


def to_example(trace: dict, template_kwargs: dict | None = None) -> dict:
    """A trace row as TRL's conversational prompt-completion example (with the pinned chat-template
    arguments, which TRL passes to the template)."""
    from compass.trace_format import prompt_messages

    example = {
        "prompt": prompt_messages(trace["problem"], trace.get("lang")),
        "completion": [{"role": "assistant", "content": trace["response"]}],
    }
    if template_kwargs:
        example["chat_template_kwargs"] = template_kwargs
    return example


def config(sec: dict, seed: int, output_dir, **overrides):
    """The stage's SFTConfig: the section's training arguments, loss on the completions only, and TRL's
    best-fit-decreasing packing when `sec["packing"]` (`overrides` for a benchmark's step counts)."""
    from trl import SFTConfig

    kwargs = common.training_kwargs(sec, "sft", output_dir, seed)
    if sec["packing"] and "flash" not in common.attn_implementation(sec, "sft"):
        # Without a varlen kernel, a padding-free micro-batch is one row whose attention is computed in full
        # under a block-diagonal mask: quadratic in the whole micro-batch. One packed sequence a forward pass
        # (the same sequences an optimizer step) keeps that to max_length.
        kwargs["gradient_accumulation_steps"] *= kwargs["per_device_train_batch_size"]
        kwargs["per_device_train_batch_size"] = 1
    return SFTConfig(**{**kwargs, **overrides}, completion_only_loss=True, packing=sec["packing"],
                     packing_strategy="bfd")


def trainer(args, model, tokenizer, dataset, sec: dict):
    """TRL's SFTTrainer as the stage runs it: a fresh LoRA adapter on `model`; the share of real tokens
    logged (training_log.json and the stage log)."""
    from trl import SFTTrainer

    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=common.lora_config(sec),
                      callbacks=[common.real_tokens_callback()])


def build(traces_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None, **overrides):
    """(trainer, tokenizer, record for training_log.json) of the stage, as `train` runs it (`overrides` for
    a test's or a benchmark's step counts)."""
    from datasets import Dataset

    args = config(sec, seed, checkpoints_dir, **overrides)
    rows, model, tokenizer, kwargs = common.load_inputs(traces_path, TRACE_FIELDS, model_path, sec, "sft", args.bf16,
                                                        chat_cfg or {})
    dataset = Dataset.from_list([to_example(r, kwargs) for r in rows])
    record = {"chat_template_kwargs": kwargs, "packing": sec["packing"],
              "attn_implementation": model.config._attn_implementation}
    return trainer(args, model, tokenizer, dataset, sec), tokenizer, record


def train(traces_path, model_path, out_dir, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None) -> None:
    stage = build(traces_path, model_path, checkpoints_dir, sec, seed, chat_cfg)
    common.train_stage(*stage, sec, seed, chat_cfg or {}, (traces_path, model_path), checkpoints_dir, out_dir)


def add_arguments(p) -> None:
    p.add_argument("--traces", required=True, type=Path, help="teacher traces JSONL")
    p.add_argument("--model", required=True, type=Path, help="base language model directory (Phase 1 LLM)")
    p.add_argument("--out", required=True, type=Path, help="output adapter directory")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory for resume (default: OUT.checkpoints)")


def main(args, cfg) -> None:
    ckpt = args.checkpoints or Path(f"{args.out}.checkpoints")
    train(args.traces, args.model, args.out, ckpt, cfg["sft"], cfg["seed"], cfg["chat"])

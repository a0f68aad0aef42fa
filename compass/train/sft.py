"""`compass sft`: SFT with LoRA on the teacher traces — TRL's SFTTrainer over a PEFT adapter.

Rows become prompt-completion conversations (system + user -> assistant), so the loss falls on
the assistant turn only. Only the LLM is trained; the vision tower and projector stay in Phase 1.
"""

from __future__ import annotations

from pathlib import Path

from compass import chat
from compass.io import read_jsonl
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


def train(traces_path, model_path, out_dir, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    chat_cfg = chat_cfg or {}
    rows = read_jsonl(traces_path, required=TRACE_FIELDS)
    common.require_rows(rows, traces_path)
    args = SFTConfig(**common.training_kwargs(sec, "sft", checkpoints_dir, seed), completion_only_loss=True)
    model, tokenizer = common.load_llm(model_path, args.bf16, chat_cfg)
    kwargs = chat.template_kwargs(chat_cfg)
    dataset = Dataset.from_list([to_example(r, kwargs) for r in rows])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=common.lora_config(sec)
    )
    trainer.model.print_trainable_parameters()
    common.train_and_save(trainer, tokenizer, checkpoints_dir, out_dir,
                          fingerprint=common.run_fingerprint({**sec, "chat": chat_cfg}, seed, traces_path, model_path),
                          record={"chat_template_kwargs": kwargs})


def add_arguments(p) -> None:
    p.add_argument("--traces", required=True, type=Path, help="teacher traces JSONL")
    p.add_argument("--model", required=True, type=Path, help="base language model directory (Phase 1 LLM)")
    p.add_argument("--out", required=True, type=Path, help="output adapter directory")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory for resume (default: OUT.checkpoints)")


def main(args, cfg) -> None:
    ckpt = args.checkpoints or Path(f"{args.out}.checkpoints")
    train(args.traces, args.model, args.out, ckpt, cfg["sft"], cfg["seed"], cfg["chat"])

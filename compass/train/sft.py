"""`compass sft`: SFT with LoRA on the teacher traces — TRL's SFTTrainer over a PEFT adapter.

Rows become prompt-completion conversations (system + user -> assistant), so the loss falls on
the assistant turn only. Given the extracted LLM, only the LLM is trained; given the Phase 1 VLM
(`vision.train`), the stage trains through the whole VLM on image and text-only traces
(compass.train.vlm: LoRA on the language model, the vision tower frozen, the projector per `vision.projector`).

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


def build(traces_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          vision_cfg: dict | None = None, **overrides):
    """(trainer, tokenizer, record for training_log.json) of the stage, as `train` runs it (`overrides` for
    a test's or a benchmark's step counts). A VLM checkpoint with vision.train trains through the whole VLM (`build_vlm`)."""
    from datasets import Dataset

    if common.trains_vlm(model_path, vision_cfg):
        return build_vlm(traces_path, model_path, checkpoints_dir, sec, seed, chat_cfg or {}, vision_cfg or {}, **overrides)
    args = config(sec, seed, checkpoints_dir, **overrides)
    rows, model, tokenizer, kwargs = common.load_inputs(traces_path, TRACE_FIELDS, model_path, sec, "sft", args.bf16,
                                                        chat_cfg or {})
    dataset = Dataset.from_list([to_example(r, kwargs) for r in rows])
    record = {"chat_template_kwargs": kwargs, "packing": sec["packing"],
              "attn_implementation": model.config._attn_implementation}
    return trainer(args, model, tokenizer, dataset, sec), tokenizer, record


def build_vlm(traces_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict, vision_cfg: dict,
              **overrides):
    """The stage on a LLaVA-OneVision checkpoint (compass.train.vlm): image and text-only traces in one dataset,
    TRL's vision collator (checking each example's image tokens), LoRA on the language model, the projector as
    `vision.projector` says; the processor (with its tiling) is saved with the adapter."""
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from compass import chat
    from compass.io import CompassError, read_jsonl
    from compass.train import vlm

    if sec["packing"]:
        raise CompassError("sft.packing: TRL does not pack image examples; set sft.packing: false to train the VLM")
    # remove_unused_columns=False: TRL's vision signature would drop the template arguments, ids and token counts.
    args = config(sec, seed, checkpoints_dir, **{"remove_unused_columns": False, **overrides})
    rows = read_jsonl(traces_path, required=TRACE_FIELDS)
    common.require_rows(rows, traces_path)
    model, processor = vlm.load(model_path, common.model_kwargs(sec, "sft", args.bf16), chat_cfg, vision_cfg)
    kwargs = chat.template_kwargs(chat_cfg)
    rows, kept = vlm.prepare(rows, traces_path, processor, chat_cfg, sec["max_length"])
    common.require_rows(rows, f"{traces_path} (after dropping examples cut inside their image: {kept})")
    examples = [{**to_example(r, kwargs), "images": r["image_paths"], "id": r["id"], "image_tokens": r["image_tokens"]}
                for r in rows]
    collator = vlm.checked(DataCollatorForVisionLanguageModeling)(processor=processor, max_length=args.max_length,
                                                                  completion_only_loss=True)
    tr = SFTTrainer(model=model, args=args, train_dataset=vlm.dataset(examples), processing_class=processor,
                    data_collator=collator, peft_config=vlm.lora_config(sec, model, vision_cfg.get("projector", "frozen")),
                    callbacks=[common.real_tokens_callback()])
    record = {"chat_template_kwargs": kwargs, "packing": False, "attn_implementation": model.config._attn_implementation,
              "vision": vlm.record(tr.model, processor, vision_cfg, kept)}
    return tr, processor, record


def train(traces_path, model_path, out_dir, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          vision_cfg: dict | None = None) -> None:
    stage = build(traces_path, model_path, checkpoints_dir, sec, seed, chat_cfg, vision_cfg)
    common.train_stage(*stage, common.with_vision(sec, model_path, vision_cfg), seed, chat_cfg or {},
                       (traces_path, model_path), checkpoints_dir, out_dir)


def add_arguments(p) -> None:
    p.add_argument("--traces", required=True, type=Path, help="teacher traces JSONL")
    p.add_argument("--model", required=True, type=Path, help="base language model directory (Phase 1 LLM), "
                   "or the Phase 1 VLM to train through the whole VLM (vision.train)")
    p.add_argument("--out", required=True, type=Path, help="output adapter directory")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory for resume (default: OUT.checkpoints)")


def main(args, cfg) -> None:
    ckpt = args.checkpoints or Path(f"{args.out}.checkpoints")
    train(args.traces, args.model, args.out, ckpt, cfg["sft"], cfg["seed"], cfg["chat"], cfg["vision"])

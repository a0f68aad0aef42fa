"""`compass dpo`: DPO with LoRA on the preference pairs — TRL's DPOTrainer over a PEFT adapter.

The policy is the SFT-merged LLM plus a fresh adapter; the reference is the same model with the
adapter disabled, so no second copy of the weights is held in memory; with
`dpo.precompute_ref_log_probs` its log-probabilities are computed once, before training.

TRL 1.16 has no packing or padding-free path for DPO (its `padding_free` is disabled and falls back to
padding), so each micro-batch is padded to its longest chosen or rejected sequence; the share of real
tokens is logged as in SFT.
"""

from __future__ import annotations

from pathlib import Path

from compass.train import common

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def config(sec: dict, seed: int, output_dir, **overrides):
    """The stage's DPOConfig (`overrides` for a benchmark's step counts)."""
    from trl import DPOConfig

    return DPOConfig(**{**common.training_kwargs(sec, "dpo", output_dir, seed), **overrides}, beta=sec["beta"],
                     loss_type=sec["loss_type"], loss_weights=sec["loss_weights"],
                     precompute_ref_log_probs=sec["precompute_ref_log_probs"])


def trainer(args, model, tokenizer, dataset, sec: dict):
    """TRL's DPOTrainer as the stage runs it: a fresh LoRA adapter on `model`, the reference being `model`
    with the adapter disabled; the share of real tokens logged (training_log.json and the stage log)."""
    from trl import DPOTrainer

    return DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=common.lora_config(sec),
                      callbacks=[common.real_tokens_callback()])


def build(pairs_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          vision_cfg: dict | None = None, **overrides):
    """(trainer, tokenizer, record for training_log.json) of the stage, as `train` runs it (`overrides` for
    a test's or a benchmark's step counts). A VLM checkpoint trains through the whole VLM (`build_vlm`)."""
    from datasets import Dataset

    if common.trains_vlm(model_path, vision_cfg):
        return build_vlm(pairs_path, model_path, checkpoints_dir, sec, seed, chat_cfg or {}, vision_cfg or {}, **overrides)
    args = config(sec, seed, checkpoints_dir, **overrides)
    rows, model, tokenizer, kwargs = common.load_inputs(pairs_path, PAIR_FIELDS, model_path, sec, "dpo", args.bf16,
                                                        chat_cfg or {})
    extra = {"chat_template_kwargs": kwargs} if kwargs else {}  # TRL passes it to the chat template
    dataset = Dataset.from_list([{**{k: r[k] for k in PAIR_FIELDS}, **extra} for r in rows])
    record = {"chat_template_kwargs": kwargs, "attn_implementation": model.config._attn_implementation}
    return trainer(args, model, tokenizer, dataset, sec), tokenizer, record


def build_vlm(pairs_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict, vision_cfg: dict,
              **overrides):
    """The stage on a merged VLM (compass.train.vlm): pairs with and without `images` in one dataset, TRL's vision
    preference collator (checking each example's image tokens), LoRA on the language model, the projector as
    `vision.projector` says; the reference is the VLM with the adapter disabled."""
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from compass import chat
    from compass.io import CompassError, read_jsonl
    from compass.train import vlm

    if sec["precompute_ref_log_probs"]:
        raise CompassError("dpo.precompute_ref_log_probs: TRL precomputes no reference log-probabilities for image "
                           "examples; set it false to train the VLM")
    args = config(sec, seed, checkpoints_dir, **{"remove_unused_columns": False, **overrides})
    rows = read_jsonl(pairs_path, required=PAIR_FIELDS)
    common.require_rows(rows, pairs_path)
    model, processor = vlm.load(model_path, common.model_kwargs(sec, "dpo", args.bf16), chat_cfg, vision_cfg)
    kwargs = chat.template_kwargs(chat_cfg)
    rows, kept = vlm.prepare(rows, pairs_path, processor, chat_cfg, sec["max_length"], prompt_of=lambda r: r["prompt"])
    common.require_rows(rows, f"{pairs_path} (after dropping examples cut inside their image: {kept})")
    extra = {"chat_template_kwargs": kwargs} if kwargs else {}
    examples = [{**{k: r[k] for k in PAIR_FIELDS}, **extra, "images": r["image_paths"], "id": r.get("id"),
                 "image_tokens": r["image_tokens"]} for r in rows]
    collator = vlm.checked(DataCollatorForVisionPreference)(processor=processor, max_length=args.max_length)
    tr = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=vlm.dataset(examples),
                    processing_class=processor, data_collator=collator,
                    peft_config=vlm.lora_config(sec, model, vision_cfg.get("projector", "frozen")),
                    callbacks=[common.real_tokens_callback()])
    record = {"chat_template_kwargs": kwargs, "attn_implementation": model.config._attn_implementation,
              "vision": vlm.record(tr.model, processor, vision_cfg, kept)}
    return tr, processor, record


def train(pairs_path, model_path, out_dir, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          vision_cfg: dict | None = None) -> None:
    stage = build(pairs_path, model_path, checkpoints_dir, sec, seed, chat_cfg, vision_cfg)
    common.train_stage(*stage, common.with_vision(sec, model_path, vision_cfg), seed, chat_cfg or {},
                       (pairs_path, model_path), checkpoints_dir, out_dir)


def add_arguments(p) -> None:
    p.add_argument("--pairs", required=True, type=Path, help="preference pairs JSONL (from `compass pairs`)")
    p.add_argument("--model", required=True, type=Path, help="SFT-merged language model directory "
                   "(or merged VLM, when the whole VLM is trained: vision.train)")
    p.add_argument("--out", required=True, type=Path, help="output adapter directory")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory for resume (default: OUT.checkpoints)")


def main(args, cfg) -> None:
    ckpt = args.checkpoints or Path(f"{args.out}.checkpoints")
    train(args.pairs, args.model, args.out, ckpt, cfg["dpo"], cfg["seed"], cfg["chat"], cfg["vision"])

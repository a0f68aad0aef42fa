"""Training through the whole VLM (`vision.train`): what SFT, DPO and GRPO share when their model is a
LLaVA-OneVision checkpoint rather than the extracted language model.

The stage loads the VLM with its processor (TRL's vision path: a processor as `processing_class`, an `images`
column, TRL's vision collators), with the configured AnyRes tiling (compass.vision) set on both. LoRA targets
the language model's modules only; the vision tower is frozen; the projector (`vision.projector`) is

- `frozen`: left as Phase 1's (the seed's recipe);
- `train`: trained in full beside the LoRA (PEFT `modules_to_save`);
- `only`: trained alone, no LoRA (Skywork-R1V's recipe; PEFT's dummy target modules + `modules_to_save`).

Rows may carry `images` (compass.images: paths relative to their JSONL file) or not: text-only and image
examples train in one stage. Each example's image tokens are counted from its images' sizes before training
(an example whose image would be cut by `max_length` is dropped and counted) and checked in every collated batch.
"""

from __future__ import annotations

from pathlib import Path

from compass import vision
from compass.io import CompassError

PROJECTOR_MODES = ("frozen", "train", "only")
PROJECTOR = "multi_modal_projector"


def load(model_path, model_kw: dict, chat_cfg: dict, vision_cfg: dict):
    """(model, processor) of a VLM checkpoint, the tiling of `vision_cfg` set on both."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from compass.chat import check_pinned

    model = AutoModelForImageTextToText.from_pretrained(str(model_path), **model_kw)
    processor = AutoProcessor.from_pretrained(str(model_path))
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    check_pinned(processor.tokenizer, chat_cfg)
    vision.apply_tiling(processor, model.config, vision_cfg.get("tiling"))
    return model, processor


def language_targets(model, target_modules) -> str:
    """LoRA's target modules restricted to the language model, as the regex PEFT full-matches against module
    names: `all-linear` = every Linear of the language model; a list = those module names within it."""
    import torch

    if target_modules == "all-linear":
        leaves = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                         if name.startswith("model.language_model.") and isinstance(mod, torch.nn.Linear)})
    else:
        leaves = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not leaves:
        raise CompassError("lora.target_modules: no module of the language model to put LoRA on")
    return r"model\.language_model\..*\.(" + "|".join(map(str, leaves)) + ")"


def lora_config(sec: dict, model, projector: str):
    """The stage's PEFT config on the VLM: LoRA on the language model, the projector as `vision.projector` says."""
    from peft import LoraConfig
    from peft.utils.constants import DUMMY_TARGET_MODULES

    if projector not in PROJECTOR_MODES:
        raise CompassError(f"vision.projector: {projector!r} is not one of {', '.join(PROJECTOR_MODES)}")
    lora = sec["lora"]
    targets = DUMMY_TARGET_MODULES if projector == "only" else language_targets(model, lora["target_modules"])
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=targets,
                      modules_to_save=[PROJECTOR] if projector != "frozen" else None, task_type="CAUSAL_LM")


def with_image_parts(messages: list[dict], n_images: int) -> list[dict]:
    """The messages with one image part per image before the first user message's text, as
    compass.trace_format.prompt_messages(n_images=) writes them and TRL's vision collators insert them."""
    out, done = [], False
    for m in messages:
        if m["role"] == "user" and not done and n_images and isinstance(m["content"], str):
            m = {**m, "content": [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": m["content"]}]}
            done = True
        out.append(m)
    return out


def trace_prompt(row: dict) -> list[dict]:
    from compass.trace_format import prompt_messages

    return prompt_messages(row["problem"], row.get("lang"))


def prepare(rows: list[dict], data_path, processor, chat_cfg: dict, max_length: int | None,
            prompt_of=trace_prompt) -> tuple[list[dict], dict]:
    """The rows a stage trains on, each with `image_paths` (absolute) and `image_tokens` (its count), and what was
    kept: rows whose last image token would lie beyond `max_length` are dropped (`cut_in_image`), never truncated.
    `prompt_of(row)`: the row's prompt messages (text content; the image parts are put in here)."""
    from compass.images import image_paths, image_sizes

    base = Path(data_path).parent
    image_id = vision.image_token_id(processor)
    kept, dropped = [], []
    for row in rows:
        sizes = image_sizes(row, base)
        n_tokens = vision.image_token_count(processor, sizes)
        if sizes and max_length is not None:
            ids = vision.prompt_ids(processor, with_image_parts(prompt_of(row), len(sizes)), chat_cfg)
            if vision.image_span_end(ids, image_id, n_tokens) > max_length:
                dropped.append(row.get("id"))
                continue
        kept.append({**row, "image_paths": [str(p) for p in image_paths(row, base)], "image_tokens": n_tokens})
    record = {"rows": len(rows), "with_images": sum(bool(r["image_paths"]) for r in kept), "kept": len(kept),
              "cut_in_image": len(dropped), "image_tokens": sum(r["image_tokens"] for r in kept)}
    if dropped:
        print(f"dropped {len(dropped)} example(s) whose image tokens would be cut at max_length={max_length} "
              f"(e.g. {dropped[:3]})")
    return kept, record


def prompt_length(processor, row: dict, chat_cfg: dict) -> int:
    """Tokens of a prepared row's prompt (`prepare`), its image tokens expanded."""
    n_images = len(row["image_paths"])
    ids = vision.prompt_ids(processor, with_image_parts(trace_prompt(row), n_images), chat_cfg)
    return len(ids) - n_images + row["image_tokens"]


def dataset(examples: list[dict]):
    """A datasets.Dataset of TRL examples whose `images` column holds paths, decoded to PIL images when read."""
    from datasets import Dataset, Image, Sequence

    ds = Dataset.from_list(examples)
    return ds.cast_column("images", Sequence(Image()))


def checked(collator_cls):
    """TRL's vision collator `collator_cls`, checking each example's image tokens in the batch it builds against
    the count `prepare` worked out (a DPO batch holds each example twice: chosen, then rejected)."""

    class Checked(collator_cls):
        def torch_call(self, examples):
            ids = [e.pop("id") for e in examples]
            want = [e.pop("image_tokens") for e in examples]
            out = super().torch_call(examples)
            repeat = out["input_ids"].shape[0] // len(examples)
            vision.check_counts(out["input_ids"], want * repeat, ids * repeat, vision.image_token_id(self.processor),
                                "the training batch")
            return out

    Checked.__name__ = Checked.__qualname__ = f"Checked{collator_cls.__name__}"
    return Checked


def trainable(model) -> list[str]:
    """Names of the trainable parameters (what a stage trains: LoRA matrices, the projector's saved copy)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def record(model, processor, vision_cfg: dict, kept: dict) -> dict:
    """What training_log.json says of the VLM stage: the projector mode, the tiling in force, the examples kept
    and dropped, and which parts of the model were trainable."""
    names = trainable(model)
    parts = {"language_model_lora": sum(".language_model." in n and "lora_" in n for n in names),
             "projector": sum(f"{PROJECTOR}." in n for n in names)}
    others = [n for n in names if not ((".language_model." in n and "lora_" in n) or f"{PROJECTOR}." in n)]
    if others:
        raise CompassError(f"vision: parameters outside the language model's LoRA and the projector are trainable "
                           f"(e.g. {others[:3]})")
    return {"projector": vision_cfg.get("projector", "frozen"),
            "image_grid_pinpoints": [list(p) for p in processor.image_processor.image_grid_pinpoints],
            "examples": kept, "trainable_tensors": parts}

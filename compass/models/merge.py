"""`compass merge`: fold a LoRA adapter into its base LLM, and prove the merge is faithful.

Before the merged model is written, its logits on a few probe prompts are compared with the
adapter model's; a difference above the tolerance for the dtype fails the stage, leaving no output.
That check catches a faulty merge, not a wrong base: an adapter merged onto another model of the same
shape passes it. So the base is checked first against the one the adapter was trained on (`check_base`).

An adapter trained through the whole VLM (`vision.train`) is merged into its VLM base the same way, its probes
half with an image, and written with the processor saved beside the adapter (its tiling) by checkpoint.save_vlm.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from compass import chat
from compass.io import CompassError, atomic_output, read_json, require_dir
from compass.models.checkpoint import model_type, weights_id
from compass.trace_format import prompt_messages

PROBE_PROBLEMS = [
    ("Tom has 3 apples. He buys 4 more. How many apples does he have now?", "en"),
    ("A train travels 120 km in 2 hours. What is its average speed in km/h?", "en"),
    ("太郎さんはりんごを5個持っています。2個食べました。残りは何個ですか？", "ja"),
    ("1個80円のみかんを6個買うと、代金はいくらですか？", "ja"),
]


def probe_batch(tokenizer, n: int, chat_cfg: dict):
    convs = [prompt_messages(p, lang) for p, lang in (PROBE_PROBLEMS * n)[:n]]
    texts = [chat.render(tokenizer, c, chat_cfg) for c in convs]
    tokenizer.padding_side = "right"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def check_base(adapter_dir, base_dir) -> None:
    """Refuse a base other than the one the adapter was trained on: compass's training records it in
    training_log.json (`base_model`: path and weights hash); PEFT records only its path."""
    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    log = adapter_dir / "training_log.json"
    recorded = (read_json(log).get("base_model") if log.is_file() else None) or {}
    named = recorded.get("path") or read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    expected = recorded.get("weights_sha256")
    same_path = bool(named) and Path(named).exists() and os.path.samefile(named, base_dir)
    if expected is None:
        if not named or not Path(named).is_dir():
            print(f"{adapter_dir}: its base ({named}) is not a directory here: the base cannot be checked")
            return
        if same_path:
            return
        expected = weights_id(named, "the adapter's base")
    if weights_id(base_dir, "base model") != expected:
        if same_path:
            raise CompassError(f"{adapter_dir}: trained on {base_dir} before its weights changed: train the adapter again")
        raise CompassError(f"{adapter_dir}: trained on {named}, not on --base {base_dir} (other weights): "
                           "merging it there would give a wrong model")


def probe_image():
    """A fixed, non-uniform RGB image for the VLM probes."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:40, 0:56]
    return Image.fromarray(np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).astype("uint8"))


def vlm_probe_batch(processor, n: int, chat_cfg: dict):
    """`n` probe prompts for a VLM, every other one with the probe image."""
    convs, images = [], []
    for i, (p, lang) in enumerate((PROBE_PROBLEMS * n)[:n]):
        k = 1 - i % 2
        convs.append(prompt_messages(p, lang, n_images=k))
        images.append([probe_image()] * k)
    texts = [chat.render(processor, c, chat_cfg) for c in convs]
    return processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="right",
                     add_special_tokens=False)


def load_base(base_dir, adapter_dir, dtype):
    """(base model, tokenizer or processor) of a merge: a causal LM, or a VLM with the adapter's processor (the
    tiling it was trained with, set on the base's config too)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    from compass import vision
    from compass.models.checkpoint import is_vlm

    saved = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base_dir
    if not is_vlm(base_dir):
        tokenizer = AutoTokenizer.from_pretrained(saved)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype), tokenizer
    base = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=dtype)
    processor = AutoProcessor.from_pretrained(adapter_dir if (Path(adapter_dir) / "processor_config.json").is_file()
                                              else base_dir)
    grid = processor.image_processor.image_grid_pinpoints
    vision.apply_tiling(processor, base.config, {"image_grid_pinpoints": grid})
    return base, processor


def merge(base_dir, adapter_dir, out_dir, mcfg: dict, chat_cfg: dict | None = None) -> dict:
    import torch
    from peft import PeftModel

    from compass.models.checkpoint import is_vlm as checkpoint_is_vlm
    from compass.models.checkpoint import save_vlm

    model_type(base_dir, "base model")
    require_dir(adapter_dir, "adapter")
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise CompassError(f"adapter: {adapter_dir} holds no adapter_config.json (not a PEFT adapter)")
    check_base(adapter_dir, base_dir)
    dtype = "auto" if mcfg["dtype"] == "auto" else getattr(torch, mcfg["dtype"])
    base, tokenizer = load_base(base_dir, adapter_dir, dtype)
    is_vlm = checkpoint_is_vlm(base_dir)
    try:
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
    except (RuntimeError, ValueError, KeyError) as e:  # size mismatch, unknown target modules
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise CompassError(f"{adapter_dir}: does not fit the base model {base_dir}: {first}") from None
    if is_vlm:
        enc = vlm_probe_batch(tokenizer, mcfg["parity_probes"], chat_cfg or {})
    else:
        enc = probe_batch(tokenizer, mcfg["parity_probes"], chat_cfg or {})
    mask = enc["attention_mask"].bool()
    with torch.inference_mode():
        expected = model(**enc).logits[mask].float()
        merged = model.merge_and_unload()
        got = merged(**enc).logits[mask].float()
    weight_dtype = next(merged.parameters()).dtype
    atol = mcfg["atol_fp32"] if weight_dtype == torch.float32 else mcfg["atol_bf16"]
    max_diff = (expected - got).abs().max().item()
    report = {"max_abs_logit_diff": max_diff, "atol": atol, "dtype": str(weight_dtype).replace("torch.", ""), "probes": mcfg["parity_probes"]}
    if not max_diff <= atol:
        raise CompassError(
            f"merge parity check failed: merged logits differ from the adapter model's by {max_diff:.3g} "
            f"(> merge.atol for {report['dtype']} = {atol}); nothing written to {out_dir}"
        )
    with atomic_output(out_dir, directory=True) as tmp:
        if is_vlm:
            save_vlm(merged, tokenizer, tmp)
        else:
            merged.save_pretrained(tmp)
            tokenizer.padding_side = "left"
            tokenizer.save_pretrained(tmp)
        (Path(tmp) / "merge_parity.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"merged {adapter_dir} into {base_dir}: max |Δlogit| {max_diff:.2e} <= {atol} -> {out_dir}")
    return report


def add_arguments(p) -> None:
    p.add_argument("--base", required=True, type=Path, help="base language model directory")
    p.add_argument("--adapter", required=True, type=Path, help="LoRA adapter directory")
    p.add_argument("--out", required=True, type=Path, help="output directory of the merged model")


def main(args, cfg) -> None:
    merge(args.base, args.adapter, args.out, cfg["merge"], cfg["chat"])

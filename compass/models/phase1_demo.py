"""Build the tiny demo Phase 1 VLM: the real model's classes at toy sizes, random weights.

Same layout as the COMPASS Phase 1 checkpoint: a SigLIP vision tower, a Linear -> GELU -> Linear
projector and a Llama-architecture LLM (llm-jp-4-8b is a Llama shape) inside
`LlavaOnevisionForConditionalGeneration`, saved with its processor and chat template so stock
transformers loads it with `AutoModelForImageTextToText` / `AutoProcessor`. The tokenizer is a
byte-level BPE with single-digit pieces, trained locally on the demo corpus; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from compass.io import atomic_output
from compass.models.checkpoint import save_vlm

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<image>", "<video>"]

# ChatML-style; image parts become <image>, which the processor expands to the image features.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer_corpus(seed: int) -> list[str]:
    """Text the demo tokenizer is trained on: demo problems, solutions, prompts and the trace tags."""
    from compass.data import demo
    from compass.trace_format import SYSTEM_PROMPTS, format_response

    rows = demo.all_problems(9, ["add", "sub", "mul"], ["en", "ja"])
    # The system prompts open every example: weight them so BPE gives them few tokens.
    texts = list(SYSTEM_PROMPTS.values()) * 500
    for row in rows[:: max(1, len(rows) // 2000)]:
        texts.append(format_response(row["problem"], row["solution"], row["answer"]))
    return texts


def build_tokenizer(vocab_size: int, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(seed), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


# The llm-jp-4 vocabulary has no video token: a reserved id stands in (video is never used here).
LLM_JP_VIDEO_TOKEN = "<|reserved_009|>"


def phase1_tokenizer(demo_cfg: dict, seed: int):
    """(tokenizer with its chat template, image token, video token): the real llm-jp-4 tokenizer
    converted from `demo_cfg["tokenizer"]` (the production rehearsal), else the demo's own BPE."""
    if demo_cfg.get("tokenizer"):
        from compass.models import llm_jp_tokenizer

        tok = llm_jp_tokenizer.convert(Path(demo_cfg["tokenizer"]))
        return tok, llm_jp_tokenizer.IMAGE_PAD, LLM_JP_VIDEO_TOKEN
    return build_tokenizer(demo_cfg["vocab_size"], seed), "<image>", "<video>"


def build(out_dir, demo_cfg: dict, seed: int, tiling: dict | None = None) -> None:
    """Write the tiny Phase 1 to `out_dir`; `tiling` (config vision.tiling) sets its AnyRes grid (compass.vision)."""
    import torch
    from transformers import (
        LlamaConfig,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        SiglipVisionConfig,
    )

    tok, image_token, video_token = phase1_tokenizer(demo_cfg, seed)
    template = tok.chat_template
    size = demo_cfg["image_size"]
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    vision = SiglipVisionConfig(
        hidden_size=demo_cfg["vision_hidden_size"],
        intermediate_size=4 * demo_cfg["vision_hidden_size"],
        num_hidden_layers=demo_cfg["vision_layers"],
        num_attention_heads=demo_cfg["vision_heads"],
        image_size=size,
        patch_size=demo_cfg["patch_size"],
        hidden_act="gelu_pytorch_tanh",
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=demo_cfg["text_hidden_size"],
        intermediate_size=demo_cfg["text_intermediate_size"],
        num_hidden_layers=demo_cfg["text_layers"],
        num_attention_heads=demo_cfg["text_heads"],
        num_key_value_heads=demo_cfg["text_kv_heads"],
        max_position_embeddings=demo_cfg["max_position_embeddings"],
        rope_theta=500000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        initializer_range=demo_cfg["text_initializer_range"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids(image_token),
        video_token_id=tok.convert_tokens_to_ids(video_token),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}),
        tokenizer=tok,
        num_image_tokens=(size // demo_cfg["patch_size"]) ** 2,
        vision_feature_select_strategy="full",
        chat_template=template,
        image_token=image_token,
        video_token=video_token,
    )
    from compass import vision

    vision.apply_tiling(processor, model.config, tiling)
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(model, processor, tmp)  # tensor names transformers and vLLM both load
    n = sum(p.numel() for p in model.parameters())
    print(f"demo Phase 1 VLM: {n / 1e6:.2f}M parameters, vocabulary {len(tok)} -> {out_dir}")


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=Path, help="output directory of the Phase 1 checkpoint")


def main(args, cfg) -> None:
    build(args.out, cfg["phase1"]["demo"], cfg["seed"], cfg["vision"]["tiling"])

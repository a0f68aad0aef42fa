"""`compass assemble-phase1` (rule assemble_phase1): Phase 1 as users have it, put into the stock LLaVA-OneVision layout.

Two sources (config `phase1`):
- `hf_id`: a whole LLaVA-OneVision checkpoint on the Hub (fetched into the cache by fetch_model);
- `parts`: a SigLIP vision tower, the projector weights of LLaVA-style training (`mm_projector.bin`:
  Linear -> GELU -> Linear), a causal LM and a tokenizer with an image token.
Either way the output is a `LlavaOnevisionForConditionalGeneration` checkpoint with its processor
and chat template, written by checkpoint.save_vlm (names transformers and vLLM both load), in the
LLM's dtype. Before it is put in place, every vision-tower and projector tensor written is checked
equal, bit for bit, to its source (cast to that dtype). Any other layout stops the stage with one
line naming what was found and what is expected.
"""

from __future__ import annotations

from pathlib import Path

from compass.io import CompassError, atomic_output
from compass.models.checkpoint import (VLM_TYPES, compare_frozen, compare_tensors, frozen_tensors, iter_tensors,
                                       save_vlm, vlm_tensor_name)
from compass.models.vlm import load_vlm, put_llm

# LLaVA training's projector (`mm_projector_type: mlp2x_gelu`) -> LLaVA-OneVision's.
PROJECTOR_KEYS = {
    "mm_projector.0.weight": "linear_1.weight",
    "mm_projector.0.bias": "linear_1.bias",
    "mm_projector.2.weight": "linear_2.weight",
    "mm_projector.2.bias": "linear_2.bias",
}
NEWLINE_KEY = "image_newline"  # LLaVA-NeXT/OneVision training saves it beside the projector
VISION_TYPES = ("siglip_vision_model", "siglip")
IMAGE_TOKENS = ("<image>", "<|image_pad|>")  # LLaVA's; LLM-jp-4-VL's
VIDEO_TOKENS = ("<video>", "<|video_pad|>")
MAX_TILES = 6  # anyres_max_9: grids of 1..6 x 1..6 tiles, as LLaVA-OneVision's processor


def resolve(name: str, what: str) -> Path:
    """A local directory, or the cached snapshot of a Hub id (downloaded unless HF_HUB_OFFLINE=1:
    in the workflow the fetch rules have put it in the cache)."""
    if Path(name).exists():
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as e:  # noqa: BLE001 - not in the cache, no network, no such repo
        raise CompassError(f"{what}: {name} is neither a local path nor a model in the Hugging Face cache "
                           f"({type(e).__name__}); the fetch_model rule downloads it (`compass fetch --model {name}`)") from None


def _config(path: Path, what: str):
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise CompassError(f"{what}: {path} holds no config.json (expected a transformers checkpoint directory)")
    try:
        return AutoConfig.from_pretrained(path)
    except (ValueError, KeyError, OSError) as e:  # an unknown model_type, a malformed config
        raise CompassError(f"{what}: {path}/config.json is not a config transformers reads ({str(e).splitlines()[0][:200]})") from None


# --- parts -------------------------------------------------------------------------------------

def projector_tensors(path) -> dict:
    """LLaVA-style projector weights -> {linear_1.weight, …, [image_newline]} (no shapes checked)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CompassError(f"phase1.parts.projector: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(path)
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - not a weights file
        raise CompassError(f"phase1.parts.projector: {path} is not a PyTorch (.bin) or safetensors weights file ({type(e).__name__})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CompassError(f"phase1.parts.projector: {path} does not hold a name -> tensor mapping")
    return llava_projector(raw, path)


def llava_projector(raw: dict, path) -> dict:
    """LLaVA training's projector tensors under LLaVA-OneVision's names (works on meta tensors)."""
    found = {k.removeprefix("model."): v for k, v in raw.items()}
    if set(PROJECTOR_KEYS) - set(found) or set(found) - set(PROJECTOR_KEYS) - {NEWLINE_KEY}:
        raise CompassError(
            f"phase1.parts.projector: {path} holds {sorted(raw)[:6]}; expected LLaVA's 2-layer MLP "
            f"[model.]mm_projector.{{0,2}}.{{weight,bias}} (optionally [model.]image_newline)"
        )
    out = {PROJECTOR_KEYS[k]: v for k, v in found.items() if k in PROJECTOR_KEYS}
    if NEWLINE_KEY in found:
        out[NEWLINE_KEY] = found[NEWLINE_KEY]
    return out


def check_projector_shapes(tensors: dict, vision_hidden: int, text_hidden: int, path) -> None:
    expected = {
        "linear_1.weight": (text_hidden, vision_hidden), "linear_1.bias": (text_hidden,),
        "linear_2.weight": (text_hidden, text_hidden), "linear_2.bias": (text_hidden,), NEWLINE_KEY: (text_hidden,),
    }
    llava = {v: k for k, v in PROJECTOR_KEYS.items()} | {NEWLINE_KEY: NEWLINE_KEY}
    for name, t in tensors.items():
        if tuple(t.shape) != expected[name]:
            raise CompassError(
                f"phase1.parts.projector: {path}: {llava[name]} has shape {tuple(t.shape)}; expected {expected[name]} "
                f"(vision hidden {vision_hidden} -> text hidden {text_hidden})"
            )


def vision_source_name(name: str) -> str | None:
    """A SigLIP checkpoint's tensor name as the VLM writes it; None for the text half of a SiglipModel."""
    if name.startswith(("text_model.", "logit_scale", "logit_bias")):
        return None
    return vlm_tensor_name("vision_tower." + name)


def vision_config(path: Path, name: str):
    cfg = _config(path, "phase1.parts.vision_tower")
    if cfg.model_type not in VISION_TYPES:
        raise CompassError(f"phase1.parts.vision_tower: {name} has model_type {cfg.model_type!r}; expected a SigLIP "
                           f"vision tower ({' or '.join(VISION_TYPES)})")
    return cfg.vision_config if cfg.model_type == "siglip" else cfg


def llm_config(path: Path, name: str):
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = _config(path, "phase1.parts.llm")
    if cfg.model_type in VLM_TYPES or cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CompassError(f"phase1.parts.llm: {name} has model_type {cfg.model_type!r}; expected a causal "
                           f"language model (e.g. llama, a *ForCausalLM checkpoint)")
    return cfg


def special_token(tokenizer, kind: str, candidates) -> str | None:
    """The tokenizer's image (video) token: its `image_token` attribute, else a known one in its vocabulary."""
    vocab = tokenizer.get_vocab()
    token = getattr(tokenizer, f"{kind}_token", None)
    if token and token in vocab:
        return token
    return next((t for t in candidates if t in vocab), None)


def load_tokenizer(path: Path, name: str, vocab_size: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    image = special_token(tok, "image", IMAGE_TOKENS)
    if image is None:
        raise CompassError(f"phase1.parts.tokenizer: {name} has no image token (no image_token, {', '.join(IMAGE_TOKENS)} "
                           f"in its vocabulary); expected one for the image features to take its place")
    video = special_token(tok, "video", VIDEO_TOKENS)
    # Named as the tokenizer's extra special tokens, so the processor finds them again when reloaded.
    extra = {"image_token": image, **({"video_token": video} if video else {})}
    tok = AutoTokenizer.from_pretrained(path, extra_special_tokens=extra)
    for token in extra.values():
        if tok.convert_tokens_to_ids(token) >= vocab_size:
            raise CompassError(f"phase1.parts.tokenizer: {name}: {token} has id {tok.convert_tokens_to_ids(token)}, "
                               f"outside the LLM's vocabulary ({vocab_size} embeddings)")
    return tok, image, video


def image_processor(vision_path: Path, vcfg):
    """LLaVA-OneVision's AnyRes image processor at the vision tower's geometry and normalisation."""
    import json

    from transformers import LlavaOnevisionImageProcessor

    size = vcfg.image_size
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # SigLIP's
    pre = vision_path / "preprocessor_config.json"
    if pre.is_file():
        data = json.loads(pre.read_text())
        norm = {k: data.get(k, v) for k, v in norm.items()}
    return LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=anyres_pinpoints(size), **norm)


def anyres_pinpoints(size: int) -> list[list[int]]:
    return [[i * size, j * size] for i in range(1, MAX_TILES + 1) for j in range(1, MAX_TILES + 1)]


def llava_config(vcfg, tcfg, image_token_id: int, video_token_id: int | None, vision_feature_layer: int):
    """LLaVA-OneVision's config over the vision tower's and the LLM's."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config=vcfg,
        text_config=tcfg,
        image_token_id=image_token_id,
        # Without a video token, videos share the image token: images work, videos are not supported.
        video_token_id=image_token_id if video_token_id is None else video_token_id,
        vision_feature_select_strategy="full",  # SigLIP has no CLS token to drop
        vision_feature_layer=vision_feature_layer,
        image_grid_pinpoints=anyres_pinpoints(vcfg.image_size),
        projector_hidden_act="gelu",  # LLaVA's mlp2x_gelu: nn.GELU()
        tie_word_embeddings=tcfg.tie_word_embeddings,
    )


def vlm_from_parts(vision, projector: dict, llm, vlm_config):
    """The LLaVA-OneVision VLM holding the parts' own tensors (assign=True: no copies; works on meta
    tensors). `projector` is projector_tensors' output; without an image_newline it is zero."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    dtype = llm.get_input_embeddings().weight.dtype
    with torch.device("meta"):
        vlm = LlavaOnevisionForConditionalGeneration(vlm_config).to(dtype)
    vlm.model.vision_tower.load_state_dict({k: v.to(dtype) for k, v in vision.state_dict().items()}, assign=True, strict=True)
    proj = {k: v.to(dtype) for k, v in projector.items() if k != NEWLINE_KEY}
    vlm.model.multi_modal_projector.load_state_dict(proj, assign=True, strict=True)
    newline = projector.get(NEWLINE_KEY)
    newline = torch.zeros(vlm_config.text_config.hidden_size, dtype=dtype, device=llm.get_input_embeddings().weight.device) if newline is None else newline
    vlm.model.image_newline = torch.nn.Parameter(newline.to(dtype), requires_grad=False)
    put_llm(vlm, llm)
    return vlm


def source_tensors(vision_path: Path, projector: dict, dtype) -> dict:
    """What the assembled checkpoint must hold for the vision tower and projector, by the names
    save_vlm writes: the sources' own tensors (read again from the vision tower's files), in `dtype`."""
    expected = {}
    for name, t in iter_tensors(vision_path):
        key = vision_source_name(name)
        if key is not None:
            expected[key] = t.to(dtype)
    expected.update({f"multi_modal_projector.{k}": v.to(dtype) for k, v in projector.items() if k != NEWLINE_KEY})
    if NEWLINE_KEY in projector:
        expected[NEWLINE_KEY] = projector[NEWLINE_KEY].to(dtype)
    return expected


def assemble_parts(parts: dict, out_dir) -> int:
    from transformers import AutoModelForCausalLM, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor, SiglipVisionModel

    vision_path = resolve(parts["vision_tower"], "phase1.parts.vision_tower")
    llm_path = resolve(parts["llm"], "phase1.parts.llm")
    tok_name = parts.get("tokenizer") or parts["llm"]
    tok_path = resolve(tok_name, "phase1.parts.tokenizer")
    vcfg = vision_config(vision_path, parts["vision_tower"])
    tcfg = llm_config(llm_path, parts["llm"])
    projector = projector_tensors(parts["projector"])
    check_projector_shapes(projector, vcfg.hidden_size, tcfg.hidden_size, parts["projector"])
    tok, image_token, video_token = load_tokenizer(tok_path, tok_name, tcfg.vocab_size)

    llm, info = AutoModelForCausalLM.from_pretrained(llm_path, dtype="auto", output_loading_info=True)
    if info["missing_keys"]:
        raise CompassError(f"phase1.parts.llm: {parts['llm']} has no weights for {sorted(info['missing_keys'])[:3]} "
                           f"(architectures {tcfg.architectures}); expected a *ForCausalLM checkpoint")
    vision, info = SiglipVisionModel.from_pretrained(vision_path, config=vcfg, dtype="auto", output_loading_info=True)
    if info["missing_keys"]:
        raise CompassError(f"phase1.parts.vision_tower: {parts['vision_tower']} has no weights for "
                           f"{sorted(info['missing_keys'])[:3]}; expected a SigLIP vision tower checkpoint")
    images = image_processor(vision_path, vcfg)
    video_id = tok.convert_tokens_to_ids(video_token) if video_token else None
    config = llava_config(vcfg, llm.config, tok.convert_tokens_to_ids(image_token), video_id, parts["vision_feature_layer"])
    vlm = vlm_from_parts(vision, projector, llm, config).eval()
    vlm.generation_config = llm.generation_config
    size = vcfg.image_size
    processor = LlavaOnevisionProcessor(
        image_processor=images,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}, image_mean=images.image_mean,
                                                     image_std=images.image_std),
        tokenizer=tok,
        num_image_tokens=(size // vcfg.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=tok.chat_template,
    )
    dtype = vlm.lm_head.weight.dtype
    expected = source_tensors(vision_path, projector, dtype)
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(vlm, processor, tmp)
        got = frozen_tensors(tmp)
        if NEWLINE_KEY not in projector:
            got.pop(NEWLINE_KEY)
        n = compare_tensors(expected, got, tmp, source="phase1.parts")
    newline = "" if NEWLINE_KEY in projector else "; image_newline set to zero (none beside the projector)"
    print(f"assembled Phase 1 VLM from parts ({sum(p.numel() for p in vlm.parameters()) / 1e6:.1f}M parameters, "
          f"{dtype}) -> {out_dir} ({n} vision/projector tensors equal to their sources{newline})")
    return n


# --- a whole checkpoint --------------------------------------------------------------------------

def assemble_hub(hf_id: str, out_dir) -> int:
    """A Hub LLaVA-OneVision checkpoint, rewritten by save_vlm (checked, names vLLM loads)."""
    from transformers import AutoProcessor

    path = resolve(hf_id, "phase1.hf_id")
    kind = _config(path, "phase1.hf_id").model_type
    if kind not in VLM_TYPES:
        raise CompassError(f"phase1.hf_id: {hf_id} has model_type {kind!r}; expected a LLaVA-OneVision VLM "
                           f"({', '.join(sorted(VLM_TYPES))}); a vision tower, projector and LLM go in phase1.parts")
    vlm = load_vlm(path)
    processor = AutoProcessor.from_pretrained(path)
    with atomic_output(out_dir, directory=True) as tmp:
        save_vlm(vlm, processor, tmp)
        n = compare_frozen(path, tmp)
    print(f"Phase 1 VLM {hf_id} -> {out_dir} ({n} vision/projector tensors bit-identical to the Hub checkpoint)")
    return n


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=Path, help="output directory of the Phase 1 VLM")


def main(args, cfg) -> None:
    phase1 = cfg["phase1"]
    if phase1["hf_id"]:
        assemble_hub(phase1["hf_id"], args.out)
    elif phase1["parts"]:
        assemble_parts(phase1["parts"], args.out)
    else:
        raise CompassError("phase1: set phase1.hf_id or phase1.parts to assemble a Phase 1 VLM "
                           "(phase1.path is used as it is; with none of them the demo is built: compass phase1-demo)")

"""The real llm-jp-4 tokenizer as a fast Hugging Face tokenizer that loads without remote code.

llm-jp ships the llm-jp-4 tokenizer (ver4.0 alpha1.0) as a SentencePiece Unigram model plus a
`tokenizer_config.json` whose `auto_map` names a remote-code class; that config alone does not load
with `AutoTokenizer`, and remote code has no place in a training pipeline. This module rebuilds
the same tokenizer from its parts:

- the 196,608 pieces and scores of the SentencePiece model (its protobuf, read with transformers'
  `import_protobuf`) become a `tokenizers` Unigram model with byte fallback, exactly as
  SentencePiece encodes: no normalisation, a "▁" before the text and spaces written as "▁"
  (`Prepend` + `Replace` normalizers, applied to each text segment between special tokens; the
  recipe of llm-jp's own `tokenizer.json` for alpha_1.1), and a decoder that undoes both;
- ids 0-351 (SentencePiece's `<unk>`, `<s>`, `</s>` and user-defined `<mask>`, `<pad>`,
  `<RESERVED_nnn>`) take the names of the config's `added_tokens_decoder` (`<|startoftext|>`,
  `<|return|>`, the Harmony tokens `<|channel|>`, `<|start|>`, `<|end|>`, `<|message|>`, ...)
  and are registered as special tokens that are never normalised; bos, eos, pad and
  `add_bos_token` come from the config, so encoding a text puts `<|startoftext|>` first
  (`apply_chat_template` does not: it tokenizes without special tokens);
- the vocabulary has no image token, so three unused reserved tokens become LLM-jp-4-VL's
  `<|image_start|>`, `<|image_pad|>`, `<|image_end|>` (the vocabulary size stays 196,608, so the
  LLM's embedding matrix fits unchanged), and `<|image_pad|>` is the tokenizer's `image_token`,
  the placeholder LlavaOnevisionProcessor expands into the image features;
- the Harmony chat template is upstream's text with one documented addition (`chat_template_text`):
  message content given as a list of parts renders, text parts as their text and image parts as
  `<|image_start|><|image_pad|><|image_end|>`; string content renders byte for byte as upstream.

Against the SentencePiece model itself the ids are identical on real text except where Unigram has
two segmentations of equal score (`####` as `###`+`#` or `#`+`###`: the same pieces in another
order), which the two libraries break differently (tests/test_llm_jp_tokenizer.py counts them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from compass.io import CompassError

VOCAB_SIZE = 196_608
N_SPECIAL = 352  # ids 0..351: SentencePiece's control and user-defined symbols

IMAGE_START = "<|image_start|>"
IMAGE_PAD = "<|image_pad|>"
IMAGE_END = "<|image_end|>"
# The first reserved tokens after the Harmony ones (<|reserved_000|>..<|reserved_005|> became
# <|constrain|>..<|call|> at ids 8-13); `token_names` checks that nothing else uses them.
IMAGE_TOKENS = {"<|reserved_006|>": IMAGE_START, "<|reserved_007|>": IMAGE_PAD, "<|reserved_008|>": IMAGE_END}

# The tokenizer_config.json keys carried over (the rest, `auto_map` and the remote class above
# all, is what this module replaces).
CONFIG_KEYS = (
    "bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token", "mask_token",
    "add_bos_token", "add_eos_token", "clean_up_tokenization_spaces", "model_max_length",
)

# SentencePiece piece types (sentencepiece_model.proto) of the ids that become special tokens
UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4


# --- locating the inputs -------------------------------------------------------------------------


def find_sources(source_dir) -> tuple[Path, Path]:
    """(SentencePiece model, folder of tokenizer_config.json + chat_template.jinja) in either the
    llm-jp-tokenizer layout (`models/<version>/*.model`, `hf/<version>/<release>/...`) or a flat
    folder holding one `*.model` beside the two files."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise CompassError(f"{source_dir}: tokenizer source folder not found")
    if (source_dir / "tokenizer_config.json").is_file():
        models, hf_dirs = sorted(source_dir.glob("*.model")), [source_dir]
    else:
        models = sorted(source_dir.glob("models/**/*.model"))
        hf_dirs = sorted(p.parent for p in source_dir.glob("hf/**/tokenizer_config.json"))
    if len(models) != 1:
        raise CompassError(f"{source_dir}: expected one SentencePiece *.model, found {len(models)}: {[str(m) for m in models]}")
    if len(hf_dirs) != 1:
        raise CompassError(f"{source_dir}: expected one tokenizer_config.json, found {len(hf_dirs)}: {[str(d) for d in hf_dirs]}")
    if not (hf_dirs[0] / "chat_template.jinja").is_file():
        raise CompassError(f"{hf_dirs[0]}: chat_template.jinja not found")
    return models[0], hf_dirs[0]


def read_sentencepiece(model_path) -> list[tuple[str, float, int]]:
    """(piece, score, type) of every id of a SentencePiece model, after checking that the model is
    configured the way `backend` reproduces (a Unigram model with byte fallback and no normalisation)."""
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(Path(model_path).read_bytes())
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    found = {
        "model_type": trainer.model_type,
        "byte_fallback": trainer.byte_fallback,
        "unk_id": trainer.unk_id,
        "normalization": norm.name,
        "precompiled_charsmap": bool(norm.precompiled_charsmap),
        "add_dummy_prefix": norm.add_dummy_prefix,
        "remove_extra_whitespaces": norm.remove_extra_whitespaces,
        "escape_whitespaces": norm.escape_whitespaces,
    }
    expected = {
        "model_type": trainer.UNIGRAM,
        "byte_fallback": True,
        "unk_id": 0,
        "normalization": "identity",
        "precompiled_charsmap": False,
        "add_dummy_prefix": True,
        "remove_extra_whitespaces": False,
        "escape_whitespaces": True,
    }
    if found != expected:
        diff = {k: (found[k], expected[k]) for k in found if found[k] != expected[k]}
        raise CompassError(f"{model_path}: SentencePiece settings (found, expected) this conversion does not reproduce: {diff}")
    return [(p.piece, p.score, p.type) for p in proto.pieces]


# --- pure construction ---------------------------------------------------------------------------


def token_names(config: dict, chat_template: str = "") -> dict[int, str]:
    """id -> name of the special tokens: the config's `added_tokens_decoder`, with the three
    reserved tokens of IMAGE_TOKENS renamed. Refuses a reserved token that the config names as a
    special token or that the chat template mentions."""
    names = {int(i): t["content"] for i, t in config["added_tokens_decoder"].items()}
    if sorted(names) != list(range(N_SPECIAL)):
        raise CompassError(f"added_tokens_decoder: expected ids 0..{N_SPECIAL - 1}, found {len(names)} ids")
    named = {v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    by_name = {name: i for i, name in names.items()}
    for reserved, image in IMAGE_TOKENS.items():
        if reserved not in by_name:
            raise CompassError(f"added_tokens_decoder: {reserved} not found (to become {image})")
        if reserved in named or reserved in chat_template:
            raise CompassError(f"{reserved} is in use; it cannot become {image}")
        if image in by_name:
            raise CompassError(f"{image} already exists at id {by_name[image]}")
        names[by_name[reserved]] = image
    return names


def backend(pieces: list[tuple[str, float, int]], names: dict[int, str]):
    """The `tokenizers.Tokenizer` equivalent to the SentencePiece model: its pieces and scores in
    a Unigram model with byte fallback, ids in `names` renamed and registered as special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers

    for i, (piece, _, kind) in enumerate(pieces):
        if (i in names) != (kind in (UNKNOWN, CONTROL, USER_DEFINED)):
            raise CompassError(f"id {i} ({piece!r}, type {kind}): special names must cover exactly the SentencePiece control/user symbols")
    vocab = [(names.get(i, piece), score) for i, (piece, score, _) in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    # SentencePiece's add_dummy_prefix + escape_whitespaces. As normalizers, not a Metaspace
    # pre-tokenizer: Metaspace adds no "▁" to text that already starts with a space (SentencePiece
    # does: " a" is "▁▁a"), and splitting on "▁" would lose the whitespace-only pieces ("▁▁▁").
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # The decoder undoes that: "▁" back to spaces, bytes back to characters, then the one space
    # prepended at the start and after every special token is dropped, so that decoding the ids of
    # "<|message|>Hello" gives "<|message|>Hello", not "<|message|> Hello" (llm-jp's remote-code
    # class decodes in pieces split at the Harmony tokens for the same reason). Skipped special
    # tokens leave their neighbours' spaces in place.
    after_special = "(?<=" + "|".join(re.escape(names[i]) for i in sorted(names)) + ") "
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
            decoders.Replace(Regex(after_special), ""),
        ]
    )
    tok.add_special_tokens([AddedToken(names[i], special=True, normalized=False) for i in sorted(names)])
    return tok


# Put in front of upstream's template by `chat_template_text` (the image tokens are IMAGE_START,
# IMAGE_PAD, IMAGE_END).
CONTENT_MACRO = """\
{#- compass: message content may be a list of parts (LLaVA-OneVision style). content_text() renders
    it as text: a text part as its text, an image part as <|image_start|><|image_pad|><|image_end|>
    (the processor expands <|image_pad|> into the image features). A string renders unchanged. #}
{%- macro content_text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content -%}
            {%- if part.type == "text" -%}
                {{- part.text -}}
            {%- elif part.type == "image" -%}
                {{- "<|image_start|><|image_pad|><|image_end|>" -}}
            {%- else -%}
                {{- raise_exception("Unsupported content part type: " + part.type|string) -}}
            {%- endif -%}
        {%- endfor -%}
    {%- elif content is not none -%}
        {{- raise_exception("Unsupported message content: " + content|string) -}}
    {%- endif -%}
{%- endmacro -%}
"""

# Every read of a message's content, except a tool result's `message.content|tojson` (upstream
# serialises it as JSON, and it may be a dict).
CONTENT_READ = re.compile(r"\b(message|messages\[0\])\.content\b(?!\s*\|\s*tojson)")


def chat_template_text(upstream: str) -> str:
    """Upstream's Harmony template with list-of-parts content: CONTENT_MACRO in front, and every
    read of `message.content` / `messages[0].content` (rendering it or searching it) wrapped in
    `content_text(...)`. Truth tests see "" for None, as they saw a falsy None before. Nothing else
    changes: the system turn, `conversation_start_date` / `strftime_now`, `reasoning_effort`,
    `model_identity`, `knowledge_cutoff` and tools work as upstream has them."""
    if "content_text" in upstream:
        raise CompassError("chat template already defines content_text")
    body, n = CONTENT_READ.subn(lambda m: f"content_text({m.group(0)})", upstream)
    if n == 0:
        raise CompassError("chat template never reads message.content: not the template this converts")
    return CONTENT_MACRO + body


# --- edges -------------------------------------------------------------------------------------


def chat_template(source_dir) -> str:
    """The llm-jp-4 chat template of `source_dir`, extended to image parts (`chat_template_text`)."""
    _, hf_dir = find_sources(source_dir)
    return chat_template_text((hf_dir / "chat_template.jinja").read_text(encoding="utf-8"))


def convert(source_dir):
    """The llm-jp-4 tokenizer of `source_dir` (see `find_sources`) as a
    `transformers.PreTrainedTokenizerFast` with the extended chat template; `save_pretrained`
    writes a folder that `AutoTokenizer.from_pretrained` loads without remote code."""
    from transformers import PreTrainedTokenizerFast

    model_path, hf_dir = find_sources(source_dir)
    config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    upstream_template = (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")
    pieces = read_sentencepiece(model_path)
    if len(pieces) != VOCAB_SIZE:
        raise CompassError(f"{model_path}: {len(pieces)} pieces, expected {VOCAB_SIZE}")
    names = token_names(config, upstream_template)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend(pieces, names),
        **{k: config[k] for k in CONFIG_KEYS if k in config},
        extra_special_tokens={"image_token": IMAGE_PAD},
        chat_template=chat_template_text(upstream_template),
    )
    if len(tokenizer) != VOCAB_SIZE:
        raise CompassError(f"converted tokenizer has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    return tokenizer

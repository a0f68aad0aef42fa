"""The converted llm-jp-4 tokenizer (compass/models/llm_jp_tokenizer.py) against the real
SentencePiece model and chat template in ../shared/data/llm_jp_tokenizer, on real benchmark text.
Skips when the shared data (or sentencepiece, for the comparison) is absent."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from compass.io import CompassError
from compass.models import llm_jp_tokenizer as L
from conftest import shared_file

DATE = {"conversation_start_date": "2026-12-01"}


@pytest.fixture(scope="module")
def source():
    return shared_file("llm_jp_tokenizer")


@pytest.fixture(scope="module")
def tokenizer(source):
    return L.convert(source)


@pytest.fixture(scope="module")
def sp(source):
    spm = pytest.importorskip("sentencepiece")
    model, _ = L.find_sources(source)
    return spm.SentencePieceProcessor(model_file=str(model))


@pytest.fixture(scope="module")
def upstream_template(source):
    _, hf_dir = L.find_sources(source)
    return (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Every question and answer of GSM8K test, MGSM-ja and MATH-500 (each field its own text)."""
    out = []
    with shared_file("gsm8k", "test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out += [row["question"], row["answer"]]
    with shared_file("mgsm", "mgsm_ja.tsv").open(encoding="utf-8") as f:
        for line in f:
            out += line.rstrip("\n").split("\t")
    with shared_file("math500", "test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out += [row["problem"], row["solution"]]
    return out


EDGE_TEXTS = [
    "",
    " ",
    " leading space",
    "two  spaces   three",
    "trailing ",
    "\ttab\nnewline\r\n",
    "\n\nstarts with newlines",
    "😀🦆 emoji by bytes",
    "全角\u3000スペース、半角ｶﾀｶﾅ、①②",
    "x\u0301 combining mark",
    "a\x00b",
    "12345678901234567890",
    "混在 mixed テキスト 123.45 #### 18",
]


def test_ids_match_sentencepiece_on_real_texts(tokenizer, sp, texts):
    """Identical ids except for equal-score ties: measured 10 of 4,138 texts, all GSM8K answers
    whose "####" SentencePiece writes as "###"+"#" and tokenizers as "#"+"###". The same pieces in
    another order have the same total score, so the two Viterbi searches tie exactly and only
    rounding decides (SentencePiece sums float32 scores; with question and answer joined into one
    text, 2 of 2,069 differ instead). Any other difference fails."""
    expected = sp.encode(texts)
    got = tokenizer(texts, add_special_tokens=False)["input_ids"]
    differ = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    for i in differ:
        a, b = expected[i], got[i]
        assert Counter(a) == Counter(b), f"text {i}: not a reordering of the same pieces: {texts[i][:80]!r}"
        assert "".join(sp.id_to_piece(a)) == "".join(tokenizer.convert_ids_to_tokens(b))
    assert len(texts) == 4138
    assert len(differ) <= 10, f"{len(differ)} of {len(texts)} texts differ (measured 10)"


def test_ids_match_sentencepiece_on_edge_cases(tokenizer, sp):
    for text in EDGE_TEXTS:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == sp.encode(text), repr(text)


def test_decode_inverts_encode(tokenizer, texts):
    ids = tokenizer(texts + EDGE_TEXTS, add_special_tokens=False)["input_ids"]
    assert tokenizer.batch_decode(ids) == texts + EDGE_TEXTS
    with_bos = tokenizer(texts[:50])["input_ids"]
    assert tokenizer.batch_decode(with_bos, skip_special_tokens=True) == texts[:50]


def test_special_tokens(tokenizer):
    assert tokenizer.vocab_size == len(tokenizer) == L.VOCAB_SIZE == 196_608
    assert (tokenizer.unk_token, tokenizer.unk_token_id) == ("<|unk|>", 0)
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|startoftext|>", 1)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|return|>", 2)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 4)
    harmony = ["<|constrain|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>", "<|call|>"]
    assert tokenizer.convert_tokens_to_ids(harmony) == [8, 9, 10, 11, 12, 13]
    specials = {i: t for i, t in tokenizer.added_tokens_decoder.items() if t.special and not t.normalized}
    assert sorted(specials) == list(range(L.N_SPECIAL))
    # as in tokenizer_config.json: a bos first, no eos
    assert tokenizer("Hello")["input_ids"] == [1] + tokenizer("Hello", add_special_tokens=False)["input_ids"]
    # special tokens in text are single ids; the text after each starts with "▁", as at the start
    text = "<|start|>user<|message|>Hello<|end|><|start|>assistant<|channel|>final<|message|>こんにちは<|return|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|start|>", "▁user", "<|message|>", "▁Hello", "<|end|>", "<|start|>", "▁assistant",
        "<|channel|>", "▁final", "<|message|>", "▁こんにちは", "<|return|>",
    ]
    assert tokenizer.decode(ids) == text


def test_image_tokens(tokenizer):
    assert (L.IMAGE_START, L.IMAGE_PAD, L.IMAGE_END) == ("<|image_start|>", "<|image_pad|>", "<|image_end|>")
    assert tokenizer.convert_tokens_to_ids([L.IMAGE_START, L.IMAGE_PAD, L.IMAGE_END]) == [14, 15, 16]
    assert (tokenizer.image_token, tokenizer.image_token_id) == (L.IMAGE_PAD, 15)
    vocab = tokenizer.get_vocab()
    assert not {"<|reserved_006|>", "<|reserved_007|>", "<|reserved_008|>"} & set(vocab)
    assert "<|reserved_009|>" in vocab and len(vocab) == L.VOCAB_SIZE
    text = f"写真{L.IMAGE_START}{L.IMAGE_PAD * 3}{L.IMAGE_END}を見て"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(15) == 3 and tokenizer.decode(ids) == text


def test_image_token_names_refuse_a_used_reserved_token(source):
    _, hf_dir = L.find_sources(source)
    config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert L.token_names(config)[15] == L.IMAGE_PAD
    with pytest.raises(CompassError, match="in use"):
        L.token_names(config, chat_template="... <|reserved_007|> ...")


def conversations(texts) -> list[tuple[list[dict], dict]]:
    """(messages, template kwargs): system/developer turns, thinking, multi-turn, tools, options."""
    q1, a1, q2, a2 = texts[0], texts[1], texts[2], texts[3]
    ja = texts[2638]  # the first MGSM-ja question
    return [
        ([{"role": "user", "content": q1}], {"add_generation_prompt": True}),
        ([{"role": "system", "content": "Answer step by step."}, {"role": "user", "content": ja}], {"add_generation_prompt": True}),
        ([{"role": "developer", "content": "日本語で答えてください。"}, {"role": "user", "content": ja}, {"role": "assistant", "content": "18", "thinking": "16-3-4=9, 9*2=18"}], {}),
        ([{"role": "system", "content": ""}, {"role": "user", "content": q1}, {"role": "assistant", "content": a1}], {}),
        (
            [{"role": "user", "content": q1}, {"role": "assistant", "content": a1, "thinking": "Compute."},
             {"role": "user", "content": q2}, {"role": "assistant", "content": a2, "thinking": "Again."}],
            {"reasoning_effort": "high", "model_identity": "You are a careful tutor.", "knowledge_cutoff": "2024-06"},
        ),
        ([{"role": "user", "content": q2}, {"role": "assistant", "content": a2}, {"role": "user", "content": "ありがとう"}], {"add_generation_prompt": True}),
        (
            [{"role": "user", "content": "What is 17*23?"},
             {"role": "assistant", "content": None, "thinking": "Use the calculator.",
              "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": {"expr": "17*23"}}}]},
             {"role": "tool", "content": {"result": 391}},
             {"role": "assistant", "content": "391"}],
            {"tools": [{"type": "function", "function": {"name": "calc", "description": "Evaluate.",
                        "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}}]},
        ),
    ]


def test_chat_template_renders_strings_as_upstream(tokenizer, upstream_template, texts):
    for messages, kwargs in conversations(texts):
        want = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=upstream_template, **DATE, **kwargs)
        got = tokenizer.apply_chat_template(messages, tokenize=False, **DATE, **kwargs)
        assert got == want, messages
    # without conversation_start_date both write today's date (strftime_now)
    messages, kwargs = conversations(texts)[1]
    want = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=upstream_template, **kwargs)
    assert tokenizer.apply_chat_template(messages, tokenize=False, **kwargs) == want


def test_chat_template_is_upstream_plus_one_macro(source, upstream_template):
    template = L.chat_template(source)
    assert template.startswith(L.CONTENT_MACRO)
    body = template[len(L.CONTENT_MACRO) :]
    unwrapped, n = re.subn(r"content_text\(((?:message|messages\[0\])\.content)\)", r"\1", body)
    assert unwrapped == upstream_template
    assert n == 9  # every read of a message's content but the tool result's `|tojson`
    assert "message.content|tojson" in body


def test_chat_template_renders_image_parts(tokenizer):
    image = L.IMAGE_START + L.IMAGE_PAD + L.IMAGE_END
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "画像を見て答えてください。"}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "何匹いますか？"}, {"type": "image", "url": "b.png"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "3匹です。"}]},
        {"role": "user", "content": "本当？"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **DATE)
    assert "<|start|>developer<|message|># Instructions\n\n画像を見て答えてください。\n\n<|end|>" in text
    assert f"<|start|>user<|message|>{image}何匹いますか？{image}<|end|>" in text
    assert "<|start|>assistant<|channel|>final<|message|>3匹です。<|end|><|start|>user<|message|>本当？<|end|>" in text
    as_strings = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                   "".join(p.get("text", image) for p in m["content"])} for m in messages]
    assert tokenizer.apply_chat_template(as_strings, tokenize=False, add_generation_prompt=True, **DATE) == text
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **DATE)["input_ids"]
    assert ids[0] == 10 and ids.count(tokenizer.image_token_id) == 2
    with pytest.raises(Exception, match="Unsupported content part type: video"):
        tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}], tokenize=False, **DATE)


def test_save_pretrained_reloads_without_remote_code(tokenizer, texts, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "auto_map" not in config and config["tokenizer_class"] == "TokenizersBackend"
    reloaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    assert type(reloaded).__module__.startswith("transformers.")
    assert len(reloaded) == L.VOCAB_SIZE and reloaded.image_token_id == 15
    assert reloaded.chat_template == tokenizer.chat_template
    sample = texts[::10] + EDGE_TEXTS
    assert reloaded(sample)["input_ids"] == tokenizer(sample)["input_ids"]
    messages, kwargs = conversations(texts)[2]
    assert reloaded.apply_chat_template(messages, **DATE, **kwargs) == tokenizer.apply_chat_template(messages, **DATE, **kwargs)
    ids = tokenizer(sample[:20])["input_ids"]
    assert reloaded.batch_decode(ids) == tokenizer.batch_decode(ids)


def test_find_sources_layouts(source, tmp_path):
    model, hf_dir = L.find_sources(source)
    assert model.suffix == ".model" and (hf_dir / "tokenizer_config.json").is_file()
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in (model, hf_dir / "tokenizer_config.json", hf_dir / "chat_template.jinja"):
        (flat / path.name).symlink_to(path)
    assert L.find_sources(flat) == (flat / model.name, flat)
    assert L.chat_template(flat) == L.chat_template(source)
    (flat / "second.model").symlink_to(model)
    with pytest.raises(CompassError, match="expected one SentencePiece"):
        L.find_sources(flat)


def test_llava_onevision_processor_expands_the_image_pad(tokenizer):
    from PIL import Image
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    size = 32
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
    )
    assert processor.image_token_id == 15
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "何が見えますか？"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, **DATE)
    ids = processor(text=[text], images=[Image.new("RGB", (40, 30), "red")])["input_ids"][0]
    start, end = ids.index(14), ids.index(16)
    assert end - start > 2 and set(ids[start + 1 : end]) == {15} and ids.count(15) == end - start - 1
    assert tokenizer.decode(ids[end + 1 :]) == "何が見えますか？<|end|><|start|>assistant"

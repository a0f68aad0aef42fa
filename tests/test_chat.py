"""Chat templates as the stages use them (compass/chat.py), with the real llm-jp-4 tokenizer and its
Harmony-style template: pinned date, end-of-turn stops, final-channel extraction."""

from __future__ import annotations

import pytest

from compass import chat
from compass.io import CompassError
from compass.trace_format import prompt_messages

PINNED = {"template_kwargs": {"conversation_start_date": "2026-01-01", "reasoning_effort": "medium"}}


@pytest.fixture(scope="module")
def llm_jp(shared_data):
    from compass.models import llm_jp_tokenizer

    return llm_jp_tokenizer.convert(shared_data / "llm_jp_tokenizer")


def test_the_real_template_is_refused_until_its_date_is_pinned(llm_jp):
    with pytest.raises(CompassError, match=r"chat.template_kwargs: .*current date.*conversation_start_date"):
        chat.check_pinned(llm_jp, {})
    chat.check_pinned(llm_jp, PINNED)


def test_pinned_prompts_are_the_same_on_any_day(llm_jp, monkeypatch):
    import datetime as dt

    import transformers.utils.chat_template_utils as jinja_utils

    msgs = prompt_messages("太郎さんはりんごを5個持っています。2個食べました。残りは何個ですか？")
    days = set()
    for day in (dt.datetime(2020, 1, 1), dt.datetime(2030, 6, 15)):  # the template's clock, moved
        monkeypatch.setattr(jinja_utils, "datetime", type("Clock", (), {"now": staticmethod(lambda d=day: d)}))
        jinja_utils._compile_jinja_template.cache_clear()
        days.add(chat.render(llm_jp, msgs, PINNED))
        unpinned = chat.render(llm_jp, msgs, {})
        assert f"Current date: {day:%Y-%m-%d}" in unpinned
        with pytest.raises(CompassError, match="current date"):
            chat.check_pinned(llm_jp, {}, today=day.date())
    jinja_utils._compile_jinja_template.cache_clear()
    assert len(days) == 1
    text = days.pop()
    assert "Current date: 2026-01-01" in text and "Reasoning: medium" in text
    assert text.endswith("<|start|>assistant")
    # The config's arguments reach the template (another effort, another prompt).
    other = chat.render(llm_jp, msgs, {"template_kwargs": {**PINNED["template_kwargs"], "reasoning_effort": "high"}})
    assert "Reasoning: high" in other


def test_generation_stops_at_every_end_of_turn_token_of_the_template(llm_jp, phase1_llm):
    from transformers import AutoTokenizer

    ids = chat.stop_token_ids(llm_jp, PINNED)
    assert llm_jp.convert_ids_to_tokens(ids) == ["<|return|>", "<|end|>", "<|call|>"]
    assert llm_jp.eos_token == "<|return|>"  # the tokenizer's EOS alone would miss <|end|>
    demo = AutoTokenizer.from_pretrained(phase1_llm)
    assert demo.convert_ids_to_tokens(chat.stop_token_ids(demo, {})) == ["<|im_end|>"]
    assert chat.stop_token_ids(llm_jp, {"stop_tokens": ["<|end|>"]}) == [llm_jp.convert_tokens_to_ids("<|end|>")]
    with pytest.raises(CompassError, match="chat.stop_tokens: <nope> not in"):
        chat.stop_token_ids(llm_jp, {"stop_tokens": ["<nope>"]})


@pytest.mark.parametrize(
    ("generated", "text", "analysis"),
    [
        ("<|channel|>final<|message|><Problem>p</Problem> x<|return|>", "<Problem>p</Problem> x", ""),
        ("<|channel|>final<|message|>done<|end|><|start|>assistant<|channel|>final<|message|>more", "done", ""),
        ("<|channel|>analysis<|message|>let me think<|end|>", "", "let me think"),
        ("<|channel|>analysis<|message|>a<|start|>assistant<|channel|>final<|message|>\\boxed{3}<|return|>", "\\boxed{3}", "a"),
        ("plain answer \\boxed{4}<|end|>ignored", "plain answer \\boxed{4}", ""),
        ("<|message|>no channel name<|return|>", "no channel name", ""),
        ("<|channel|>final<|message|>cut by max tokens", "cut by max tokens", ""),
    ],
)
def test_the_final_channel_is_what_is_graded(llm_jp, generated, text, analysis):
    parse = chat.OutputParser(llm_jp, PINNED)
    ids = llm_jp(generated, add_special_tokens=False).input_ids
    got = parse(ids)
    assert got == chat.Completion(text, analysis)
    assert "<|" not in got.text and not got.text.startswith("final")


def test_chatml_output_is_its_own_text(phase1_llm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(phase1_llm)
    parse = chat.OutputParser(tok, {})
    ids = tok("<Problem>1+1</Problem><|im_end|><pad><pad>", add_special_tokens=False).input_ids
    assert parse(ids) == chat.Completion("<Problem>1+1</Problem>")


def test_template_kwargs_must_be_plain_values():
    with pytest.raises(CompassError, match="chat.template_kwargs.when"):
        chat.template_kwargs({"template_kwargs": {"when": {"day": 1}}})


def test_sft_with_the_real_template_learns_the_final_channel_only(llm_jp, tmp_path, demo_config):
    """The SFT stage's own TRL trainer on the real llm-jp-4 tokenizer and template: the loss falls on
    `<|channel|>final<|message|>` + the response + `<|return|>`; every prompt turn (with the pinned
    date) is masked."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from compass.data import demo
    from compass.teacher.distill import reference_response
    from compass.train import sft

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(llm_jp), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024))
    train, _ = demo.generate(2, 1, seed=1)
    rows = [{**r, "response": reference_response(r)} for r in train]
    sec = {**demo_config["sft"], "packing": False, "max_length": 1024, "micro_batch_size": 2, "global_batch_size": 2}
    kwargs = chat.template_kwargs(PINNED)
    trainer = sft.trainer(sft.config(sec, 0, tmp_path), model, llm_jp,
                          Dataset.from_list([sft.to_example(r, kwargs) for r in rows]), sec)
    for row, trace in zip(trainer.train_dataset, rows):
        ids, labels = row["input_ids"], row["labels"]
        learnt = llm_jp.decode([t for t, lab in zip(ids, labels) if lab != -100])
        assert learnt == "<|channel|>final<|message|>" + trace["response"] + "<|return|>"
        prompt = llm_jp.decode([t for t, lab in zip(ids, labels) if lab == -100])
        assert "Current date: 2026-01-01" in prompt and prompt.endswith("<|start|>assistant")

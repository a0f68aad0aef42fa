"""GRPO rewards (compass/train/rewards.py) on real-looking rows: the demo's prompts with their gold answers,
completions as the SFT model writes them (well formed, wrong, cut short, repeating), with TRL's calling
convention (conversational completions, token ids, dataset columns as keyword lists)."""

from __future__ import annotations

import pytest

from compass import chat
from compass.data import demo
from compass.train import rewards
from compass.trace_format import format_response, prompt_messages

ROWS, _ = demo.generate(4, 1, seed=5)


def completion(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def call(name: str, texts: list[str], rows=None, ids=None, **settings) -> list[float]:
    """One reward as GRPOTrainer calls it: every column of each completion's row as a keyword list."""
    rows = rows or ROWS[: len(texts)]
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    ids = ids or [[ord(c) for c in t] for t in texts]
    fn = rewards.bind(name, **settings)
    return fn(prompts=[prompt_messages(r["problem"]) for r in rows], completions=[completion(t) for t in texts],
              completion_ids=ids, trainer_state=None, **columns)


def good(row) -> str:
    return format_response(row["problem"], row["solution"], row["answer"])


def test_rewards_are_registered_by_name_and_keep_it():
    assert set(rewards.REWARDS) == {"format", "accuracy", "length", "repetition"}
    assert rewards.bind("accuracy").__name__ == "accuracy"  # TRL logs rewards/{name}/mean


def test_format_gives_partial_credit_per_section_found():
    row = ROWS[0]
    well = good(row)
    no_answer_tag = well.split("<Answer>")[0] + f"\\boxed{{{row['answer']}}}"
    cut = well[: well.index("</Thinking>")]  # cut short by max_completion_length inside the thinking
    texts = [well, no_answer_tag, cut, "just a number 7", well.replace(f"\\boxed{{{row['answer']}}}", "\\boxed{}")]
    rows = [row] * len(texts)
    assert call("format", texts, rows) == pytest.approx([1.0, 0.6, 0.2, 0.0, 0.6])
    assert call("format", texts, rows, partial=False) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert max(call("format", texts[1:], rows[1:], section_credit=0.24)) < 1.0  # well formed stays the best


def test_accuracy_is_the_answer_layer_against_the_gold_answer():
    a, b = ROWS[0], ROWS[1]
    wrong = format_response(a["problem"], a["solution"], str(int(a["answer"]) + 1))
    stated = f"The answer is {b['answer']}."  # no trace format: still the right answer (format judges the rest)
    assert call("accuracy", [good(a), wrong, stated], [a, a, b]) == [1.0, 0.0, 1.0]
    no_gold = {**a, "answer": None}
    assert call("accuracy", [good(a)], [no_gold]) == [None]  # TRL skips it (NaN), never a 0


def test_length_and_repetition_penalties():
    texts = ["x"] * 3
    ids = [list(range(100)), list(range(150)), list(range(400))]
    assert call("length", texts, [ROWS[0]] * 3, ids=ids, target_tokens=100, max_tokens=200) == [0.0, -0.5, -1.0]
    loop = [5, 6, 7, 8] * 10  # a completion stuck in a loop
    fresh = list(range(40))
    got = call("repetition", texts[:2], [ROWS[0]] * 2, ids=[fresh, loop], ngram=4)
    assert got[0] == 0.0 and got[1] == pytest.approx(-(1 - 4 / 37))


def test_the_final_channel_is_what_is_rewarded(shared_data):
    """A channel-style completion (llm-jp-4's Harmony template) is judged as evaluation judges it: the final
    channel, without the channel name TRL's decoding leaves (`final <Problem>…`); an answer given only on the
    analysis channel earns nothing."""
    from compass.models import llm_jp_tokenizer

    tok = llm_jp_tokenizer.convert(shared_data / "llm_jp_tokenizer")
    parser = chat.OutputParser(tok, {"template_kwargs": {"conversation_start_date": "2026-01-01"}})
    row = ROWS[0]
    final = f"<|channel|>final<|message|>{good(row)}<|return|>"
    analysis_only = f"<|channel|>analysis<|message|>so it is \\boxed{{{row['answer']}}}<|end|>"
    ids = [tok(g, add_special_tokens=False).input_ids for g in (final, analysis_only)]
    decoded = tok.batch_decode(ids, skip_special_tokens=True)  # what TRL hands a reward as the completion text
    assert decoded[0].startswith("final")
    assert rewards.completion_texts(None, ids, parser) == [good(row), ""]
    kwargs = dict(prompts=[prompt_messages(row["problem"])] * 2, completions=[completion(d) for d in decoded],
                  completion_ids=ids, answer=[row["answer"]] * 2)
    assert rewards.bind("format", parser=parser)(**kwargs) == [1.0, 0.0]
    assert rewards.bind("accuracy", parser=parser)(**kwargs) == [1.0, 0.0]
    assert rewards.bind("accuracy")(**kwargs) == [1.0, 1.0]  # the decoded text alone would reward the analysis

import json

from conftest import shared_file

from compass import trace_format as tf


def test_format_is_exactly_the_seed_layout():
    text = tf.format_response("What is 2+3?", "2 + 3 = 5.", "5")
    assert text == "<Problem>What is 2+3?</Problem>\n<Thinking>2 + 3 = 5.</Thinking>\n<Answer>\n\\boxed{5}\n</Answer>"
    assert tf.is_well_formed(text)
    assert tf.answer_of(text) == "5"


def test_system_prompt_follows_language():
    assert tf.prompt_messages("Tom has 3 apples.")[0]["content"].startswith("You are an advanced mathematical AI assistant.")
    ja = tf.prompt_messages("太郎さんはりんごを3個持っています。")
    assert ja[0]["content"] == "あなたは高度な数学AIアシスタントです。\n与えられた数学問題をステップバイステップで解き、最終回答を提示してください。"
    assert ja[1] == {"role": "user", "content": "太郎さんはりんごを3個持っています。"}


def test_malformed_reasons():
    good = tf.format_response("p", "t", "1")
    assert tf.check_response(good.replace("<Thinking>", "")) == "missing_thinking"
    assert tf.check_response(good + "<Problem>x</Problem>") == "duplicate_problem"
    assert tf.check_response("<Thinking>t</Thinking>\n<Problem>p</Problem>\n<Answer>\\boxed{1}</Answer>") == "tags_out_of_order"
    assert tf.check_response(good.replace("\\boxed{1}", "1")) == "no_boxed_answer"
    assert tf.check_response(good.replace("\\boxed{1}", "\\boxed{ }")) == "empty_boxed_answer"


def test_nested_braces_in_boxed_on_math500_rows():
    path = shared_file("math500", "test.jsonl")
    rows = [json.loads(line) for line in path.open()]
    hits = 0
    for row in rows:
        text = tf.format_response(row["problem"], row["solution"].replace("\\boxed", "\\fbox"), row["answer"])
        assert tf.is_well_formed(text)
        hits += tf.answer_of(text) == row["answer"].strip()
    assert hits == len(rows)

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


def test_the_box_parser():
    text = r"a \boxed{1} b \boxed{\frac{1}{\sqrt{2}}} c \boxed{\{1, 2\}} d \boxed{\left\{ x \right.}"
    assert [text[s:e] for s, e in tf.boxed_spans(text)] == ["1", r"\frac{1}{\sqrt{2}}", r"\{1, 2\}", r"\left\{ x \right."]
    assert tf.last_boxed(r"so \boxed{5} and \fbox{6}.") == "6"  # \fbox counts for answers...
    assert tf.find_boxed(r"so \boxed{5} and \fbox{6}.") == (10, 11)  # ...not for the format
    assert tf.last_boxed(r"first \boxed{2} then \boxed 7 done") == "7"
    assert tf.last_boxed(r"\boxed{a \boxed{b}} \boxed{}") == r"a \boxed{b}"  # top level, non-empty
    assert tf.last_boxed(r"\boxed{3} then \boxed{unclosed") == "3"
    assert tf.last_boxed("no box") is None


def test_the_box_parser_is_linear():
    import time

    for text in ("\\boxed{" * 50000 + "1", "\\boxed{1} " + "\\boxed{" * 50000, "{" * 50000 + "\\boxed{1}"):
        t0 = time.perf_counter()
        tf.last_boxed(text), tf.check_response(text)
        assert time.perf_counter() - t0 < 1.0


def test_lenient_sections_of_malformed_responses():
    good = tf.format_response("p", "t 12", "7")
    assert tf.locate(good) == tf.parse_sections(good)
    truncated = "<Problem>p</Problem>\n<Thinking>t 12</Thinking>\n<Answer>\n\\boxed{7}"  # no </Answer>
    sec, reason = tf.parse(truncated)
    assert reason == "missing_answer" and truncated[slice(*sec.answer)] == "\n\\boxed{7}" and truncated[slice(*sec.boxed)] == "7"
    twice = good + "\n<Answer>\\boxed{8}</Answer>"  # the last <Answer> is the answer
    sec, reason = tf.parse(twice)
    assert reason == "duplicate_answer" and twice[slice(*sec.boxed)] == "8"
    no_answer = "<Thinking>t \\boxed{5}</Thinking> so \\boxed{6}"
    assert tf.locate(no_answer).answer is None and no_answer[slice(*tf.locate(no_answer).boxed)] == "6"

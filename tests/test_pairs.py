"""The DPO pair generator on traces the project makes itself (compass.data.demo's English and Japanese
word problems through the trace format), every guarantee of the stage checked on them: strategies,
written forms, fallbacks, validation, determinism, on-policy pairs graded by compass.answers. The same
checks run on real text too (GSM8K and MATH-500 rows from ../shared/data as traces), as extra evidence
that skips when those files are absent."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from compass.answers import is_correct as grade
from compass.pairs import corrupt
from compass.pairs.build import DEFAULT_WEIGHTS, build_pairs, check_row, make_settings, row_random
from compass.pairs.corrupt import NUMBER_RE, STRATEGIES, omit_thinking, tamper_answer, tamper_boxed, tamper_thinking_numbers
from compass.pairs.on_policy import mix_on_policy, samples_for
from compass.trace_format import format_response, parse, parse_sections, prompt_messages
from conftest import demo_traces, real_traces

# ------------------------------------------------------------------------------------------------
# Traces: the project's own, and real ones
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traces() -> list[dict]:
    return demo_traces(1000)


def _thinking(row) -> str:
    return row["response"].split("<Thinking>")[1].split("</Thinking>")[0]


def _parts(text: str):
    sec = parse_sections(text)
    assert sec is not None, text
    return sec


# ------------------------------------------------------------------------------------------------
# The checks, over any list of traces: each test below runs one on the project's own traces, and
# test_every_check_on_real_traces runs them all on real ones.
# ------------------------------------------------------------------------------------------------


def check_conversational_pairs(rows):
    pairs, stats = build_pairs(rows, seed=42)
    assert len(pairs) == len(rows) == stats["rows_in"] == stats["pairs_out"]
    by_id = {r["id"]: r for r in rows}
    for p in pairs:
        row = by_id[p["id"]]
        assert list(p) == ["id", "source", "lang", "strategy", "prompt", "chosen", "rejected"]
        assert p["source"] == row["source"] and p["lang"] == row["lang"]
        assert p["prompt"] == prompt_messages(row["problem"], row["lang"])
        assert [m["role"] for m in p["prompt"]] == ["system", "user"]
        assert p["chosen"] == [{"role": "assistant", "content": row["response"]}]
        assert len(p["rejected"]) == 1 and p["rejected"][0]["role"] == "assistant"
        assert p["rejected"][0]["content"] != p["chosen"][0]["content"]
        assert p["strategy"] in STRATEGIES
    assert sum(stats["strategies"].values()) == stats["pairs_out"]
    assert stats["pairs_out"] + sum(stats["dropped"].values()) == stats["rows_in"]


def check_weights(rows):
    pairs, stats = build_pairs(rows, seed=42)
    n = len(rows)
    drawn = Counter(stats["strategies"])
    for src, k in stats["fallback_paths"].items():  # count each row under the strategy first drawn
        a, b = src.split("->")
        drawn[a] += k
        drawn[b] -= k
    for name, w in DEFAULT_WEIGHTS.items():
        assert abs(drawn[name] / n - w) < 0.03, (name, drawn)
    _, skewed = build_pairs(rows, seed=42, weights={"omit_thinking": 0.0, "tamper_thinking_numbers": 0.1, "tamper_answer": 0.9})
    assert skewed["strategies"]["omit_thinking"] == 0
    assert skewed["strategies"]["tamper_answer"] > 0.8 * n


def check_omit_thinking(rows):
    for row in rows:
        text = row["response"]
        out = omit_thinking(text, random.Random(0))
        a, b = _parts(text), _parts(out)
        assert out[b.thinking[0] : b.thinking[1]] == ""
        assert "<Thinking></Thinking>" in out
        assert out[: b.thinking[0]] == text[: a.thinking[0]] and out[b.thinking[1] :] == text[a.thinking[1] :]


def _script(c: str) -> str:
    return "fw" if "\uff10" <= c <= "\uff19" else "ascii"


def _assert_same_written_form(before: str, after: str):
    """Only digits changed, each into a digit of the same script; no number got a new leading zero
    or became zero."""
    assert len(before) == len(after)
    for x, y in zip(before, after):
        if x != y:
            assert x.isdigit() and y.isdigit() and _script(x) == _script(y), (x, y)
    for m in NUMBER_RE.finditer(before):
        old, new = before[m.start() : m.end()], after[m.start() : m.end()]
        if old == new:
            continue
        int_part = re.split(r"[.\uff0e]", new)[0]
        digits = re.sub(r"[^0-9\uff10-\uff19]", "", int_part)
        if len(digits) > 1:
            assert digits[0] not in "0\uff10", (old, new)
        assert re.sub(r"[^0-9\uff10-\uff19]", "", new).strip("0\uff10"), (old, new)


def check_tamper_thinking_numbers(rows):
    changed = 0
    for row in rows:
        text = row["response"]
        out = tamper_thinking_numbers(text, row_random(42, row["id"]))
        sec = _parts(text)
        if not NUMBER_RE.search(text, *sec.thinking):
            assert out is None
            continue
        assert out is not None and out != text
        t0, t1 = sec.thinking
        assert out[:t0] == text[:t0] and out[t1:] == text[t1:]  # nothing outside <Thinking>
        _assert_same_written_form(text[t0:t1], out[t0:t1])
        changed += 1
    assert changed > 0.95 * len(rows)


def check_full_width_digits_stay_full_width(rows):
    to_fw = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))
    for row in rows[:200]:
        text = format_response(row["problem"], _thinking(row).translate(to_fw), row["answer"])
        out = tamper_thinking_numbers(text, row_random(1, row["id"]))
        t0, t1 = _parts(text).thinking
        assert out[:t0] == text[:t0] and out[t1:] == text[t1:]
        _assert_same_written_form(text[t0:t1], out[t0:t1])
        assert not re.search("[0-9]", out[t0:t1])


def check_tamper_answer(rows):
    for row in rows:
        text = row["response"]
        out = tamper_answer(text, row_random(42, row["id"]))
        sec = _parts(text)
        b0, b1 = sec.boxed
        if out is None:  # answers it cannot alter: no number, letter, opposite word or binary +/-
            assert not re.search(r"[0-9]", text[b0:b1])
            continue
        new = _parts(out)
        assert out[: new.boxed[0]] == text[:b0] and out[new.boxed[1] :] == text[b1:]
        assert out[new.boxed[0] : new.boxed[1]] != text[b0:b1]


def check_no_strategy_returns_the_chosen_text(rows):
    for row in rows:
        for name, fn in corrupt.CORRUPTIONS.items():
            for seed in range(3):
                out = fn(row["response"], row_random(seed, row["id"]))
                assert out is None or out != row["response"], name


def _lines(pairs):
    return [json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in pairs]


def check_same_pairs_whatever_the_row_order(rows):
    a, sa = build_pairs(rows, seed=42)
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)
    b, sb = build_pairs(shuffled, seed=42)
    assert a == b and sa == sb  # the bytes of the file: tests/test_pairs_cli.py
    assert [p["id"] for p in a] == sorted(p["id"] for p in a)  # sorted by id
    assert build_pairs(rows[:200], seed=43)[0] != build_pairs(rows[:200], seed=42)[0]
    alone, _ = build_pairs([rows[17]], seed=42)  # a row depends only on its own id and the seed
    assert alone[0] in a


REASONS = {f"{kind}_{tag}" for kind in ("missing", "duplicate") for tag in ("problem", "thinking", "answer")} | {
    "tags_out_of_order", "no_boxed_answer", "empty_boxed_answer"}


def _answer_first(text: str) -> str:
    sec = _parts(text)
    a0, a1 = sec.answer
    problem = text[: sec.thinking[0] - len("<Thinking>")]
    thinking = text[sec.thinking[0] - len("<Thinking>") : sec.thinking[1] + len("</Thinking>")]
    return problem + text[a0 - len("<Answer>") : a1 + len("</Answer>")] + "\n" + thinking


def check_the_parser_on_randomly_broken_traces(rows):
    """Tags dropped, duplicated or moved at random: every verdict names a known reason, a text is
    well formed exactly when its tags come in the one order with a non-empty box last in <Answer>,
    and the box found (leniently, in a malformed text) is a box."""
    rng = random.Random(0)
    tags = ["<Problem>", "</Problem>", "<Thinking>", "</Thinking>", "<Answer>", "</Answer>", "\\boxed{", "}"]
    texts = []
    for row in rows[:400]:
        t = row["response"]
        texts.append(t)
        for _ in range(6):
            u = t
            for _ in range(rng.randint(1, 3)):
                tag = rng.choice(tags)
                i = u.find(tag)
                if i == -1:
                    continue
                op = rng.randrange(3)
                if op == 0:
                    u = u[:i] + u[i + len(tag):]
                else:
                    j = rng.randrange(len(u) + 1)
                    u = (u[:i] + u[i + len(tag):]) if op == 2 else u
                    u = u[:j] + tag + u[j:]
            texts.append(u)
    texts += [_answer_first(rows[0]["response"]), "", "<Problem></Problem><Thinking></Thinking><Answer>\\boxed{}</Answer>",
              "<Problem>p</Problem><Thinking>t</Thinking><Answer>\\boxed{ \n}</Answer>", "<Answer>\\boxed{1}</Answer>",
              "<Problem><Thinking></Problem></Thinking><Answer>\\boxed{1}</Answer>"]
    order = ["<Problem>", "</Problem>", "<Thinking>", "</Thinking>", "<Answer>", "</Answer>"]
    bad = 0
    for t in texts:
        sections, reason = parse(t)
        assert reason is None or reason in REASONS, reason
        in_order = re.findall(r"</?(?:Problem|Thinking|Answer)>", t) == order
        assert (reason is None) == (in_order and reason not in ("no_boxed_answer", "empty_boxed_answer")), (reason, t[:200])
        if sections.boxed is not None:  # leniently found or not, the box is a box
            assert t[: sections.boxed[0]].endswith("\\boxed{") and t[sections.boxed[1]] == "}"
        bad += reason is not None
    assert bad > len(texts) // 2


CHECKS = [check_conversational_pairs, check_weights, check_omit_thinking, check_tamper_thinking_numbers,
          check_full_width_digits_stay_full_width, check_tamper_answer, check_no_strategy_returns_the_chosen_text,
          check_same_pairs_whatever_the_row_order, check_the_parser_on_randomly_broken_traces]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_on_the_projects_own_traces(check, traces):
    check(traces)


def test_every_row_check_on_real_traces():
    """A third of GSM8K test and all of MATH-500 as traces (their worked solutions as the thinking): real
    wording, thousands separators, decimals, LaTeX answers of every kind, through every check of one
    row (the weights, the row order and three seeds per strategy are checked on the project's traces;
    real traces in any order through the CLI in tests/test_pairs_cli.py). Skips without ../shared/data."""
    real = real_traces()
    real = [r for r in real if r["source"] == "gsm8k"][::3] + [r for r in real if r["source"] == "math500"]
    for check in CHECKS:
        if check not in (check_weights, check_same_pairs_whatever_the_row_order, check_no_strategy_returns_the_chosen_text):
            check(real)
    for answer, pattern, value in ANSWER_KINDS:  # the kinds MATH-500's gold answers have, on their own rows
        for row in (r for r in real if r["answer"] == answer):
            check_answer_kind(row, answer, pattern, value)


# ------------------------------------------------------------------------------------------------
# Each strategy on written forms and kinds of answer
# ------------------------------------------------------------------------------------------------


def test_tampered_numbers_keep_their_written_form():
    rng = random.Random(5)
    for written in ["1,000", "10,\\!080", "1{,}000", "0.5", ".35625", "3.14", "12%", "$1,362.18", "-2", "-0.75",
                    "\uff11\uff12\uff13", "\uff11\uff0c\uff10\uff10\uff10", "\uff13\uff0e\uff15", "0", "9", "99", "100"]:
        for _ in range(50):
            out = "".join(
                written[:m.start()] + corrupt.perturb_number(m.group(), rng) + written[m.end():]
                for m in [NUMBER_RE.search(written)]
            )
            assert out != written
            _assert_same_written_form(written, out)
            assert out[0] == written[0] or written[0].isdigit()  # sign / currency kept
            assert out.endswith("%") == written.endswith("%")


def _frac(s):
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", s)
    return m and Fraction(int(m.group(1)), int(m.group(2)))


# (answer, pattern its tampered value must match, value of an answer string or None)
ANSWER_KINDS = [
    ("\\frac{14}{3}", r"\\frac\{\d+\}\{[1-9]\d*\}", _frac),
    ("-2", r"-[1-9]\d*", int),
    ("1,000", r"[1-9],\d{3}", lambda s: int(s.replace(",", ""))),
    ("0.5", r"\d\.\d", float),
    ("\\text{(C)}", r"\\text\{\([ABDE]\)\}", str),
    ("\\sqrt{2}", r"\\sqrt\{[1-9]\d*\}", str),
    ("72", r"[1-9]\d", int),
    ("-7", r"-[1-9]", int),
    ("10,000", r"[1-9]\d,\d{3}", lambda s: int(s.replace(",", ""))),
    ("\\dfrac{33}{100}", r"\\dfrac\{\d+\}\{[1-9]\d*\}", str),
    ("-\\frac{3}{8}", r"-\\frac\{\d+\}\{[1-9]\d*\}", str),
    ("52_8", r"[1-7][0-7]_8", str),
    ("\\$18.90", r"\\\$\d\d\.\d\d", str),
    ("30^\\circ", r"\d\d\^\\circ", str),
    ("\\frac14", r"\\frac[1-9][1-9]", str),
    ("(C)", r"\([ABDE]\)", str),
    ("\\text{even}", r"\\text\{odd\}", str),
    ("p - q", r"p \+ q", str),
]


def check_answer_kind(row, answer, pattern, value):
    seen = set()
    for i in range(40):
        out = tamper_answer(row["response"], row_random(i, row["id"]))
        assert out is not None
        sec = _parts(out)
        new = out[sec.boxed[0] : sec.boxed[1]]
        assert re.fullmatch(pattern, new), (answer, new)
        assert value(new) != value(answer)
        seen.add(new)
    if answer not in ("\\text{even}", "p - q"):  # those have a single opposite
        assert len(seen) > 1  # not one fixed replacement


@pytest.mark.parametrize("answer,pattern,value", ANSWER_KINDS, ids=[a for a, _, _ in ANSWER_KINDS])
def test_tamper_answer_keeps_the_kind_of_value(answer, pattern, value, traces):
    base = traces[0]  # a trace of the project's own, its answer replaced
    row = dict(base, id=f"{base['id']}-as-{answer}", answer=answer, response=format_response(base["problem"], _thinking(base), answer))
    check_answer_kind(row, answer, pattern, value)


def test_answers_that_cannot_be_altered():
    rng = random.Random(0)
    for box in ["\\text{Navin}", "\\pi", "", "   ", "x"]:
        assert tamper_boxed(box, rng) is None


# ------------------------------------------------------------------------------------------------
# Fallbacks and the rejected != chosen guarantee
# ------------------------------------------------------------------------------------------------


def _with(rows, suffix, thinking=None, answer=None):
    """The rows with another thinking and/or answer (and an id of their own)."""
    out = []
    for r in rows:
        answer_ = r["answer"] if answer is None else answer
        thinking_ = _thinking(r) if thinking is None else thinking
        out.append(dict(r, id=r["id"] + suffix, answer=answer_, response=format_response(r["problem"], thinking_, answer_)))
    return out


def test_fallbacks_on_empty_thinking_no_numbers_and_fixed_answers(traces):
    empty = _with(traces[:300], "-empty", thinking="")
    pairs, stats = build_pairs(empty, seed=42)
    assert len(pairs) == len(empty)  # every row found another strategy
    assert stats["strategies"]["omit_thinking"] == stats["strategies"]["tamper_thinking_numbers"] == 0
    assert stats["fallbacks"]["omit_thinking"] > 50 and stats["fallbacks"]["tamper_thinking_numbers"] > 50
    assert set(stats["fallback_paths"]) <= {"omit_thinking->tamper_answer", "tamper_thinking_numbers->tamper_answer",
                                            "omit_thinking->tamper_thinking_numbers", "tamper_thinking_numbers->omit_thinking"}

    words = _with(traces[300:360], "-words", thinking="We count the cases carefully.", answer="\\text{Navin}")
    pairs, stats = build_pairs(words, seed=42)
    assert {p["strategy"] for p in pairs} == {"omit_thinking"}
    assert stats["fallbacks"].get("tamper_answer", 0) + stats["fallbacks"].get("tamper_thinking_numbers", 0) > 20

    hopeless = _with(traces[400:410], "-none", thinking="", answer="\\pi")
    pairs, stats = build_pairs(hopeless + words[:5], seed=42)
    assert len(pairs) == 5 and stats["dropped"] == {"no_applicable_strategy": 10}
    assert stats["rows_in"] == 15


def test_a_zero_weight_strategy_is_never_a_fallback(traces):
    empty = _with(traces[:50], "-e", thinking="")
    pairs, stats = build_pairs(empty, seed=42, weights={"omit_thinking": 1.0, "tamper_thinking_numbers": 1.0, "tamper_answer": 0.0})
    assert pairs == [] and stats["dropped"] == {"no_applicable_strategy": 50}


def test_corrupt_reports_the_drawn_and_the_used_strategy(traces):
    (row,) = _with(traces[:1], "", thinking="")
    seen = set()
    for seed in range(30):
        out, used, drawn = corrupt.corrupt(row["response"], row_random(seed, "x"), DEFAULT_WEIGHTS)
        assert used == "tamper_answer" and out != row["response"]
        seen.add(drawn)
    assert seen == set(STRATEGIES)


# ------------------------------------------------------------------------------------------------
# pairs.require_tags
# ------------------------------------------------------------------------------------------------


def _malformed(rows):
    """Traces broken in each way the validator names (and one with no tags at all)."""
    out = []
    for i, (reason, fn) in enumerate([
        ("missing_thinking", lambda t: t.replace("<Thinking>", "")),
        ("duplicate_answer", lambda t: t + "\n<Answer>\\boxed{1}</Answer>"),
        ("tags_out_of_order", _answer_first),
        ("no_boxed_answer", lambda t: t.replace("\\boxed{", "\\fbox{")),
        ("missing_problem", lambda t: re.sub(r"</?(Problem|Thinking|Answer)>", "", t)),
    ]):
        for k in range(3):
            row = rows[i * 3 + k]
            out.append((reason, dict(row, id=f"{row['id']}-{reason}", response=fn(row["response"]))))
    return out


def test_require_tags_drops_malformed_rows_by_reason(traces):
    from compass.trace_format import check_response

    bad = _malformed(traces[500:])
    for reason, row in bad:
        assert check_response(row["response"]) == reason, (reason, row["response"][:300])
    pairs, stats = build_pairs(traces[:100] + [r for _, r in bad], seed=42, require_tags=True)
    assert len(pairs) == 100
    assert stats["dropped"] == {f"malformed:{reason}": 3 for reason in
                                ["missing_thinking", "duplicate_answer", "tags_out_of_order", "no_boxed_answer", "missing_problem"]}
    assert stats["require_tags"] is True


def test_without_require_tags_malformed_rows_pass_through_and_are_still_corrupted(traces):
    bad = [r for _, r in _malformed(traces[500:])]
    pairs, stats = build_pairs(traces[:100] + bad, seed=42)
    by_id = {p["id"]: p for p in pairs}
    for row in bad:
        p = by_id[row["id"]]
        assert p["chosen"][0]["content"] == row["response"]  # untouched by the validator
        assert p["rejected"][0]["content"] != row["response"]
    # The tag-less row has no thinking to edit: only its answer could change.
    tagless = [r for r in bad if "<Thinking>" not in r["response"] and "<Answer>" not in r["response"]]
    assert tagless and all(by_id[r["id"]]["strategy"] == "tamper_answer" for r in tagless)
    # A row whose thinking tags are gone keeps its thinking text as it was.
    for row in bad:
        if row["id"].endswith("missing_thinking"):
            rej = by_id[row["id"]]["rejected"][0]["content"]
            assert by_id[row["id"]]["strategy"] == "tamper_answer"
            assert rej.split("\\boxed{")[0] == row["response"].split("\\boxed{")[0]


def test_a_section_opened_inside_the_previous_one_is_out_of_order(traces):
    # check_response used to accept "<Thinking></Problem>" (open tag right before the close tag).
    from compass.trace_format import check_response, is_well_formed

    row = traces[0]
    for a, b in [("<Thinking>", "</Problem>"), ("<Answer>", "</Thinking>")]:
        text = row["response"].replace(f"{b}\n{a}", f"{a}{b}\n")
        assert text != row["response"]
        assert check_response(text) == "tags_out_of_order" and not is_well_formed(text)
    pairs, stats = build_pairs([dict(row, response=row["response"].replace("</Problem>\n<Thinking>", "<Thinking></Problem>\n"))],
                               require_tags=True)
    assert pairs == [] and stats["dropped"] == {"malformed:tags_out_of_order": 1}


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------


def test_row_random_is_the_standard_generator_keyed_by_seed_and_id():
    r = row_random(42, "demo-train-000000")
    assert type(r) is random.Random
    assert [r.random() for _ in range(5)] == [x.random() for x in [random.Random("42:demo-train-000000")] for _ in range(5)]
    assert row_random(42, 7).random() == row_random(42, "7").random()  # ids are compared as text
    assert row_random(43, 7).random() != row_random(42, 7).random()


# ------------------------------------------------------------------------------------------------
# Rows that are not traces
# ------------------------------------------------------------------------------------------------


def test_check_row_names_the_problem():
    assert check_row([1]) == "expected a JSON object, got list"
    assert check_row({"id": "a", "problem": "p"}) == "missing field(s) response"
    assert check_row({"id": None, "problem": "p", "response": "r"}) == "field id must be a string or an integer"
    assert check_row({"id": True, "problem": "p", "response": "r"}) == "field id must be a string or an integer"
    assert check_row({"id": 1, "problem": "p", "response": 3}) == "field response must be a string"
    assert check_row({"id": 1, "problem": "p", "response": "r", "lang": 5}) == "field lang must be a string or null"
    assert check_row({"id": 1, "problem": "p", "response": "r"}) is None
    with pytest.raises(ValueError, match="row 1: missing field"):
        build_pairs([{"id": 1, "problem": "p", "response": "r"}, {"id": 2}])


def test_bad_weights_are_user_errors():
    from compass.io import CompassError

    with pytest.raises(CompassError, match="at least one > 0"):
        make_settings(weights={"omit_thinking": 0, "tamper_thinking_numbers": 0, "tamper_answer": 0})
    with pytest.raises(CompassError, match="unknown strategy"):
        make_settings(weights={"shuffle_steps": 1})
    with pytest.raises(CompassError, match="needs on-policy samples"):
        make_settings(on_policy_ratio=0.5)


# ------------------------------------------------------------------------------------------------
# On-policy pairs, graded by the answer layer (compass.answers)
# ------------------------------------------------------------------------------------------------


def _sample(row, answer: str) -> str:
    return format_response(row["problem"], "Let me redo this. " + _thinking(row)[:200], answer)


def test_mix_on_policy_picks_a_wrong_sample_and_falls_back_otherwise(traces):
    rows = traces[:200]
    samples = {}
    for i, row in enumerate(rows):
        gold = row["answer"]
        if i % 4 == 0:
            samples[row["id"]] = [_sample(row, gold), _sample(row, str(int(gold) + 1)), "I am not sure."]
        elif i % 4 == 1:
            samples[row["id"]] = [_sample(row, gold), _sample(row, f"{gold}.0")]  # the model never fails
        elif i % 4 == 2:
            samples[row["id"]] = []
        # i % 4 == 3: no samples at all
    pairs, stats = build_pairs(rows, seed=42, samples=samples, is_correct=grade, on_policy_ratio=1.0)
    assert len(pairs) == len(rows)
    by_id = {p["id"]: p for p in pairs}
    for i, row in enumerate(rows):
        p = by_id[row["id"]]
        if i % 4 == 0:
            assert p["strategy"] == "on_policy"
            rej = p["rejected"][0]["content"]
            assert rej in samples[row["id"]] and rej != samples[row["id"]][0]  # a wrong one (or the one without an answer)
        else:
            assert p["strategy"] in STRATEGIES  # synthetic fallback
    out = stats["on_policy"]["outcomes"]
    assert out == {"not_drawn": 0, "no_samples": 100, "no_gold": 0, "no_wrong_sample": 50, "on_policy": 50}
    assert stats["strategies"]["on_policy"] == 50 and stats["on_policy"]["share"] == 0.25

    # The order of the samples does not matter.
    shuffled = {k: list(reversed(v)) for k, v in samples.items()}
    again, _ = build_pairs(list(reversed(rows)), seed=42, samples=shuffled, is_correct=grade, on_policy_ratio=1.0)
    assert _lines(again) == _lines(pairs)


def test_on_policy_ratio_mixes_on_policy_and_synthetic_pairs(traces):
    rows = traces[:600]
    samples = {r["id"]: [_sample(r, str(int(r["answer"]) + 3))] for r in rows}
    pairs, stats = build_pairs(rows, seed=42, samples=samples, is_correct=grade, on_policy_ratio=0.3)
    share = stats["strategies"]["on_policy"] / len(pairs)
    assert 0.24 < share < 0.36 and stats["on_policy"]["outcomes"]["not_drawn"] == len(rows) - stats["strategies"]["on_policy"]
    # The synthetic pairs are the same ones as without on-policy mode.
    synthetic, _ = build_pairs(rows, seed=42)
    plain = {p["id"]: p for p in synthetic}
    for p in pairs:
        if p["strategy"] != "on_policy":
            assert p == plain[p["id"]]


def test_mix_on_policy_alone():
    row = {"id": "q1", "problem": "1+1?", "response": format_response("1+1?", "1+1=2", "2"), "answer": "2"}
    rej, outcome = mix_on_policy(row, ["\\boxed{2}", "\\boxed{3}", "\\boxed{ 2 }"], seed=1, ratio=1.0, is_correct=grade)
    assert (rej, outcome) == ("\\boxed{3}", "on_policy")
    assert mix_on_policy(row, ["\\boxed{2}"], seed=1, ratio=1.0, is_correct=grade) == (None, "no_wrong_sample")
    assert mix_on_policy(row, None, seed=1, ratio=1.0, is_correct=grade) == (None, "no_samples")
    assert mix_on_policy(row, ["\\boxed{3}"], seed=1, ratio=0.0, is_correct=grade) == (None, "not_drawn")
    no_gold = dict(row, answer=None, response="no answer here")
    assert mix_on_policy(no_gold, ["\\boxed{3}"], seed=1, ratio=1.0, is_correct=grade) == (None, "no_gold")
    # Gold from the response's boxed answer when the row has no `answer`.
    assert mix_on_policy(dict(row, answer=None), ["\\boxed{3}"], seed=1, ratio=1.0, is_correct=grade) == ("\\boxed{3}", "on_policy")


def test_samples_are_found_by_prompt_id_for_distill_sample_ids():
    samples = {"p1": ["a"], "7": ["b"]}
    assert samples_for(samples, "p1") == ["a"]
    assert samples_for(samples, "p1#s2") == ["a"]
    assert samples_for(samples, 7) == ["b"]
    assert samples_for(samples, "p2#s1") is None and samples_for(samples, "p1#sx") is None


def test_on_policy_with_math_answers(traces):
    rows = traces[:12] + [r for answer in ("\\frac{14}{3}", "-2", "\\text{(C)}") for r in _with(traces[20:21], f"-{answer}", answer=answer)]
    samples = {}
    for r in rows:
        wrong = tamper_answer(r["response"], row_random(0, r["id"]))
        samples[r["id"]] = [r["response"].replace("<Thinking>", "<Thinking>Again: "), wrong]
    pairs, stats = build_pairs(rows, seed=42, samples=samples, is_correct=grade, on_policy_ratio=1.0)
    assert stats["on_policy"]["outcomes"]["on_policy"] == len(rows)
    for p in pairs:
        assert p["rejected"][0]["content"] == samples[p["id"]][1]

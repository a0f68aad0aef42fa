import re

from compass.data import demo
from compass.trace_format import detect_lang


def test_splits_are_deterministic_disjoint_and_bilingual():
    train, test = demo.generate(500, 100, seed=7)
    again = demo.generate(500, 100, seed=7)
    assert (train, test) == again
    assert demo.generate(500, 100, seed=8)[0] != train
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert {r["lang"] for r in train} == {"en", "ja"}
    for r in train + test:
        assert detect_lang(r["problem"]) == r["lang"]


def test_answers_are_the_arithmetic_of_the_solution():
    train, _ = demo.generate(300, 10, seed=1)
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for r in train:
        m = re.search(r"(\d+) ([-+*]) (\d+) = (\d+)", r["solution"])
        a, op, b, c = m.groups()
        assert ops[op](int(a), int(b)) == int(c) == int(r["answer"]), r
        assert r["answer"] in r["solution"] and str(a) in r["problem"] and str(b) in r["problem"]


def test_too_many_requested_is_an_error():
    try:
        demo.generate(10**6, 1, seed=0)
    except ValueError as e:
        assert "data.demo" in str(e)
    else:
        raise AssertionError("expected ValueError")

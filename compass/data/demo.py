"""Synthetic one-step arithmetic word problems, in English and Japanese, with worked solutions.

This is the project's own demo data: small numbers so a tiny model can learn the arithmetic on a
laptop CPU in minutes. Generation is a pure function of its arguments; the train and test splits
are drawn from one shuffled pool of distinct problems, so no test problem appears in train.
"""

from __future__ import annotations

import random

NAMES = {
    "en": ["Tom", "Emma", "Ken", "Lucy", "Sam", "Mia", "Ben", "Anna"],
    "ja": ["太郎", "花子", "健太", "さくら", "翔", "美咲", "大輔", "結衣"],
}
ITEMS = {
    "en": ["apples", "pencils", "stickers", "marbles", "books", "cookies"],
    "ja": ["りんご", "鉛筆", "シール", "ビー玉", "本", "クッキー"],
}

# (problem, worked solution) templates per op and language. {c} is the result.
TEMPLATES = {
    ("add", "en"): (
        "{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?",
        "{name} starts with {a} {item} and gets {b} more, so {a} + {b} = {c}.",
    ),
    ("sub", "en"): (
        "{name} has {a} {item}. {name} gives away {b}. How many {item} are left?",
        "{name} starts with {a} {item} and gives away {b}, so {a} - {b} = {c}.",
    ),
    ("mul", "en"): (
        "{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy?",
        "There are {a} bags of {b} {item}, so {a} * {b} = {c}.",
    ),
    ("add", "ja"): (
        "{name}さんは{item}を{a}個持っています。さらに{b}個もらいました。{item}は全部で何個ですか？",
        "最初に{a}個あり、{b}個増えたので、{a} + {b} = {c}です。",
    ),
    ("sub", "ja"): (
        "{name}さんは{item}を{a}個持っています。{b}個あげました。{item}は何個残っていますか？",
        "最初に{a}個あり、{b}個減ったので、{a} - {b} = {c}です。",
    ),
    ("mul", "ja"): (
        "{name}さんは{item}が{b}個入った袋を{a}袋買いました。{item}は全部で何個ですか？",
        "{b}個入りの袋が{a}袋なので、{a} * {b} = {c}です。",
    ),
}

OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}


def _operands(op: str, max_operand: int) -> list[tuple[int, int]]:
    pairs = [(a, b) for a in range(1, max_operand + 1) for b in range(1, max_operand + 1)]
    if op == "sub":
        pairs = [(a, b) for a, b in pairs if a > b]
    return pairs


def all_problems(max_operand: int, ops: list[str], langs: list[str]) -> list[dict]:
    """Every distinct (op, lang, a, b, name, item) problem, in a fixed order."""
    rows = []
    for lang in langs:
        for op in ops:
            problem_t, solution_t = TEMPLATES[(op, lang)]
            for a, b in _operands(op, max_operand):
                for name in NAMES[lang]:
                    for item in ITEMS[lang]:
                        c = OPS[op](a, b)
                        fill = dict(name=name, item=item, a=a, b=b, c=c)
                        rows.append(
                            {
                                "source": "demo",
                                "lang": lang,
                                "problem": problem_t.format(**fill),
                                "solution": solution_t.format(**fill),
                                "answer": str(c),
                                "op": op,
                            }
                        )
    return rows


def generate(
    n_train: int, n_test: int, *, seed: int, max_operand: int = 9, ops=("add", "sub", "mul"), langs=("en", "ja")
) -> tuple[list[dict], list[dict]]:
    """Deterministic (train, test) splits of distinct problems; ids are stable for a given seed."""
    pool = all_problems(max_operand, list(ops), list(langs))
    if n_train + n_test > len(pool):
        raise ValueError(
            f"data.demo asks for {n_train + n_test} problems but only {len(pool)} distinct ones exist "
            f"with max_operand={max_operand}, ops={list(ops)}, langs={list(langs)}"
        )
    rng = random.Random(seed)
    rng.shuffle(pool)
    train = [{"id": f"demo-train-{i:06d}", **row} for i, row in enumerate(pool[:n_train])]
    test = [{"id": f"demo-test-{i:06d}", **row} for i, row in enumerate(pool[n_train : n_train + n_test])]
    return train, test

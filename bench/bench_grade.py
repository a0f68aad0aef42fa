"""Grading throughput on one core: 10k realistic model outputs built from GSM8K-like problems.

    .venv/bin/python bench/bench_grade.py [--n 10000] [--seed 0]

Outputs are made from the GSM8K solutions in ../shared/data (never copied into the repository) or,
when that is absent, from synthetic GSM8K-like word problems. They mix the forms real models write:
the XML format with \\boxed{} (right and wrong answers), "The answer is N.", "#### N", Japanese
"答えは N ドルです。", bare CoT ending in a number, truncated traces, several \\boxed{}, LaTeX
fractions and a few MATH-style answers that need math-verify. The timed part is the whole
`compass grade` (reading the JSONL, grading, writing it back); prints outputs/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/machine.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compass import cli  # noqa: E402
from compass.answers import sandbox  # noqa: E402

SHARED = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data"))


def _gsm8k_rows() -> list[tuple[str, str, str]]:
    """(question, reasoning, gold) triples."""
    rows = []
    for name in ("test.jsonl", "train.jsonl"):
        path = SHARED / "gsm8k" / name
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    reasoning, gold = r["answer"].rsplit("####", 1)
                    reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()
                    rows.append((r["question"], reasoning, gold.strip().replace(",", "")))
    if rows:
        return rows
    rng = random.Random(1)
    for _ in range(2000):  # synthetic fallback
        a, b, c = rng.randint(2, 99), rng.randint(2, 30), rng.randint(1, 9)
        q = f"A shop sells {a} apples a day at ${b} each and pays ${c} a day in rent. How much does it keep each day?"
        reasoning = f"It earns {a} * {b} = ${a * b} a day.\nAfter rent it keeps {a * b} - {c} = ${a * b - c}."
        rows.append((q, reasoning, str(a * b - c)))
    return rows


def _xml(problem: str, thinking: str, boxed: str) -> str:
    return f"<Problem>{problem}</Problem>\n<Thinking>{thinking}</Thinking>\n<Answer>\n\\boxed{{{boxed}}}\n</Answer>"


def make_outputs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    base = _gsm8k_rows()
    out = []
    for i in range(n):
        q, reasoning, gold = base[rng.randrange(len(base))]
        wrong = str(int(float(gold)) + rng.choice([-2, -1, 1, 10])) if re.fullmatch(r"-?\d+", gold) else gold + "1"
        ans = gold if rng.random() < 0.7 else wrong
        k = i % 12
        if k in (0, 1, 2, 3):
            pred = _xml(q, reasoning, ans)
        elif k == 4:
            pred = _xml(q, reasoning, f"\\${int(ans):,}" if re.fullmatch(r"\d+", ans) else ans)
        elif k == 5:
            pred = f"{reasoning}\nThe answer is {ans}."
        elif k == 6:
            pred = f"{reasoning}\n#### {ans}"
        elif k == 7:
            pred = f"<Problem>{q}</Problem>\n<Thinking>{reasoning}</Thinking>\n<Answer>\n答えは{ans}ドルです。\n</Answer>"
        elif k == 8:
            pred = f"{reasoning}\nSo the total is {ans} dollars."
        elif k == 9:
            pred = f"<Problem>{q}</Problem>\n<Thinking>{reasoning[: len(reasoning) // 2]}"  # truncated
        elif k == 10:
            pred = f"{reasoning}\nFirst guess: \\boxed{{{wrong}}}. Re-checking, the answer is \\boxed{{{ans}}}."
        else:  # a MATH-style answer that needs the exact / symbolic path
            num, den = rng.randint(1, 30), rng.randint(2, 30)
            gold = f"\\frac{{{num}}}{{{den}}}"
            shown = rng.choice([f"\\dfrac{{{num}}}{{{den}}}", f"{num}/{den}", f"\\frac{{{2 * num}}}{{{2 * den}}}", f"\\sqrt{{{num * num}}}/{den}"])
            pred = _xml("Compute the ratio.", "We simplify.", shown)
        out.append({"prediction": pred, "answer": gold})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = make_outputs(args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "predictions.jsonl", Path(tmp) / "graded.jsonl"
        src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["grade", "--predictions", str(src), "--out", str(out)])  # the whole `compass grade`
        dt = time.perf_counter() - t0
        if rc != 0:
            return rc
        graded = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    n = len(graded)
    forms: dict = {}
    for g in graded:
        forms[g["extracted_form"] or "none"] = forms.get(g["extracted_form"] or "none", 0) + 1
    print(
        f"compass grade: {n} outputs in {dt:.2f} s on one core: {n / dt:,.0f} outputs/s "
        f"(read, grade, write; accuracy {sum(g['correct'] for g in graded) / n:.3f}, "
        f"math-verify calls {sandbox.stats['calls']}; {os.cpu_count()} CPUs, {cpu_name()}, "
        f"Python {platform.python_version()})"
    )
    print("forms:", json.dumps(dict(sorted(forms.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

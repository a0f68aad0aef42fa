"""Scoring is never the bottleneck: grade 10k math outputs and parse 10k EDINET answers on one core.

    python bench/bench_eval.py [--n 10000]

Outputs are realistic mixes (well-formed XML with a boxed answer, GSM8K-style "####" lines, prose
answers, Japanese answers, malformed JSON ...). Prints rows/s for each scorer and the ELO of 10k
votes; exits non-zero when grading 10k outputs takes more than 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compass.eval import edinet, elo  # noqa: E402
from compass.eval.evaluate import score  # noqa: E402
from compass.answers import is_correct  # noqa: E402
from compass.trace_format import format_response  # noqa: E402


def math_outputs(n: int, rng: random.Random) -> tuple[list[dict], list[str]]:
    rows, outs = [], []
    for i in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        gold = a * b
        guess = gold if rng.random() < 0.6 else gold + rng.randint(1, 9)
        kind = i % 6
        if kind == 0:
            out = format_response(f"What is {a} times {b}?", f"{a} * {b} = {guess}", str(guess))
        elif kind == 1:
            out = f"{a} times {b} is {guess:,}.\n#### {guess}"
        elif kind == 2:
            out = f"Let me compute. {a} x {b} = {guess}. The answer is ${guess:,}."
        elif kind == 3:
            out = f"{a}×{b}を計算すると{guess}です。答えは{guess}個です。"
        elif kind == 4:
            out = f"<Thinking>{a}*{b}</Thinking><Answer>\\boxed{{\\frac{{{2 * guess}}}{{2}}}}</Answer>"
        else:
            out = "I am not sure."
        rows.append({"id": i, "lang": "en", "problem": f"{a}*{b}", "answer": str(gold)})
        outs.append(out)
    return rows, outs


def edinet_outputs(n: int, rng: random.Random) -> tuple[list[dict], list[str]]:
    rows, outs = [], []
    for i in range(n):
        label = rng.randint(0, 1)
        p = rng.random()
        body = {"reasoning": "売上高と利益の推移から判断しました。{注記}" * 5, "prob": round(p, 2), "prediction": int(p > 0.5)}
        kind = i % 4
        if kind == 0:
            out = "JSON:\n```json\n" + json.dumps(body, ensure_ascii=False, indent=2) + "\n```"
        elif kind == 1:
            out = "分析: " + json.dumps(body, ensure_ascii=False)
        elif kind == 2:
            out = "```json\n{\"reasoning\": \"truncated..."
        else:
            out = "The report shows no red flags. " * 20
        rows.append({"id": i, "label": label})
        outs.append(out)
    return rows, outs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(0)
    rows, outs = math_outputs(args.n, rng)
    t0 = time.perf_counter()
    _, summary = score(rows, outs, is_correct)
    t_math = time.perf_counter() - t0
    print(f"math grading: {args.n} outputs in {t_math:.2f}s ({args.n / t_math:,.0f}/s), accuracy {summary['accuracy']:.3f}")
    rows, outs = edinet_outputs(args.n, rng)
    t0 = time.perf_counter()
    _, s = edinet.score("fraud_detection", rows, outs)
    t_ed = time.perf_counter() - t0
    print(f"EDINET parsing + metrics: {args.n} answers in {t_ed:.2f}s ({args.n / t_ed:,.0f}/s), "
          f"parse failures {s['parse_failure_rate']:.2f}, roc_auc {s['roc_auc']:.3f}")
    models = [f"m{i}" for i in range(6)]
    games = []
    for _ in range(args.n):
        a, b = rng.sample(models, 2)
        games.append((a, b, rng.choice([0.0, 0.5, 1.0])))
    t0 = time.perf_counter()
    elo.elo_ratings(games, rounds=20)
    t_elo = time.perf_counter() - t0
    print(f"ELO: {args.n} votes x 20 orders in {t_elo:.2f}s")
    return 0 if t_math < 30 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of `compass pairs`: make a realistic traces file, run the real CLI path, print rows/s.

    .venv/bin/python bench/bench_pairs.py                 # 600,000 rows, config workers (1)
    .venv/bin/python bench/bench_pairs.py --rows 50000 --workers 2   # passes --set pairs.workers=2

The input is generated (seeded) in a temporary directory: GSM8K-like word problems in English
(70%) and Japanese (30%) with multi-step worked solutions as the <Thinking> (calculator
annotations, money, percentages, decimals, thousands separators), about 1.3 kB per JSONL row,
and boxed answers of the kinds the seed corpus has (integers, thousands, decimals, negatives,
fractions, choice letters). The timed part is exactly `compass pairs --traces IN --out OUT`
(JSON reading, validation, pair generation, sorting, writing, stats), run in a subprocess with
`--set pairs.require_tags=true` (as the Phase 2 config runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/machine.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compass.trace_format import format_response, system_prompt  # noqa: E402

NAMES_EN = ["Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina", "Randy", "Joy"]
NAMES_JA = ["太郎", "花子", "健太", "さくら", "翔", "美咲", "大輔", "結衣", "陽菜", "蓮"]
ITEMS_EN = ["clips", "apples", "pages", "cookies", "marbles", "tickets", "stickers", "pencils", "boxes", "eggs"]
ITEMS_JA = ["クリップ", "りんご", "ページ", "クッキー", "ビー玉", "チケット", "シール", "鉛筆", "箱", "卵"]

STEPS_EN = [
    "{name} sold {a} {item} in April and half as many in May, so in May {name} sold {a}/2 = <<{a}/2={h}>>{h} {item}.",
    "Altogether that makes {a} + {h} = <<{a}+{h}={s}>>{s} {item}.",
    "Each {item} costs ${p:.2f}, so {s} {item} cost {s} x ${p:.2f} = ${c:,.2f}.",
    "A discount of {pct}% saves {pct}/100 x ${c:,.2f} = ${d:,.2f}, leaving ${c2:,.2f} to pay.",
    "Working {m} minutes at ${r} per hour earns {r}/60 x {m} = ${e:.1f}.",
    "Over {w} weeks the total is {w} * {s} = <<{w}*{s}={ws}>>{ws}, which is {ws:,} in all.",
    "The difference is {ws} - {a} = <<{ws}-{a}={df}>>{df}.",
    "Let x be the number of {item}. Then 3x + {a} = {t3}, so 3x = {t3} - {a} = {x3} and x = {x3}/3 = {x}.",
    "Checking: 3 * {x} + {a} = {t3}, which matches.",
    "Therefore the answer is {ans}.",
]
STEPS_JA = [
    "{name}さんは4月に{item}を{a}個売り、5月はその半分なので {a} ÷ 2 = {h} 個です。",
    "合計は {a} + {h} = {s} 個になります。",
    "1個 {p:.2f} 円なので、{s} × {p:.2f} = {c:,.2f} 円です。",
    "{pct}% の割引で {c:,.2f} × {pct}/100 = {d:,.2f} 円安くなり、支払いは {c2:,.2f} 円です。",
    "{w}週間では {w} × {s} = {ws} 個、つまり全部で{ws:,}個です。",
    "差は {ws} - {a} = {df} です。",
    "{item}の数を x とすると 3x + {a} = {t3} なので、3x = {x3}、x = {x} です。",
    "よって答えは {ans} です。",
]
PROBLEM_EN = (
    "{name} sold {item} to {a} of her friends in April, and then she sold half as many {item} in May. "
    "Each of the {item} costs ${p:.2f} and she gives a {pct}% discount on the total. Over {w} weeks she repeats this. "
    "How many {item} did {name} sell altogether, and how much money does she make after the discount?"
)
PROBLEM_JA = (
    "{name}さんは4月に友達{a}人に{item}を売り、5月にはその半分の数を売りました。{item}は1個{p:.2f}円で、"
    "合計から{pct}%割引します。これを{w}週間続けると、{item}は全部で何個売れ、割引後の売上はいくらですか？"
)


def make_row(i: int, rng: random.Random) -> dict:
    ja = rng.random() < 0.3
    a = rng.randrange(2, 400, 2)
    h, p, pct, w, m, r = a // 2, rng.randrange(50, 2500) / 100, rng.choice([5, 10, 15, 20, 25]), rng.randint(2, 52), rng.randint(10, 90), rng.randint(8, 40)
    s = a + h
    c = s * p
    d = c * pct / 100
    x = rng.randint(2, 60)
    t3 = 3 * x + a
    f = dict(name=rng.choice(NAMES_JA if ja else NAMES_EN), item=rng.choice(ITEMS_JA if ja else ITEMS_EN), a=a, h=h, s=s,
             p=p, c=c, pct=pct, d=d, c2=c - d, w=w, ws=w * s, df=w * s - a, m=m, r=r, e=r / 60 * m, t3=t3, x3=3 * x, x=x)
    kind = rng.random()
    if kind < 0.6:
        ans = str(w * s)
    elif kind < 0.75:
        ans = f"{w * s * 13:,}"
    elif kind < 0.85:
        ans = f"{c - d:.2f}"
    elif kind < 0.9:
        ans = str(-x)
    elif kind < 0.95:
        ans = f"\\frac{{{x}}}{{{rng.randint(2, 9)}}}"
    else:
        ans = f"\\text{{({rng.choice('ABCDE')})}}"
    f["ans"] = ans
    steps = STEPS_JA if ja else STEPS_EN
    k = rng.randint(len(steps) - 3, len(steps))
    thinking = "\n".join(t.format(**f) for t in steps[:k - 1] + steps[-1:])
    problem = (PROBLEM_JA if ja else PROBLEM_EN).format(**f)
    lang = "ja" if ja else "en"
    return {
        "id": f"bench-{i:07d}", "source": "gsm8k_like", "lang": lang, "problem": problem, "answer": ans,
        "system": system_prompt(lang), "response": format_response(problem, thinking, ans),
    }


def make_input(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8") as f:
        batch = []
        for i in range(rows):
            batch.append(enc(make_row(i, rng)))
            if len(batch) == 10000:
                f.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            f.write("\n".join(batch) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=600_000)
    ap.add_argument("--workers", type=int, default=None, help="pairs.workers for compass pairs (default: the config's)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the input and output in this directory (and reuse an input of the same --rows found there)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench_pairs.")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    traces, out = work / "traces.jsonl", work / "pairs.jsonl"
    t0 = time.perf_counter()
    marker = work / "traces.rows"
    if args.keep and traces.is_file() and marker.is_file() and marker.read_text().strip() == str(args.rows):
        print("input: reusing", traces)
    else:
        make_input(traces, args.rows)
        marker.write_text(f"{args.rows}\n")
    size = traces.stat().st_size
    print(f"input: {args.rows:,} rows, {size / 1e6:.0f} MB ({size / args.rows:.0f} B/row), ready in {time.perf_counter() - t0:.1f}s", flush=True)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cmd = [sys.executable, "-c", "import sys; from compass.cli import main; sys.exit(main())", "pairs",
           "--traces", str(traces), "--out", str(out), "--set", "pairs.require_tags=true", "--no-progress"]
    if args.workers is not None:
        cmd += ["--set", f"pairs.workers={args.workers}"]
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd,
                          check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    lines = proc.stderr.strip().splitlines()
    peak = ""
    if lines and lines[-1].isdigit():  # /usr/bin/time -f %M: the largest RSS of the process tree's members
        peak = f", peak RSS {int(lines.pop()) / 1024:.0f} MB"
    for line in lines:
        print(line, file=sys.stderr)
    stats = json.loads((work / "pairs.stats.json").read_text())
    print(f"compass pairs: {args.rows:,} rows in {dt:.1f}s = {args.rows / dt:,.0f} rows/s, {cpu:.1f} CPU-s "
          f"(pairs out {stats['pairs_out']:,}, output {out.stat().st_size / 1e6:.0f} MB, workers {args.workers or 'config'}; "
          f"{os.cpu_count()} CPUs, {cpu_name()}, Python {platform.python_version()}{peak}; "
          f"load average before {load0}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

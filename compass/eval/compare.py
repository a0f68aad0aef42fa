"""`compass compare`: blind pairwise comparison of models' answers, turned into ELO ratings.

    compass compare ballots --predictions A.predictions.jsonl B.predictions.jsonl --labels sft phase2 --out DIR
    compass compare judge --ballots DIR              # in a terminal: 1 / 2 / t(ie) / s(kip) / q(uit)
    (or open DIR/index.html, vote, "Download votes" -> votes.jsonl)
    compass compare score --ballots DIR --votes DIR/votes.jsonl --out elo.json

`ballots` draws, for every pair of models, `n` prompts both answered (seeded), and shows the two
answers as "Response 1" and "Response 2" in a random order; which model is which is written only
to DIR/key.json, never to the ballots or the page. Votes are JSON lines ``{"ballot", "winner"}``
with winner "1", "2" or "tie". `score` (and `compass report`) join the votes with the key and
compute ELO (compass.eval.elo).
"""

from __future__ import annotations

import html
import itertools
import json
import random
import sys
from pathlib import Path

from compass.eval import elo
from compass.io import CompassError, atomic_output, dumps, iter_jsonl, read_json, read_jsonl, write_json, write_jsonl

PROMPT_FIELDS = ("problem", "question", "prompt")
ANSWER_FIELDS = ("prediction", "output")


def _field(row: dict, names) -> str | None:
    for n in names:
        if isinstance(row.get(n), str):
            return row[n]
    return None


def make_ballots(predictions: dict[str, list[dict]], n: int, seed: int) -> tuple[list[dict], dict]:
    """(ballots, key): `n` shared prompts per model pair, sides shuffled; key = {ballot: [model shown
    as 1, model shown as 2]}."""
    if len(predictions) < 2:
        raise CompassError("compare: give at least two models' predictions")
    by_id = {}
    for model, rows in predictions.items():
        by_id[model] = {}
        for r in rows:
            answer = _field(r, ANSWER_FIELDS)
            if answer is not None:
                by_id[model][str(r["id"])] = r
    rng = random.Random(f"compass-compare:{seed}")
    ballots, key = [], {}
    for a, b in itertools.combinations(sorted(predictions), 2):
        shared = sorted(set(by_id[a]) & set(by_id[b]))
        if not shared:
            raise CompassError(f"compare: {a} and {b} answered no common prompt (are they predictions of the same task?)")
        for pid in sorted(rng.sample(shared, min(n, len(shared)))):
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            prompt = _field(by_id[first][pid], PROMPT_FIELDS) or pid
            ballots.append({"prompt_id": pid, "prompt": prompt,
                            "responses": [_field(by_id[first][pid], ANSWER_FIELDS), _field(by_id[second][pid], ANSWER_FIELDS)]})
            key_models = [first, second]
            ballots[-1]["_key"] = key_models
    rng.shuffle(ballots)  # pairs interleaved: nothing in the order tells which pair a ballot is
    for i, bal in enumerate(ballots, 1):
        bid = f"b{i:04d}"
        key[bid] = bal.pop("_key")
        bal["ballot"] = bid
    return [{"ballot": b["ballot"], "prompt_id": b["prompt_id"], "prompt": b["prompt"], "responses": b["responses"]} for b in ballots], key


def render_page(ballots: list[dict], title: str = "Blind comparison") -> str:
    items = []
    for b in ballots:
        bid = html.escape(b["ballot"])
        r1, r2 = (html.escape(x or "") for x in b["responses"])
        items.append(
            f"<section id='{bid}'><h3>{bid}</h3><pre class='prompt'>{html.escape(b['prompt'])}</pre>"
            f"<div class='pair'><div><h4>Response 1</h4><pre>{r1}</pre></div><div><h4>Response 2</h4><pre>{r2}</pre></div></div>"
            f"<p>"
            + "".join(
                f"<label><input type='radio' name='{bid}' value='{v}'> {lab}</label> "
                for v, lab in (("1", "Response 1 is better"), ("tie", "Tie"), ("2", "Response 2 is better"))
            )
            + "</p></section>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}pre{{white-space:pre-wrap;background:#f6f8fa;padding:8px;font-size:13px}}
.pair{{display:grid;grid-template-columns:1fr 1fr;gap:12px}}section{{border-bottom:1px solid #ddd;padding-bottom:1em}}
#bar{{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Two anonymous answers to the same prompt. Pick the better one (or a tie); the models are not named and
the sides are shuffled. When done, download the votes and give the file to <code>compass compare score</code>
or the config key <code>eval.compare.votes</code>.</p>
<div id="bar"><span id="count">0</span> / {len(ballots)} voted — <button onclick="download()">Download votes</button></div>
{''.join(items)}
<script>
function votes(){{return Array.from(document.querySelectorAll('input[type=radio]:checked')).map(e=>({{ballot:e.name,winner:e.value}}));}}
document.addEventListener('change',()=>{{document.getElementById('count').textContent=votes().length;}});
function download(){{const t=votes().map(v=>JSON.stringify(v)).join('\\n')+'\\n';const a=document.createElement('a');
a.href=URL.createObjectURL(new Blob([t],{{type:'application/json'}}));a.download='votes.jsonl';a.click();}}
</script></body></html>
"""


def write_ballots(out_dir, ballots: list[dict], key: dict, meta: dict) -> None:
    with atomic_output(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        write_jsonl(tmp / "ballots.jsonl", ballots)
        write_json(tmp / "key.json", {"meta": meta, "key": key})
        (tmp / "index.html").write_text(render_page(ballots), encoding="utf-8")


def load_key(ballots_dir) -> dict:
    data = read_json(Path(ballots_dir) / "key.json")
    return data["key"]


def score_votes(ballots_dir, votes_path, k: float = 16.0, seed: int = 0) -> dict:
    key = load_key(ballots_dir)
    try:
        games = elo.games_from_votes(key, read_jsonl(votes_path, required=("ballot", "winner")))
    except ValueError as e:
        raise CompassError(f"{votes_path}: {e}") from None
    ratings = elo.elo_ratings(games, k=k, seed=seed) if games else {}
    return {"n_ballots": len(key), "n_votes": len(games), "k_factor": k, "ratings": ratings}


def judge(ballots_dir, votes_path, stdin=sys.stdin, stdout=sys.stdout) -> int:
    """Terminal voting: each ballot not yet voted, shown anonymised; appends to votes_path."""
    ballots = read_jsonl(Path(ballots_dir) / "ballots.jsonl", required=("ballot", "prompt", "responses"))
    done = {v["ballot"] for v in iter_jsonl(votes_path)} if Path(votes_path).is_file() else set()
    todo = [b for b in ballots if b["ballot"] not in done]
    n = 0
    with open(votes_path, "a", encoding="utf-8") as f:
        for i, b in enumerate(todo, 1):
            stdout.write(f"\n=== {b['ballot']} ({i}/{len(todo)}) ===\n{b['prompt']}\n\n--- Response 1 ---\n{b['responses'][0]}\n"
                         f"\n--- Response 2 ---\n{b['responses'][1]}\n\nbetter? [1/2/t(ie)/s(kip)/q(uit)] ")
            stdout.flush()
            while True:
                line = stdin.readline()
                ans = line.strip().lower()
                if not line or ans in ("q", "quit"):
                    return n
                if ans in ("1", "2", "t", "tie", "s", "skip"):
                    break
                stdout.write("please answer 1, 2, t, s or q: ")
                stdout.flush()
            if ans in ("s", "skip"):
                continue
            f.write(dumps({"ballot": b["ballot"], "winner": "tie" if ans.startswith("t") else ans}) + "\n")
            f.flush()
            n += 1
    return n


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "actions (config options go before the action):\n"
        "  compass compare ballots --predictions A.predictions.jsonl B.predictions.jsonl --labels sft phase2 --out DIR\n"
        "  compass compare judge --ballots DIR [--votes DIR/votes.jsonl]\n"
        "  compass compare score --ballots DIR --votes DIR/votes.jsonl --out elo.json"
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("ballots", help="write anonymised ballots (ballots.jsonl, index.html) and the key")
    b.add_argument("--predictions", nargs="+", required=True, type=Path, help="predictions JSONL of each model (compass evaluate)")
    b.add_argument("--labels", nargs="+", default=None, help="model names (default: each file's parent directory name)")
    b.add_argument("--out", required=True, type=Path, help="ballots directory")
    j = sub.add_parser("judge", help="vote in the terminal on the ballots not voted yet")
    j.add_argument("--ballots", required=True, type=Path)
    j.add_argument("--votes", type=Path, default=None, help="votes JSONL to append to (default: BALLOTS/votes.jsonl)")
    s = sub.add_parser("score", help="ELO ratings from the votes")
    s.add_argument("--ballots", required=True, type=Path)
    s.add_argument("--votes", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path, help="ratings JSON")


def main(args, cfg) -> None:
    ccfg = cfg["eval"]["compare"]
    if args.action == "ballots":
        labels = args.labels or [p.parent.name for p in args.predictions]
        if len(labels) != len(args.predictions) or len(set(labels)) != len(labels):
            raise CompassError("compare: give one distinct label per predictions file")
        preds = {lab: read_jsonl(p, required=("id",)) for lab, p in zip(labels, args.predictions)}
        ballots, key = make_ballots(preds, ccfg["n"], cfg["seed"])
        write_ballots(args.out, ballots, key, {"models": sorted(labels), "sources": [str(p) for p in args.predictions]})
        print(f"{len(ballots)} ballots over {len(labels)} models -> {args.out}/index.html (key: {args.out}/key.json)")
    elif args.action == "judge":
        n = judge(args.ballots, args.votes or args.ballots / "votes.jsonl")
        print(f"\n{n} vote(s) recorded")
    else:
        result = score_votes(args.ballots, args.votes, ccfg["k_factor"], cfg["seed"])
        write_json(args.out, result)
        for m, r in result["ratings"].items():
            print(f"{m:12s} ELO {r['elo']:7.1f}  [{r['low']:.0f}, {r['high']:.0f}]  {r['wins']}-{r['ties']}-{r['losses']}")

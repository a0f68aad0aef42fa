"""ELO ratings and the blind pairwise comparison tool (ballots, terminal judging, scoring)."""

from __future__ import annotations

import io
import json

import pytest

from compass.cli import main
from compass.eval import compare, elo
from compass.io import read_json, read_jsonl


def test_expected_score_and_one_update():
    assert elo.expected(1000, 1000) == 0.5
    assert elo.expected(1400, 1000) == pytest.approx(1 / (1 + 10 ** -1))
    r = elo.elo_once([("a", "b", 1.0)], k=16)
    assert r == {"a": 1008.0, "b": 992.0}
    assert sum(elo.elo_once([("a", "b", 0.5), ("b", "c", 1.0), ("a", "c", 0.0)], k=16).values()) == pytest.approx(3000)


def test_ratings_order_band_and_counts():
    games = [("strong", "weak", 1.0)] * 30 + [("strong", "weak", 0.0)] * 5 + [("strong", "mid", 1.0)] * 10 + [("mid", "weak", 0.5)] * 6
    r = elo.elo_ratings(games, k=16, rounds=50, seed=1)
    assert list(r) == ["strong", "mid", "weak"]
    s = r["strong"]
    assert (s["games"], s["wins"], s["ties"], s["losses"]) == (45, 40, 0, 5)
    assert s["low"] <= s["elo"] <= s["high"]
    assert r == elo.elo_ratings(games, k=16, rounds=50, seed=1)  # seeded
    assert sum(elo.elo_once(games, k=16).values()) == pytest.approx(3000)  # zero-sum updates


def test_bad_games_and_votes_are_refused():
    with pytest.raises(ValueError, match="against itself"):
        elo.elo_ratings([("a", "a", 1.0)])
    with pytest.raises(ValueError, match="score must be"):
        elo.elo_ratings([("a", "b", 0.7)])
    key = {"b1": ["x", "y"]}
    with pytest.raises(ValueError, match="unknown ballot"):
        elo.games_from_votes(key, [{"ballot": "b9", "winner": "1"}])
    with pytest.raises(ValueError, match="winner must be"):
        elo.games_from_votes(key, [{"ballot": "b1", "winner": "left"}])
    # a later vote on the same ballot replaces the earlier one; "2" means the model shown second won
    assert elo.games_from_votes(key, [{"ballot": "b1", "winner": "1"}, {"ballot": "b1", "winner": "2"}]) == [("x", "y", 0.0)]


def _preds(path, model, n=8):
    rows = [{"id": f"p{i}", "problem": f"問題{i}", "prediction": f"{model} answer {i}", "correct": i % 2 == 0} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ballots_are_anonymous_and_the_key_unmasks_them(tmp_path):
    a = _preds(tmp_path / "eval" / "sft" / "demo.predictions.jsonl", "SFT")
    b = _preds(tmp_path / "eval" / "phase2" / "demo.predictions.jsonl", "P2")
    out = tmp_path / "ballots"
    assert main(["compare", "--set", "eval.compare.n=6", "ballots", "--predictions", str(a), str(b), "--out", str(out)]) == 0
    ballots = read_jsonl(out / "ballots.jsonl")
    key = read_json(out / "key.json")["key"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert len(ballots) == 6 and set(key) == {x["ballot"] for x in ballots}
    for bal in ballots:
        assert set(bal) == {"ballot", "prompt_id", "prompt", "responses"}  # no model names
        first, second = key[bal["ballot"]]
        assert bal["responses"][0].startswith({"sft": "SFT", "phase2": "P2"}[first])
        assert {first, second} == {"sft", "phase2"}
    assert "sft" not in page and "phase2" not in page and "Response 1" in page and "Download votes" in page
    assert len({tuple(key[b]) for b in key}) == 2  # both side orders occur


def test_judge_in_a_terminal_then_score(tmp_path):
    preds = {m: [{"id": str(i), "problem": "q", "prediction": f"{m}{i}"} for i in range(4)] for m in ("x", "y", "z")}
    ballots, key = compare.make_ballots(preds, n=4, seed=0)
    compare.write_ballots(tmp_path / "b", ballots, key, {})
    votes = tmp_path / "b" / "votes.jsonl"
    answers = []
    for bal in ballots:  # always prefer model x, tie y-z
        shown = key[bal["ballot"]]
        answers.append("t" if "x" not in shown else ("1" if shown[0] == "x" else "2"))
    stdout = io.StringIO()
    n = compare.judge(tmp_path / "b", votes, stdin=io.StringIO("\n".join(["nonsense", *answers[:5], "q"]) + "\n"), stdout=stdout)
    assert n == 5 and "please answer" in stdout.getvalue()
    n2 = compare.judge(tmp_path / "b", votes, stdin=io.StringIO("\n".join(answers[5:]) + "\n"), stdout=io.StringIO())
    assert n2 == len(ballots) - 5  # resumes where it stopped
    out = tmp_path / "elo.json"
    assert main(["compare", "score", "--ballots", str(tmp_path / "b"), "--votes", str(votes), "--out", str(out)]) == 0
    r = read_json(out)
    assert r["n_votes"] == 12 and list(r["ratings"])[0] == "x"
    assert r["ratings"]["x"]["wins"] == 8 and r["ratings"]["y"]["ties"] == 4

"""`compass prompts`: sources -> one prompt file, duplicates and evaluation overlap removed."""

from __future__ import annotations

import json

import yaml
from conftest import shared_file

from compass.cli import main
from compass.data.decontaminate import normalize_text


def test_demo_prompts_and_held_out_split(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"sources": [{"name": "demo"}], "demo": {"n_train": 50, "n_test": 10}}}))
    assert main(["prompts", "--config", str(cfg), "--out", str(tmp_path / "p.jsonl"), "--test-dir", str(tmp_path / "test")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "test" / "demo.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and len(test) == 10
    assert set(rows[0]) >= {"id", "source", "lang", "problem", "answer", "solution"}
    stats = json.loads((tmp_path / "p.stats.json").read_text())
    assert stats["prompts"] == 50 and stats["duplicates_dropped"] == 0


def test_no_gsm8k_test_item_reaches_the_prompts(tmp_path):
    train, test = shared_file("gsm8k", "train.jsonl"), shared_file("gsm8k", "test.jsonl")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {
        "sources": [{"name": "gsm8k", "path": str(train)}, {"name": "gsm8k", "path": str(test), "split": "test"}],
        "decontamination": {"eval_sets": [{"name": "gsm8k_test", "path": str(test)}]},
    }}))
    out = tmp_path / "p.jsonl"
    assert main(["prompts", "--config", str(cfg), "--out", str(out), "--test-dir", str(tmp_path / "t")]) == 0
    kept = {normalize_text(json.loads(line)["problem"]) for line in out.read_text().split("\n") if line}
    test_problems = {normalize_text(json.loads(line)["question"]) for line in test.read_text().splitlines()}
    assert not kept & test_problems
    assert 7000 < len(kept) < 7473
    stats = json.loads((tmp_path / "p.stats.json").read_text())["decontamination"]
    assert stats["sources"]["gsm8k"]["removed"] >= 1319

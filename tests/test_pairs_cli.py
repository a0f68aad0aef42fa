"""`compass pairs` end to end on files of the project's own traces (compass.data.demo problems in the
trace format; real GSM8K/MATH-500 traces too when ../shared/data has them): output and stats,
byte-identical output whatever the row order, workers or block size, bad lines reported as
file:line, nothing half-written, settings from the config (--set), on-policy samples through the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from compass import cli
from compass.pairs.build import build_pairs, make_settings, run_pairs
from conftest import demo_traces, real_traces


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return demo_traces(330)


def _write(path: Path, rows, lines_between=None) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for at, text in sorted((lines_between or {}).items(), reverse=True):
        lines.insert(at, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def cfg(tmp_path) -> Path:
    p = tmp_path / "empty.yaml"  # schema defaults, whatever config/config.yaml says
    p.write_text("{}\n")
    return p


def _run(cfg, *args) -> int:
    return cli.main(["pairs", "--config", str(cfg), *map(str, args)])


def test_cli_writes_pairs_and_stats(tmp_path, rows, cfg, capsys):
    traces = _write(tmp_path / "traces.jsonl", rows)
    out = tmp_path / "out" / "pairs.jsonl"
    assert _run(cfg, "--traces", traces, "--out", out) == 0
    assert f"{len(rows)} pairs from {len(rows)} traces" in capsys.readouterr().out
    _, stats = build_pairs(rows, seed=42)
    assert out.read_bytes() == _expected_bytes(rows)
    written = json.loads((tmp_path / "out" / "pairs.stats.json").read_text())
    assert written["rows_in"] == written["pairs_out"] == len(rows)
    assert written["strategies"] == stats["strategies"] and written["dropped"] == {} and written["duplicate_ids"] == 0
    assert written["seed"] == 42 and written["weights"] == {"omit_thinking": 0.34, "tamper_thinking_numbers": 0.33, "tamper_answer": 0.33}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pairs.jsonl", "pairs.stats.json"]


def test_byte_identical_whatever_row_order_and_workers(tmp_path, rows, cfg):
    a = _write(tmp_path / "a.jsonl", rows)
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    b = _write(tmp_path / "b.jsonl", shuffled)
    assert _run(cfg, "--traces", a, "--out", tmp_path / "a.out.jsonl") == 0
    assert _run(cfg, "--traces", b, "--out", tmp_path / "b.out.jsonl", "--set", "pairs.workers=2") == 0
    assert (tmp_path / "a.out.jsonl").read_bytes() == (tmp_path / "b.out.jsonl").read_bytes()
    assert (tmp_path / "a.out.stats.json").read_bytes() == (tmp_path / "b.out.stats.json").read_bytes()
    ids = [json.loads(line)["id"] for line in (tmp_path / "a.out.jsonl").read_text().splitlines()]
    assert ids == sorted(ids)


def _expected_bytes(rows) -> bytes:
    pairs, _ = build_pairs(rows, seed=42)
    return "".join(json.dumps(p, ensure_ascii=False, separators=(",", ":")) + "\n" for p in pairs).encode()


def test_byte_identical_whatever_blocks_and_workers(tmp_path, rows):
    dup = dict(rows[0], response=rows[0]["response"] + " ")  # a second row with the same id
    expected = _expected_bytes(rows + [dup])
    shuffled = rows + [dup]
    random.Random(1).shuffle(shuffled)
    settings = make_settings()
    ref_stats = None
    for name, data, workers, block in [("sorted", rows + [dup], 1, 1 << 20), ("sorted-blocks", rows + [dup], 2, 8192),
                                       ("shuffled", shuffled, 1, 2048), ("shuffled-3w", shuffled, 3, 4096)]:
        traces = _write(tmp_path / f"{name}.jsonl", data)
        out = tmp_path / f"{name}.out.jsonl"
        stats = run_pairs(traces, out, tmp_path / f"{name}.stats.json", settings, workers=workers, block_bytes=block, progress=False)
        assert out.read_bytes() == expected, name
        assert stats["duplicate_ids"] == 1 and stats["pairs_out"] == len(rows) + 1
        ref_stats = ref_stats or stats
        assert stats == ref_stats
    assert not list(tmp_path.glob(".*"))  # no partial file left behind


def test_real_traces_through_the_cli(tmp_path, cfg):
    """GSM8K and MATH-500 traces (skipped without ../shared/data): the same bytes whatever the order of
    the file and the number of workers."""
    real = real_traces()
    real = [r for r in real if r["source"] == "gsm8k"][:250] + [r for r in real if r["source"] == "math500"][:80]
    shuffled = list(real)
    random.Random(7).shuffle(shuffled)
    a, b = _write(tmp_path / "a.jsonl", real), _write(tmp_path / "b.jsonl", shuffled)
    assert _run(cfg, "--traces", a, "--out", tmp_path / "a.out.jsonl") == 0
    assert _run(cfg, "--traces", b, "--out", tmp_path / "b.out.jsonl", "--set", "pairs.workers=2") == 0
    assert (tmp_path / "a.out.jsonl").read_bytes() == (tmp_path / "b.out.jsonl").read_bytes()
    assert (tmp_path / "a.out.stats.json").read_bytes() == (tmp_path / "b.out.stats.json").read_bytes()


def test_the_configured_seed_changes_the_output(tmp_path, rows, cfg):
    traces = _write(tmp_path / "t.jsonl", rows[:60])
    assert _run(cfg, "--traces", traces, "--out", tmp_path / "s42.jsonl") == 0
    assert _run(cfg, "--set", "pairs.seed=43", "--traces", traces, "--out", tmp_path / "s43.jsonl") == 0
    assert (tmp_path / "s42.jsonl").read_bytes() != (tmp_path / "s43.jsonl").read_bytes()
    assert json.loads((tmp_path / "s43.stats.json").read_text())["seed"] == 43


def test_bad_line_stops_the_stage_with_file_and_line_and_leaves_nothing(tmp_path, rows, cfg, capsys):
    traces = _write(tmp_path / "t.jsonl", rows[:50], {20: '{"id": "x", "problem": "p", "response": '})
    out = tmp_path / "pairs.jsonl"
    assert _run(cfg, "--traces", traces, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{traces}:21:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml", "t.jsonl"]  # no OUT, no stats, no partial file


def test_bad_line_in_a_later_block_with_workers_leaves_the_old_output_alone(tmp_path, rows, cfg, capsys):
    traces = _write(tmp_path / "t.jsonl", rows, {300: "[1, 2]"})
    out = tmp_path / "pairs.jsonl"
    out.write_text("old complete output\n")
    assert _run(cfg, "--traces", traces, "--out", out, "--set", "pairs.workers=2") == 2
    assert f"{traces}:301: expected a JSON object, got list" in capsys.readouterr().err
    assert out.read_text() == "old complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml", "pairs.jsonl", "t.jsonl"]


def test_bad_lines_are_skipped_and_counted_when_configured(tmp_path, rows, cfg, capsys):
    # inserted from the last position back: lines 6, 12, 18 and a blank line 24
    bad = {5: "not json", 10: '{"id": "y", "problem": "p"}', 15: '{"id": null, "problem": "p", "response": "r"}', 20: ""}
    traces = _write(tmp_path / "t.jsonl", rows[:40], bad)
    with open(traces, "ab") as f:
        f.write(b'{"id": "z", "problem": "\xff", "response": "r"}\n')
    out = tmp_path / "pairs.jsonl"
    assert _run(cfg, "--set", "pairs.on_bad_line=skip", "--traces", traces, "--out", out) == 0
    assert "skipped 4 malformed line(s)" in capsys.readouterr().err
    stats = json.loads((tmp_path / "pairs.stats.json").read_text())
    assert stats["dropped"] == {"bad_line": 4} and stats["pairs_out"] == 40 and stats["rows_in"] == 44  # the blank line is no row
    assert [e.split(": ", 1)[0] for e in stats["bad_lines"]] == [f"{traces}:{n}" for n in (6, 12, 18, 45)]
    assert "missing field(s) response" in stats["bad_lines"][1] and "field id must be" in stats["bad_lines"][2]
    assert len(out.read_text().splitlines()) == 40


def test_require_tags(tmp_path, rows, cfg):
    broken = [dict(r, id=r["id"] + "-broken", response=r["response"].replace("</Thinking>", "")) for r in rows[:7]]
    traces = _write(tmp_path / "t.jsonl", rows[:30] + broken)
    assert _run(cfg, "--set", "pairs.require_tags=true", "--traces", traces, "--out", tmp_path / "a.jsonl") == 0
    a = json.loads((tmp_path / "a.stats.json").read_text())
    assert a["dropped"] == {"malformed:missing_thinking": 7} and a["pairs_out"] == 30 and a["require_tags"] is True
    assert _run(cfg, "--traces", traces, "--out", tmp_path / "c.jsonl") == 0
    assert json.loads((tmp_path / "c.stats.json").read_text())["pairs_out"] == 37


def test_user_errors_are_one_line(tmp_path, rows, cfg, capsys):
    traces = _write(tmp_path / "t.jsonl", rows[:5])
    assert _run(cfg, "--traces", tmp_path / "missing.jsonl", "--out", tmp_path / "o.jsonl") == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
    assert _run(cfg, "--set", "pairs.on_policy_ratio=0.5", "--traces", traces, "--out", tmp_path / "o.jsonl") == 2
    assert "needs --samples" in capsys.readouterr().err
    assert _run(cfg, "--set", "pairs.workers=0", "--traces", traces, "--out", tmp_path / "o.jsonl") == 2
    assert "pairs.workers" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["pairs", "--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    assert "--samples" in helptext and "--set" in helptext
    for setting in ("--seed", "--workers", "--require-tags", "--on-bad-line", "--on-policy-ratio"):
        assert setting not in helptext, f"{setting}: a setting is config (--set pairs.KEY=VALUE), not a flag"


def test_on_policy_samples_through_the_cli(tmp_path, rows, cfg):
    gsm = rows[:120]
    traces = _write(tmp_path / "t.jsonl", gsm)
    samples = tmp_path / "samples.jsonl"
    with open(samples, "w", encoding="utf-8") as f:
        for i, r in enumerate(gsm):
            right = r["response"]
            wrong = right.replace(f"\\boxed{{{r['answer']}}}", f"\\boxed{{{int(r['answer'].replace(',', '')) + 2}}}")
            f.write(json.dumps({"id": r["id"], "samples": [right, wrong] if i % 2 else [right]}) + "\n")
    out = tmp_path / "pairs.jsonl"
    assert _run(cfg, "--set", "pairs.on_policy_ratio=1.0", "--traces", traces, "--out", out, "--samples", samples) == 0
    stats = json.loads((tmp_path / "pairs.stats.json").read_text())
    assert stats["on_policy"]["outcomes"]["on_policy"] == 60 and stats["on_policy"]["outcomes"]["no_wrong_sample"] == 60
    assert stats["pairs_out"] == 120 and stats["strategies"]["on_policy"] == 60
    for line in out.read_text().splitlines():
        p = json.loads(line)
        if p["strategy"] == "on_policy":
            assert "\\boxed{" in p["rejected"][0]["content"] and p["rejected"][0]["content"] != p["chosen"][0]["content"]
    # Workers do not change it either.
    assert _run(cfg, "--set", "pairs.on_policy_ratio=1.0", "--set", "pairs.workers=2", "--traces", traces,
                "--out", tmp_path / "w2.jsonl", "--samples", samples) == 0
    assert (tmp_path / "w2.jsonl").read_bytes() == out.read_bytes()


def test_image_rows_keep_their_pictures_relative_to_the_pairs_file(tmp_path, rows):
    """A trace with `images` (relative to the traces file) becomes a pair whose `images` name the same files
    relative to the pairs file (they are written to another directory); text rows carry none."""
    from compass.images import image_paths

    (tmp_path / "data" / "images").mkdir(parents=True)
    picture = tmp_path / "data" / "images" / "a.png"
    picture.write_bytes(b"png")
    traces_dir, out_dir = tmp_path / "traces", tmp_path / "run" / "dpo"
    traces_dir.mkdir()
    with_image = [{**rows[0], "images": ["../data/images/a.png"]}] + rows[1:3]
    traces = _write(traces_dir / "traces.jsonl", with_image)
    run_pairs(traces, out_dir / "pairs.jsonl", out_dir / "pairs.stats.json", make_settings(), progress=False)
    pairs = {p["id"]: p for p in map(json.loads, (out_dir / "pairs.jsonl").read_text().splitlines())}
    first = pairs[rows[0]["id"]]
    assert first["images"] == ["../../data/images/a.png"]
    assert image_paths(first, out_dir)[0].resolve() == picture.resolve()
    assert all("images" not in pairs[r["id"]] for r in rows[1:3])

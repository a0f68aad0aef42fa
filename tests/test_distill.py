"""Distillation: backends behind one interface, filters, shards, resume after a kill, gathering."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, shared_file

from compass.data import demo
from compass.io import CompassError, write_jsonl
from compass.teacher import distill
from compass.teacher import gather_traces as gather
from compass.trace_format import format_response


def test_shards_cover_every_row_once():
    for n_rows in (0, 1, 7, 100):
        for n in (1, 3, 64):
            idx = [i for s in range(n) for i in range(n_rows)[distill.shard_slice(n_rows, s, n)]]
            assert idx == list(range(n_rows))
    with pytest.raises(CompassError):
        distill.shard_slice(10, 3, 3)


def test_filters_on_real_gsm8k_rows():
    from compass.answers import is_correct

    rows = [json.loads(line) for line in shared_file("gsm8k", "train.jsonl").open()][:50]
    for i, r in enumerate(rows):
        gold = r["answer"].split("####")[-1].strip()
        row = {"id": i, "source": "gsm8k", "lang": "en", "problem": r["question"], "answer": gold}
        good = format_response(r["question"], r["answer"].split("####")[0], gold)
        trace, reason = distill.to_trace(row, good, sample=0, require_correct=True, is_correct=is_correct)
        assert reason is None and trace["response"] == good and trace["system"].startswith("You are")
        wrong = format_response(r["question"], "…", str(int(gold.replace(",", "")) + 1))
        assert distill.to_trace(row, wrong, sample=0, require_correct=True, is_correct=is_correct) == (None, "wrong_answer")
        assert distill.to_trace(row, wrong, sample=0, require_correct=False, is_correct=is_correct)[1] is None
        assert distill.to_trace(row, good.replace("<Answer>", ""), sample=0, require_correct=True,
                                is_correct=is_correct) == (None, "malformed:missing_answer")


def test_resume_skips_saved_chunks_and_a_torn_line(tmp_path):
    rows = [{"id": f"r{i}"} for i in range(10)]
    calls = []

    def generate(chunk):
        calls.append([r["id"] for r in chunk])
        return [[f"out-{r['id']}"] for r in chunk]

    progress = tmp_path / "p.jsonl"
    distill.append_progress(progress, rows[:4], [[f"out-r{i}"] for i in range(4)])
    with open(progress, "a") as f:
        f.write('{"id": "r4", "completions": ["out-')  # the process died inside this write
    outs, resumed = distill.generate_resumable(rows, generate, progress, chunk_size=3)
    assert resumed == 4
    assert calls == [["r4", "r5", "r6"], ["r7", "r8", "r9"]]
    assert outs == [[f"out-r{i}"] for i in range(10)]


def _prompts(tmp_path, n):
    train, _ = demo.generate(n, 1, seed=5)
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, train)
    return path


def _distill_cmd(prompts, out, model, shard=0, num_shards=1):
    return [sys.executable, "-m", "compass", "distill", "--prompts", str(prompts), "--out", str(out),
            "--set", "teacher.backend=hf", "--set", f"teacher.model={model}", "--shard", str(shard), "--num-shards", str(num_shards),
            "--set", "teacher.chunk_size=4", "--set", "teacher.max_new_tokens=24", "--set", "teacher.batch_size=4",
            "--set", "teacher.temperature=0"]


def test_killed_shard_resumes_without_regenerating_or_duplicating(tmp_path, phase1_llm):
    prompts = _prompts(tmp_path, 48)
    out = tmp_path / "killed" / "0-of-1.jsonl"
    progress = Path(f"{out}.progress.jsonl")
    proc = subprocess.Popen(_distill_cmd(prompts, out, phase1_llm), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not progress.exists() or progress.read_text().count("\n") < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = [rec["id"] for rec in map(json.loads, (line for line in progress.read_text().splitlines() if line.endswith("}")))
             if "id" in rec]  # the first line is the run's fingerprint
    assert 8 <= len(saved) < 48 and len(saved) == len(set(saved))
    assert not out.exists()  # nothing that looks complete

    done = subprocess.run(_distill_cmd(prompts, out, phase1_llm), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["resumed"] >= len(saved) and stats["completions"] == stats["prompts"] == 48
    assert not progress.exists()

    # Same result as a run that was never interrupted (greedy decoding).
    clean = tmp_path / "clean" / "0-of-1.jsonl"
    subprocess.run(_distill_cmd(prompts, clean, phase1_llm), cwd=tmp_path, check=True, capture_output=True)
    assert clean.read_bytes() == out.read_bytes()
    clean_stats = json.loads(clean.with_suffix(".stats.json").read_text())
    assert {k: v for k, v in clean_stats.items() if k != "resumed"} == {k: v for k, v in stats.items() if k != "resumed"}


def test_reference_shards_gather_to_the_unsharded_traces(tmp_path):
    from compass.cli import main

    prompts = _prompts(tmp_path, 30)
    for shard in range(3):
        assert main(["distill", "--prompts", str(prompts), "--out", str(tmp_path / f"s{shard}.jsonl"),
                     "--shard", str(shard), "--num-shards", "3"]) == 0
    assert main(["distill", "--prompts", str(prompts), "--out", str(tmp_path / "all.jsonl")]) == 0
    stats = gather.gather([tmp_path / f"s{i}.jsonl" for i in range(3)], tmp_path / "traces.jsonl",
                          tmp_path / "traces.stats.json", tmp_path / "lengths.png")
    assert (tmp_path / "traces.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()
    assert stats["traces"] == 30 and stats["shards"] == 3 and sum(stats["per_lang"].values()) == 30
    assert (tmp_path / "lengths.png").stat().st_size > 1000
    with pytest.raises(CompassError, match="also appears in an earlier shard"):
        gather.gather([tmp_path / "s0.jsonl", tmp_path / "s0.jsonl"], tmp_path / "t2.jsonl", tmp_path / "t2.json", None)


def test_production_dag_with_64_shards_resolves_fast(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"teacher": {"shards": 64}}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def cpu_seconds(*args):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], capture_output=True, text=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    # CPU time, not wall time, so a busy machine does not fail the test; Snakemake's own start-up
    # (about 2.5 s of imports here, measured by --version) is not the DAG's.
    _, startup = cpu_seconds("--version")
    proc, total = cpu_seconds("-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                              "--configfile", str(REPO / "config/phase2.yaml"), str(over), "-n", "final_vlm")
    assert re.search(r"^distill\s+64$", proc.stdout, re.M), proc.stdout[-3000:]
    assert total - startup < 3.0, f"the 64-shard production DAG took {total - startup:.2f} s of CPU to resolve"


# --- resumable state of another run, empty shards, gathered rows (issue 10) --------------------------


def _interrupt_after_first_chunk(monkeypatch):
    """Make the reference teacher stop (as a kill would) once its first chunk is saved."""
    calls = []
    real = distill.Generator.__call__

    def call(self, rows):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, rows)

    monkeypatch.setattr(distill.Generator, "__call__", call)


def test_progress_of_other_prompts_is_not_resumed(tmp_path, monkeypatch, capsys):
    """The same row ids with other problems (changed prompts, seed or teacher): nothing is reused."""
    from compass.cli import main

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write_jsonl(old, demo.generate(12, 1, seed=5)[0])
    write_jsonl(new, demo.generate(12, 1, seed=6)[0])
    assert [r["id"] for r in distill.read_jsonl(old)] == [r["id"] for r in distill.read_jsonl(new)]
    out = tmp_path / "shard" / "0-of-1.jsonl"
    args = ["distill", "--out", str(out), "--set", "teacher.chunk_size=4"]
    with monkeypatch.context() as m:
        _interrupt_after_first_chunk(m)
        assert main([*args, "--prompts", str(old)]) == 130
    assert Path(f"{out}.progress.jsonl").is_file() and not out.exists()
    capsys.readouterr()
    assert main([*args, "--prompts", str(new)]) == 0
    assert "progress of another run (prompts, seed or teacher settings changed): starting afresh" in capsys.readouterr().out
    assert main(["distill", "--out", str(tmp_path / "clean.jsonl"), "--prompts", str(new)]) == 0
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert json.loads(out.with_suffix(".stats.json").read_text())["resumed"] == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["0-of-1.jsonl", "0-of-1.stats.json"]

    # the same run resumes: a changed setting that does not change completions would not, by design
    with monkeypatch.context() as m:
        _interrupt_after_first_chunk(m)
        assert main([*args, "--prompts", str(new)]) == 130
    assert main([*args, "--prompts", str(new)]) == 0
    assert json.loads(out.with_suffix(".stats.json").read_text())["resumed"] == 4
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()


def test_a_torn_progress_line_is_cut_before_more_is_appended(tmp_path):
    rows = [{"id": f"r{i}"} for i in range(6)]
    progress = tmp_path / "p.jsonl"
    gen = lambda chunk: [[f"out-{r['id']}"] for r in chunk]  # noqa: E731
    distill.generate_resumable(rows[:2], gen, progress, 2, fingerprint="f")
    with open(progress, "a") as f:
        f.write('{"id": "r2", "compl')  # killed inside this write
    progress_after = distill.generate_resumable(rows[:4], gen, progress, 2, fingerprint="f")
    assert progress_after == ([[f"out-r{i}"] for i in range(4)], 2)
    assert len(distill.read_progress(progress, "f")) == 4  # no corrupt line in the middle


def test_an_empty_shard_succeeds_and_gathers(tmp_path):
    """More shards than prompts: the empty shard writes empty outputs, every time."""
    from compass.cli import main

    prompts = _prompts(tmp_path, 2)
    shards = [tmp_path / f"{i}-of-3.jsonl" for i in range(3)]
    for _ in range(2):  # and again, over its own outputs
        for i, shard in enumerate(shards):
            assert main(["distill", "--prompts", str(prompts), "--out", str(shard), "--shard", str(i), "--num-shards", "3"]) == 0
    assert shards[0].read_text() == "" and not Path(f"{shards[0]}.progress.jsonl").exists()
    stats = gather.gather(shards, tmp_path / "traces.jsonl", tmp_path / "traces.stats.json", None)
    assert stats["traces"] == stats["prompts"] == 2


@pytest.mark.parametrize("row, missing", [({"response": "r"}, "id"), ({"id": "a"}, "response")])
def test_gathered_rows_without_id_or_response_are_named(tmp_path, row, missing):
    prompts = _prompts(tmp_path, 3)
    from compass.cli import main

    shard = tmp_path / "0-of-1.jsonl"
    assert main(["distill", "--prompts", str(prompts), "--out", str(shard)]) == 0
    with open(shard, "a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(CompassError, match=rf"^{shard}:4: missing field\(s\) {missing}$"):
        gather.gather([shard], tmp_path / "traces.jsonl", tmp_path / "traces.stats.json", None)
    assert not (tmp_path / "traces.jsonl").exists()

"""The teacher on image prompts (compass distill): the reference backend keeps the charts' pictures with their
traces, an hf teacher is given each prompt's pictures as image parts, a text-only teacher is refused with the
reason, the image paths follow the rows from the prompts file to the shards and the joined traces, and a teacher
named by Hub id is read from the cache."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from compass import generation
from compass.cli import main
from compass.images import load_images, rebase
from compass.io import CompassError, read_jsonl
from compass.teacher import gather_traces

CHARTS = ["--set", "data.sources=[{name: charts}]", "--set", "data.charts.n_train=6", "--set", "data.charts.n_test=2",
          "--set", "data.charts.image_size=64"]


@pytest.fixture()
def chart_prompts(tmp_path) -> Path:
    out = tmp_path / "results" / "data" / "prompts.jsonl"
    assert main(["prompts", *CHARTS, "--out", str(out), "--test-dir", str(out.parent / "test")]) == 0
    return out


def test_rebase_keeps_every_picture_reachable(tmp_path):
    row = {"id": "a", "images": ["images/charts/x.png", "/abs/y.png"]}
    moved = rebase(row, tmp_path / "data", tmp_path / "traces" / "shards")
    assert moved["images"] == ["../../data/images/charts/x.png", "/abs/y.png"]
    assert (tmp_path / "traces" / "shards" / moved["images"][0]).resolve() == (tmp_path / "data/images/charts/x.png").resolve()
    assert rebase({"id": "b"}, "x", "y") == {"id": "b"}


def test_reference_traces_keep_their_pictures_through_shards_and_gather(tmp_path, chart_prompts):
    prompts = read_jsonl(chart_prompts)
    shards = [tmp_path / "results" / "traces" / "shards" / f"{i}-of-2.jsonl" for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(["distill", "--prompts", str(chart_prompts), "--out", str(shard), "--shard", str(i),
                     "--num-shards", "2"]) == 0
    joined = tmp_path / "results" / "traces" / "traces.jsonl"
    stats = gather_traces.gather(shards, joined, joined.with_suffix(".stats.json"), None)
    traces = read_jsonl(joined)
    assert stats["traces"] == len(traces) == len(prompts) == 6  # every worked solution is right
    for trace, prompt in zip(traces, prompts):
        assert trace["images"][0].startswith("../data/images/charts/")
        assert trace["image_digests"] == prompt["image_digests"]
        (a,), (b,) = load_images(trace, joined.parent), load_images(prompt, chart_prompts.parent)
        assert a.tobytes() == b.tobytes()
        assert "<Thinking>" in trace["response"] and trace["response"].endswith("</Answer>")
    shard_row = read_jsonl(shards[0])[0]
    assert shard_row["images"][0].startswith("../../data/images/charts/") and load_images(shard_row, shards[0].parent)


def test_an_hf_teacher_is_given_the_pictures(tmp_path, chart_prompts, phase1_dir, monkeypatch):
    calls = []
    real = generation.Engine.generate

    def spy(self, conversations, sampling, images=None, desc="generate", ids=None):
        calls.append((conversations, images))
        return real(self, conversations, sampling, images=images, desc=desc, ids=ids)

    monkeypatch.setattr(generation.Engine, "generate", spy)
    out = tmp_path / "results" / "traces" / "shards" / "0-of-1.jsonl"
    assert main(["distill", "--set", "teacher.backend=hf", "--set", f"teacher.model={phase1_dir}", "--set",
                 "teacher.max_new_tokens=4", "--set", "teacher.require_correct=false", "--prompts", str(chart_prompts),
                 "--out", str(out)]) == 0
    prompts = read_jsonl(chart_prompts)
    (conversations, images), = calls
    assert len(images) == len(prompts) == 6
    for conv, ims, row in zip(conversations, images, prompts):
        assert conv[1]["content"] == [{"type": "image"}, {"type": "text", "text": row["problem"]}]
        assert len(ims) == 1 and ims[0].tobytes() == load_images(row, chart_prompts.parent)[0].tobytes()
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["backend"] == "hf" and stats["completions"] == 6  # a random model: its outputs are dropped as malformed


def test_a_text_only_teacher_is_refused_for_image_prompts(tmp_path, chart_prompts, phase1_llm, capsys):
    out = tmp_path / "results" / "traces" / "shards" / "0-of-1.jsonl"
    assert main(["distill", "--set", "teacher.backend=hf", "--set", f"teacher.model={phase1_llm}", "--prompts",
                 str(chart_prompts), "--out", str(out)]) != 0
    assert re.search(r"text-only model, and prompts such as charts-train-\d+ come with images", capsys.readouterr().err)
    assert not out.exists()


def test_a_teacher_by_hub_id_is_read_from_the_cache_and_qwen_vl_takes_images(tmp_path, phase1_dir, monkeypatch):
    """A Hub id (phase2.yaml's teacher) resolves to its cached snapshot, never downloaded; an image-text model
    other than LLaVA-OneVision (a vision_config: Qwen2.5-VL, Qwen3-VL) is given images."""
    cache = tmp_path / "hub"
    snap = cache / "models--tiny--vlm" / "snapshots" / ("0" * 40)
    shutil.copytree(phase1_dir, snap)
    (cache / "models--tiny--vlm" / "refs").mkdir()
    (cache / "models--tiny--vlm" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert Path(generation.local_checkpoint("tiny/vlm")) == snap
    engine = generation.load("hf", "tiny/vlm", {"template_kwargs": {}, "stop_tokens": None})
    assert engine.vlm and Path(engine.path) == snap
    with pytest.raises(CompassError, match="no snapshot of this Hugging Face id in the cache"):
        generation.local_checkpoint("tiny/absent")
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "vision_config": {"depth": 2}}))
    assert generation.takes_images(qwen)
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen3_moe"}))
    assert not generation.takes_images(qwen)


def test_label_answers_pass_the_answer_filter_as_evaluation_grades_them():
    """An argmax chart question's answer is a label ("Lime", "1月"): the teacher filter keeps a trace that boxes it
    and drops one that boxes another label, as the evaluation would grade them."""
    from compass.answers import is_correct
    from compass.teacher.distill import to_trace
    from compass.trace_format import format_response

    for gold, other in (("Lime", "Fig"), ("1月", "3月"), ("ぶどう", "りんご")):
        row = {"id": "c", "source": "charts", "lang": "en", "problem": "Which label has the largest value?", "answer": gold,
               "images": ["images/charts/x.png"]}
        good = format_response(row["problem"], f"The largest is {gold}.", gold)
        trace, reason = to_trace(row, good, sample=0, require_correct=True, is_correct=is_correct)
        assert reason is None and trace["images"] == ["images/charts/x.png"]
        assert to_trace(row, format_response(row["problem"], "x", other), sample=0, require_correct=True,
                        is_correct=is_correct) == (None, "wrong_answer")


def test_vllm_teacher_takes_the_pictures_as_the_hf_one(chart_prompts, phase1_dir, demo_config, monkeypatch):
    """The real vLLM engine (CPU build) as the teacher on image prompts: greedy, the same completions as hf."""
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from compass.teacher.distill import Generator

    rows = read_jsonl(chart_prompts)
    tcfg = dict(demo_config["teacher"], model=str(phase1_dir), temperature=0.0, max_new_tokens=6)
    hf = Generator(dict(tcfg, backend="hf"), 0, base_dir=chart_prompts.parent)(rows)
    vl = Generator(dict(tcfg, backend="vllm"), 0, {"enforce_eager": True, "kv_cache_memory_bytes": 64 << 20,
                                                   "max_model_len": 1024}, base_dir=chart_prompts.parent)(rows)
    assert vl == hf and len(hf) == 6 and any(c[0] for c in hf)


def test_policy_samples_show_the_vlm_each_traces_pictures(tmp_path, chart_prompts, phase1_dir, phase1_llm, monkeypatch,
                                                          capsys):
    """On-policy samples of image traces (a vision.train run's DPO): the VLM is given each trace's pictures, the
    examples named by id; a language model is refused, naming a trace with images."""
    calls = []
    real = generation.Engine.generate

    def spy(self, conversations, sampling, images=None, desc="generate", ids=None):
        calls.append((conversations, images, ids))
        return real(self, conversations, sampling, images=images, desc=desc, ids=ids)

    monkeypatch.setattr(generation.Engine, "generate", spy)
    traces = tmp_path / "traces" / "traces.jsonl"
    traces.parent.mkdir()
    rows = [{**rebase(r, chart_prompts.parent, traces.parent), "response": "x"} for r in read_jsonl(chart_prompts)][:3]
    traces.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "samples.jsonl"
    args = ["--traces", str(traces), "--out", str(out), "--set", "pairs.on_policy_samples=2",
            "--set", "pairs.sampling.max_new_tokens=3"]
    assert main(["policy-samples", "--model", str(phase1_dir), *args]) == 0
    (conversations, images, ids), = calls
    assert ids == [r["id"] for r in rows]
    assert [len(ims) for ims in images] == [len(r["images"]) for r in rows] and all(images)
    assert [m for m in conversations[0] if m["role"] == "user"][0]["content"][0] == {"type": "image"}
    assert all(len(s["samples"]) == 2 for s in read_jsonl(out))
    assert main(["policy-samples", "--model", str(phase1_llm), *args]) != 0
    assert f"traces such as {rows[0]['id']} come with images" in capsys.readouterr().err

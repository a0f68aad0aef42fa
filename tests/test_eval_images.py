"""Image tasks in `compass evaluate`: the pictures reach the model (hf and vLLM) as image parts, the grounding
check swaps them for blank ones, a text-only model is asked the question alone, and ChartQA's relaxed accuracy."""

from __future__ import annotations

import json

import pytest

from compass import generation
from compass.cli import main
from compass.eval import evaluate
from compass.io import CompassError, read_jsonl

CHARTS = ["--set", "data.charts.n_train=10", "--set", "data.charts.n_test=3", "--set", "data.charts.image_size=64"]


@pytest.fixture()
def charts_task(tmp_path):
    out = tmp_path / "data" / "test" / "charts.jsonl"
    assert main(["eval-data", *CHARTS, "--task", "charts", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def seen(monkeypatch):
    """What each Engine.generate call was given (the real call runs)."""
    calls = []
    real = generation.Engine.generate

    def spy(self, conversations, sampling, images=None, desc="generate", ids=None):
        calls.append({"vlm": self.vlm, "conversations": conversations, "images": images})
        return real(self, conversations, sampling, images=images, desc=desc, ids=ids)

    monkeypatch.setattr(generation.Engine, "generate", spy)
    return calls


def run(model, task_file, out, variant="default", extra=()):
    argv = ["evaluate", "--set", "eval.max_new_tokens=6", "--set", "eval.batch_size=2", *extra, "--model", str(model),
            "--label", "m", "--task", "charts", "--data", str(task_file), "--out", str(out), "--variant", variant]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_the_pictures_and_then_blank_ones_reach_the_vlm(tmp_path, phase1_dir, charts_task, seen):
    from PIL import ImageChops

    from compass.images import load_images

    rows = read_jsonl(charts_task)
    real = run(phase1_dir, charts_task, tmp_path / "real.json")
    blank = run(phase1_dir, charts_task, tmp_path / "blank.json", "blank_image")
    assert (real["image_input"], blank["image_input"], real["n"], blank["variant"]) == ("real", "blank", 3, "blank_image")
    given_real, given_blank = seen[0]["images"], seen[1]["images"]
    for row, ims, blanks, conv in zip(rows, given_real, given_blank, seen[0]["conversations"]):
        (expected,) = load_images(row, charts_task.parent)
        assert len(ims) == 1 and ImageChops.difference(ims[0], expected).getbbox() is None  # the chart itself
        assert blanks[0].size == expected.size == (64, 64) and blanks[0].getcolors() == [(64 * 64, (255, 255, 255))]
        assert conv[1]["content"] == [{"type": "image"}, {"type": "text", "text": row["problem"]}]
    real_preds = read_jsonl((tmp_path / "real.json").with_suffix(".predictions.jsonl"))
    blank_preds = read_jsonl((tmp_path / "blank.json").with_suffix(".predictions.jsonl"))
    assert [p["prediction"] for p in real_preds] != [p["prediction"] for p in blank_preds]  # the picture matters
    preds = read_jsonl((tmp_path / "real.json").with_suffix(".predictions.jsonl"))
    assert [p["id"] for p in preds] == [r["id"] for r in rows]
    for p, row in zip(preds, rows):  # the pictures the model saw, reachable from the predictions file
        assert load_images(p, tmp_path)[0].tobytes() == load_images(row, charts_task.parent)[0].tobytes()
    assert "images" not in read_jsonl((tmp_path / "blank.json").with_suffix(".predictions.jsonl"))[0]


def test_a_text_only_model_is_asked_the_question_alone(tmp_path, phase1_llm, charts_task, seen):
    s = run(phase1_llm, charts_task, tmp_path / "llm.json")
    assert s["image_input"] == "none" and s["n"] == 3
    assert seen[0]["images"] is None and isinstance(seen[0]["conversations"][0][1]["content"], str)


def test_blank_image_applies_to_image_tasks_only_and_images_need_their_jsonl(tmp_path, phase1_dir, charts_task):
    from compass import config
    from conftest import REPO

    cfg = config.load([REPO / "config/config.yaml"], sets=["eval.max_new_tokens=2"])
    with pytest.raises(CompassError, match="blank_image applies to the image tasks only"):
        evaluate.evaluate_task(phase1_dir, "gsm8k", [{"id": "a", "problem": "1+1?", "answer": "2"}], cfg, "blank_image")
    with pytest.raises(CompassError, match="relative to its JSONL file; give --data"):
        evaluate.evaluate_task(phase1_dir, "charts", read_jsonl(charts_task), cfg)


def test_chartqa_relaxed_accuracy():
    from compass.eval.tasks import TASKS

    grade = evaluate.grader(TASKS["chartqa"])
    assert grade("<Answer>\n\\boxed{1240}\n</Answer>", "1250")  # within 5 %
    assert not grade("<Answer>\n\\boxed{1180}\n</Answer>", "1250")
    assert grade("<Answer>\n\\boxed{Japan}\n</Answer>", "Japan") and not grade("\\boxed{China}", "Japan")
    assert grade("\\boxed{0}", "0") and not grade("\\boxed{0.01}", "0")
    assert grade("\\boxed{44\\%}", "45") and not grade("\\boxed{0.44}", "45")  # a percent sign as ChartQA reads it
    assert not evaluate.grader(TASKS["charts"])("\\boxed{1240}", "1250")  # the synthetic charts: exact


def test_vllm_backend_takes_the_pictures_as_hf_does(tmp_path, phase1_dir, charts_task, monkeypatch):
    """The real vLLM engine (its CPU build) on the tiny VLM: the same greedy answers as transformers, real and
    blank pictures alike."""
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    vllm_cfg = ["--set", "eval.backend=vllm", "--set",
                'vllm.engine_kwargs={enforce_eager: true, kv_cache_memory_bytes: 67108864, max_model_len: 1024}']
    answers = {}
    for variant in ("default", "blank_image"):
        hf = run(phase1_dir, charts_task, tmp_path / f"hf-{variant}.json", variant)
        vl = run(phase1_dir, charts_task, tmp_path / f"vllm-{variant}.json", variant, vllm_cfg)
        assert (hf["backend"], vl["backend"]) == ("hf", "vllm") and vl["image_input"] == hf["image_input"]
        hf_preds = read_jsonl((tmp_path / f"hf-{variant}.json").with_suffix(".predictions.jsonl"))
        vl_preds = read_jsonl((tmp_path / f"vllm-{variant}.json").with_suffix(".predictions.jsonl"))
        assert [p["prediction"] for p in vl_preds] == [p["prediction"] for p in hf_preds]
        answers[variant] = [p["prediction"] for p in vl_preds]
    assert answers["default"] != answers["blank_image"]  # the pictures reach vLLM: a blank one changes the output

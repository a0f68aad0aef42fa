"""The embedded default, end to end, through the real Snakemake: every stage, the bit-identity of
the frozen vision parts, the pipeline doing its job, partial reruns, and bad input at start-up.

The whole run happens once per session (conftest.demo_run, about 10 min on 2 cores) in a temporary
directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.e2e

CONFIG = REPO / "config" / "config.yaml"


@pytest.fixture(scope="module")
def run_dir(demo_run) -> Path:
    return demo_run


@pytest.fixture(scope="module")
def results(run_dir) -> Path:
    return run_dir / "results" / "demo"


def test_every_stage_is_a_file_target(results):
    for path in [
        "data/prompts.jsonl", "data/test/demo.jsonl", "traces/traces.jsonl", "sft/adapter/adapter_model.safetensors",
        "sft/merged/model.safetensors", "sft/merged/merge_parity.json", "grpo_accuracy/adapter/adapter_model.safetensors",
        "grpo_accuracy/adapter/training_log.json", "grpo_accuracy/merged/model.safetensors", "final_vlm/model.safetensors",
        "final_vlm/processor_config.json", "eval/phase1/demo.json", "eval/sft/demo.json", "eval/phase2/demo.json",
        "report/index.html", "report/summary.json", "report/results.png", "report/grpo_accuracy_curves.png",
    ]:
        assert (results / path).is_file(), path
    for rule in ["sft", "grpo_accuracy", "merge_grpo_accuracy", "compose", "report"]:
        assert (results / "logs" / f"{rule}.log").is_file()
        assert (results / "benchmarks" / f"{rule}.tsv").is_file()


def test_final_vlm_keeps_phase1_vision_bit_identical_and_generates_from_an_image(results):
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from compass.models.checkpoint import compare_frozen, iter_tensors

    assert compare_frozen(results / "phase1" / "vlm", results / "final_vlm") > 0
    # ... while the language model did change.
    p1 = dict(iter_tensors(results / "phase1" / "vlm"))
    p2 = dict(iter_tensors(results / "final_vlm"))
    changed = [k for k in p1 if "language_model" in k and not torch.equal(p1[k], p2[k])]
    assert changed

    model = AutoModelForImageTextToText.from_pretrained(results / "final_vlm")
    processor = AutoProcessor.from_pretrained(results / "final_vlm")
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    image = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many apples are there?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() > 0
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


# Phase 2 over the SFT model on the held-out demo split (200 problems, greedy): measured +5.0 points (33.0 % ->
# 38.0 %, README); the noise allowed is one standard error of a 200-problem rate near 35 % (3.4 points), rounded
# down so that a run on another machine of this kind passes while a stage that only holds level fails.
MEASURED_MARGIN, NOISE = 0.050, 0.030


def test_pipeline_does_its_job(results):
    phase1 = json.loads((results / "eval/phase1/demo.json").read_text())
    sft = json.loads((results / "eval/sft/demo.json").read_text())
    phase2 = json.loads((results / "eval/phase2/demo.json").read_text())
    assert phase2["n"] == 200
    assert phase2["well_formed_rate"] >= 0.95, phase2
    assert phase2["accuracy"] >= phase1["accuracy"] + 0.15, (phase1, phase2)
    assert sft["well_formed_rate"] >= 0.90, sft
    summary = json.loads((results / "report/summary.json").read_text())
    assert summary["results"]["demo"]["phase2"]["accuracy"] == phase2["accuracy"]
    assert summary["training"]["grpo_accuracy"]["reward"]
    assert "grpo_accuracy" in summary["stats"]["rl_stages"]


def test_the_post_sft_recipe_beats_the_sft_model(results):
    """Issue 12's bar for the embedded default's recipe: Phase 2 above the SFT model by the measured margin less
    the noise, still well formed."""
    sft = json.loads((results / "eval/sft/demo.json").read_text())
    phase2 = json.loads((results / "eval/phase2/demo.json").read_text())
    margin = phase2["accuracy"] - sft["accuracy"]
    assert margin >= MEASURED_MARGIN - NOISE, f"Phase 2 {phase2['accuracy']:.3f} vs SFT {sft['accuracy']:.3f}: {margin:+.3f}"
    assert phase2["well_formed_rate"] >= 0.95, phase2


def test_nothing_to_do_after_a_complete_run(run_dir):
    assert planned_jobs(snakemake(run_dir, "--configfile", str(CONFIG), "-n", "all")) == {}


def _changed_config(run_dir: Path, change: dict) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    for section, values in change.items():
        cfg[section].update(values)
    path = run_dir / f"changed-{'-'.join(change)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_changing_a_grpo_key_reruns_that_stage_and_what_follows_only(run_dir):
    cfg = _changed_config(run_dir, {"grpo": {"temperature": 0.8}})
    jobs = planned_jobs(snakemake(run_dir, "--configfile", str(cfg), "-n", "all"))
    assert {"grpo_accuracy", "merge_grpo_accuracy", "compose", "report"} <= set(jobs)
    assert not {"phase1_demo", "prompts", "distill", "sft", "merge_sft"} & set(jobs)
    assert jobs["evaluate"] == 1  # phase2 only


def test_a_dpo_key_is_not_a_stage_of_the_default_recipe(run_dir):
    cfg = _changed_config(run_dir, {"dpo": {"beta": 0.2}})
    assert planned_jobs(snakemake(run_dir, "--configfile", str(cfg), "-n", "all")) == {}


def test_changing_sft_learning_rate_reruns_from_sft_on(run_dir):
    cfg = _changed_config(run_dir, {"sft": {"learning_rate": 1e-3}})
    jobs = planned_jobs(snakemake(run_dir, "--configfile", str(cfg), "-n", "final_vlm"))
    assert {"sft", "merge_sft", "grpo_accuracy", "merge_grpo_accuracy", "compose"} <= set(jobs)
    assert not {"phase1_demo", "extract_llm", "prompts", "distill", "pairs", "dpo"} & set(jobs)


def test_bad_config_key_is_named_at_start_up(tmp_path):
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["dpo"]["beta"] = "high"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--configfile", str(path), "-n", "final_vlm", check=False)
    assert proc.returncode != 0
    assert "dpo.beta: 'high' is not of type 'number'" in proc.stdout + proc.stderr


def test_missing_phase1_directory_is_one_line(tmp_path):
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["phase1"]["path"] = str(tmp_path / "no-such-phase1")
    path = tmp_path / "p1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--configfile", str(path), "-n", "final_vlm", check=False)
    assert proc.returncode != 0
    err = (proc.stdout + proc.stderr).strip()
    assert "phase1.path: Phase 1 checkpoint directory not found" in err
    assert "Traceback" not in err

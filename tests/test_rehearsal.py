"""The production rehearsal (config/rehearsal.yaml): config/phase2.yaml's stages, backends and features,
run end to end at CPU sizes with the real llm-jp-4 tokenizer and chat template and the real vLLM
engine (its CPU build). The teacher is the demo's SFT model from the session's demo run.

The static test fails when phase2.yaml names a key, backend, task or feature that the rehearsal does
not set to the same value (only sizes, data locations and the teacher model may differ)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_DATA, snakemake

PHASE2 = REPO / "config" / "phase2.yaml"
REHEARSAL = REPO / "config" / "rehearsal.yaml"

# Keys whose values may differ between the two (dotted paths; a trailing ".*" covers a whole section):
# sizes, where data and models come from, the vLLM engine's CPU settings, and the cluster's resources.
MAY_DIFFER = {
    "run", "phase1.*", "data.sources", "data.demo.*", "data.charts.n_train", "data.charts.n_test",
    "data.decontamination.eval_sets",
    "teacher.model", "teacher.batch_size", "teacher.max_new_tokens", "teacher.tensor_parallel_size", "teacher.shards",
    "teacher.chunk_size",
    "sft.num_train_epochs", "sft.global_batch_size", "sft.micro_batch_size", "sft.max_length", "sft.logging_steps",
    "sft.save_steps",
    "dpo.num_train_epochs", "dpo.global_batch_size", "dpo.micro_batch_size", "dpo.max_length", "dpo.logging_steps",
    "dpo.save_steps",
    "grpo.num_train_epochs", "grpo.global_batch_size", "grpo.micro_batch_size", "grpo.num_generations",
    "grpo.max_completion_length", "grpo.max_length", "grpo.logging_steps", "grpo.save_steps", "grpo.data.limit",
    "merge.dtype",
    "pairs.on_policy_samples", "pairs.sampling.max_new_tokens", "pairs.sampling.batch_size",
    "eval.data.*", "eval.batch_size", "eval.max_new_tokens", "eval.limit", "eval.max_prompt_tokens", "eval.dtype",
    "eval.tensor_parallel_size", "eval.compare.n", "eval.models",
    "vllm.*", "resources.*",
}


def leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


def may_differ(key: str) -> bool:
    return key in MAY_DIFFER or any(key.startswith(p[:-1]) for p in MAY_DIFFER if p.endswith(".*"))


def test_the_rehearsal_runs_what_phase2_runs():
    """Every backend, task and feature phase2.yaml sets, the rehearsal sets the same way."""
    from compass import config

    default = REPO / "config" / "config.yaml"  # Snakemake merges --configfile over the Snakefile's configfile
    phase2 = config.load([default, PHASE2])
    rehearsal = config.load([default, REHEARSAL])
    p2, reh = leaves(phase2), leaves(rehearsal)
    different = {k: (v, reh.get(k)) for k, v in p2.items() if not may_differ(k) and reh.get(k) != v}
    assert not different, f"config/rehearsal.yaml differs from config/phase2.yaml beyond sizes: {different}"
    # The features the rehearsal exists to prove are really on.
    assert phase2["teacher"]["backend"] == "vllm" and phase2["eval"]["backend"] == "vllm"
    assert rehearsal["pairs"]["on_policy_ratio"] > 0 and rehearsal["pairs"]["sampling"]["backend"] == "vllm"
    assert rehearsal["teacher"]["shards"] > 1 and phase2["teacher"]["shards"] > 1
    assert [s["name"] for s in rehearsal["data"]["decontamination"]["eval_sets"]] == \
        [s["name"] for s in phase2["data"]["decontamination"]["eval_sets"]]
    assert rehearsal["eval"]["ablation"]["prompt_variants"] and len(rehearsal["eval"]["compare"]["models"]) >= 2
    # Fewer models may be evaluated (every model goes through the same code path), not fewer kinds:
    # a LLM (sft) and a LLaVA-OneVision VLM (phase2).
    assert {"sft", "phase2"} <= set(rehearsal["eval"]["models"]) <= set(phase2["eval"]["models"])


@pytest.fixture(scope="session")
def rehearsal_run(demo_run, tmp_path_factory) -> Path:
    """`snakemake --cores 2 all --configfile config/rehearsal.yaml` in a working directory of its own,
    with the demo run's SFT model as the teacher (as `make rehearsal` does); the working directory."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data fixtures not found at {SHARED_DATA}")
    from upstream_fixtures import write_rehearsal_data

    work = tmp_path_factory.mktemp("rehearsal")
    # The config's paths are relative to the repository root: ../shared/data and results/demo/sft/merged.
    shared = work.parent / "shared"
    if not shared.exists():
        shared.symlink_to(SHARED_DATA.parent)
    (work / "results" / "demo" / "sft").mkdir(parents=True)
    (work / "results" / "demo" / "sft" / "merged").symlink_to(demo_run / "results" / "demo" / "sft" / "merged")
    write_rehearsal_data(work / "results" / "rehearsal-data")
    snakemake(work, "--configfile", str(REHEARSAL), "--cores", "2", "all")
    return work



@pytest.mark.e2e
def test_every_stage_of_the_rehearsal_ran_on_its_backend(rehearsal_run):
    run = rehearsal_run / "results" / "rehearsal"
    cfg = yaml.safe_load(REHEARSAL.read_text())
    for shard in range(cfg["teacher"]["shards"]):
        stats = json.loads((run / "traces" / "shards" / f"{shard}-of-{cfg['teacher']['shards']}.stats.json").read_text())
        assert stats["backend"] == "vllm" and stats["chat_template_kwargs"] == {"enable_thinking": False}
    traces = json.loads((run / "traces" / "traces.stats.json").read_text())
    assert traces["traces"] > 0
    prompts = json.loads((run / "data" / "prompts.stats.json").read_text())
    assert json.dumps(prompts).count("decontaminat") > 0
    for stage in ("sft", "dpo"):
        log = json.loads((run / stage / "adapter" / "training_log.json").read_text())
        assert log["chat_template_kwargs"] == cfg["chat"]["template_kwargs"]
    samples = [json.loads(line) for line in (run / "dpo" / "policy_samples.jsonl").read_text().splitlines()]
    assert samples and all(len(s["samples"]) == cfg["pairs"]["on_policy_samples"] for s in samples)
    for model in cfg["eval"]["models"]:
        for task in cfg["eval"]["tasks"]:
            summary = json.loads((run / "eval" / model / f"{task}.json").read_text())
            assert summary["backend"] == "vllm", (model, task)
            assert summary["n"] > 0
    for task in ("gsm8k", "mgsm_ja", "math500"):
        assert (run / "eval" / "phase2" / "step_by_step" / f"{task}.json").is_file()
    assert (run / "compare" / "ballots.jsonl").is_file()
    assert (run / "report" / "index.html").is_file()


@pytest.mark.e2e
def test_the_clgrpo_recipe_runs_at_rehearsal_sizes(rehearsal_run):
    """CLGRPO's three GRPO stages (config/rehearsal-clgrpo.yaml over the rehearsal) from the rehearsal's SFT
    model, with the real tokenizer and chat template: each stage trains from the previous one's merged
    model with its own rewards and clip bounds, and is merged."""
    overlay = REPO / "config" / "rehearsal-clgrpo.yaml"
    snakemake(rehearsal_run, "--configfile", str(REHEARSAL), str(overlay), "--cores", "2",
              "results/rehearsal/grpo_cliplow/merged")
    run = rehearsal_run / "results" / "rehearsal"
    cfg = yaml.safe_load(REHEARSAL.read_text())
    expected = {"grpo_format": ({"format": 1, "accuracy": 0}, 0.2), "grpo_accuracy": ({"format": 1, "accuracy": 1}, 0.2),
                "grpo_cliplow": ({"format": 1, "accuracy": 1}, 0.1)}
    for stage, (rewards, epsilon) in expected.items():
        log = json.loads((run / stage / "adapter" / "training_log.json").read_text())
        assert (log["stage"], log["rewards"], log["epsilon"], log["generation"]) == (stage, rewards, epsilon, "hf")
        assert log["chat_template_kwargs"] == cfg["chat"]["template_kwargs"]
        steps = [h for h in log["log_history"] if "reward" in h]
        assert steps and all("rewards/format/mean" in h for h in steps)
        assert (run / stage / "merged" / "config.json").is_file()


@pytest.mark.e2e
def test_the_final_vlm_serves_as_is_in_vllm_with_an_image(rehearsal_run):
    """What compass publishes loads in vLLM and answers an image + text prompt as transformers does."""
    from PIL import Image

    from compass import generation

    cfg = yaml.safe_load(REHEARSAL.read_text())
    vlm = rehearsal_run / "results" / "rehearsal" / "final_vlm"
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "グラフの最大値は？"}]}]
    image = Image.new("RGB", (480, 320), (30, 120, 200))
    sampling = generation.Sampling(max_new_tokens=8)
    hf = generation.load("hf", vlm, cfg["chat"]).generate([conv], sampling, images=[[image]])
    vllm = generation.load("vllm", vlm, cfg["chat"], engine_kwargs=cfg["vllm"]["engine_kwargs"]).generate(
        [conv], sampling, images=[[image]])
    assert vllm == hf

"""GRPO stages (compass/train/grpo.py) on the tiny demo model: thin over TRL's GRPOTrainer with LoRA (the KL
reference is the adapter disabled, no second model), clip bounds and rewards from the config, one stage run
end to end through `compass grpo`, killed and resumed from its last checkpoint; and the recipe as
configuration: config/clgrpo.yaml plans the four-stage CLGRPO recipe, the embedded default its [grpo_accuracy]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, planned_jobs, snakemake
from test_resume import kill_after_checkpoint, run

from compass.io import CompassError, write_jsonl

STEPS = 6
SETS = [
    f"grpo.max_steps={STEPS}", "grpo.global_batch_size=4", "grpo.micro_batch_size=4", "grpo.num_generations=2",
    "grpo.max_completion_length=12", "grpo.max_length=256", "grpo.bf16=false", "grpo.gradient_checkpointing=false",
    "grpo.logging_steps=1", "grpo.save_steps=2", "grpo.data.limit=16", "grpo.learning_rate=0.001",
    "grpo.lora={r: 4, alpha: 8, dropout: 0.0}",
]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    """The prompt pool as `compass prompts` writes it (id, source, lang, problem, answer, solution)."""
    from compass.data import demo

    rows, _ = demo.generate(24, 1, seed=1)
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    write_jsonl(path, rows)
    return path


def grpo_cmd(prompts: Path, model: Path, out: Path, ckpt: Path, stage: str = "grpo_cliplow") -> list[str]:
    sets = [a for s in SETS for a in ("--set", s)]
    return [sys.executable, "-m", "compass", "grpo", "--config", str(REPO / "config" / "config.yaml"), *sets,
            "--stage", stage, "--prompts", str(prompts), "--model", str(model), "--out", str(out), "--checkpoints", str(ckpt)]


def test_a_stage_is_the_shared_keys_with_its_overrides(demo_config):
    from compass.train import grpo

    sec = demo_config["grpo"]
    cliplow = grpo.stage_section(sec, "grpo_cliplow")
    assert (cliplow["epsilon"], cliplow["epsilon_high"], cliplow["num_iterations"]) == (0.1, 0.2, 2)
    assert grpo.stage_section(sec, "grpo_format")["rewards"] == {"format": 1.0, "accuracy": 0.0}
    assert grpo.stage_params(sec, "grpo_format")["stages"] == {"grpo_format": sec["stages"]["grpo_format"]}
    with pytest.raises(CompassError, match="grpo.stages: no stage 'grpo_nope'"):
        grpo.stage_section(sec, "grpo_nope")
    bad = {**sec, "stages": {**sec["stages"], "grpo_x": {"epsilon": 1.5}}}
    with pytest.raises(CompassError, match="grpo.stages.grpo_x: grpo.epsilon"):
        grpo.stage_section(bad, "grpo_x")


def test_grpo_config_and_trainer_are_trl_with_lora_and_no_second_model(demo_config, phase1_llm, prompts, tmp_path):
    from datasets import Dataset

    from compass import chat
    from compass.io import read_jsonl
    from compass.train import common, grpo

    sec = {**grpo.stage_section(demo_config["grpo"], "grpo_cliplow"), "bf16": False, "beta": 0.04,
           "global_batch_size": 4, "micro_batch_size": 4, "num_generations": 2}
    model, tok = common.load_llm(phase1_llm, common.model_kwargs(sec, "grpo", False))
    funcs, weights = grpo.reward_functions(sec, chat.OutputParser(tok, {}))
    args = grpo.config(sec, 0, tmp_path / "c", reward_weights=weights)
    assert (args.epsilon, args.epsilon_high, args.num_iterations, args.beta) == (0.1, 0.2, 2, 0.04)
    assert [f.__name__ for f in funcs] == ["format", "accuracy"] and args.reward_weights == [1.0, 1.0]
    trainer = grpo.trainer(args, model, tok, Dataset.from_list([grpo.to_example(r) for r in read_jsonl(prompts)]),
                           sec, funcs)
    assert trainer.ref_model is None  # beta > 0: the reference is the adapter disabled
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(CompassError, match="grpo: generation_batch_size .* divisible by num_generations"):
        grpo.config({**sec, "num_generations": 3}, 0, tmp_path / "c")


def test_pass_rate_band_keeps_what_the_model_does_not_always_solve(demo_config, phase1_llm, prompts):
    from compass.io import read_jsonl
    from compass.train import grpo

    rows = read_jsonl(prompts)[:3]
    sec = {**demo_config["grpo"], "max_completion_length": 8}
    sec["data"] = {**sec["data"], "pass_rate": {**sec["data"]["pass_rate"], "samples": 2}}
    rates = grpo.pass_rates(rows, phase1_llm, {}, sec, 0)
    assert rates == [0.0, 0.0, 0.0]  # random weights solve nothing
    assert grpo.in_band(rows, [0.0, 0.5, 1.0], 0.0, 0.75) == rows[:2]  # always solved: nothing left to learn
    assert grpo.in_band(rows, [0.0, 0.5, 1.0], 0.25, 0.75) == rows[1:2]


def test_a_grpo_stage_runs_end_to_end_and_resumes_after_a_kill(tmp_path, prompts, phase1_llm):
    out, ckpt = tmp_path / "adapter", tmp_path / "ckpt"
    cmd = grpo_cmd(prompts, phase1_llm, out, ckpt)
    step = kill_after_checkpoint(cmd, tmp_path, ckpt, min_step=2)
    assert 2 <= step < STEPS and not out.exists()

    proc = run(cmd, tmp_path)
    assert f"resuming from {ckpt / f'checkpoint-{step}'}" in proc.stdout
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_step"] == STEPS and log["resumed_from"].endswith(f"checkpoint-{step}")
    assert log["stage"] == "grpo_cliplow" and (log["epsilon"], log["epsilon_high"]) == (0.1, 0.2)
    assert log["data"]["prompts"] == 16 and log["base_model"]["path"] == str(phase1_llm)
    steps = [h["step"] for h in log["log_history"] if "loss" in h]
    assert steps == list(range(1, STEPS + 1))  # one history: each step logged once
    # reward curves, KL-free clip fractions and lengths, per generation step
    logged = {k for h in log["log_history"] for k in h}
    assert {"rewards/format/mean", "rewards/accuracy/mean", "clip_ratio/low_mean", "completions/mean_length"} <= logged
    assert (out / "adapter_model.safetensors").is_file() and not ckpt.exists()


def test_clgrpo_config_plans_the_four_stage_recipe(tmp_path):
    """config/clgrpo.yaml: SFT, then grpo_format -> grpo_accuracy -> grpo_cliplow, each trained from the merged
    model before it, composed from the last; no DPO. The embedded default plans its own [grpo_accuracy], and
    config/phase2.yaml the seed's [dpo]."""
    proc = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(REPO / "config" / "config.yaml"),
                     str(REPO / "config" / "clgrpo.yaml"))
    jobs = planned_jobs(proc)
    stages = ["grpo_format", "grpo_accuracy", "grpo_cliplow"]
    for s in ["sft", "merge_sft", *stages, *(f"merge_{s}" for s in stages), "compose", "report"]:
        assert jobs.get(s) == 1, (s, jobs)
    assert not {"pairs", "dpo", "merge_dpo", "policy_samples"} & set(jobs)
    text = proc.stdout
    starts = {"grpo_format": "sft/merged", "grpo_accuracy": "grpo_format/merged", "grpo_cliplow": "grpo_accuracy/merged"}
    for stage, start in starts.items():
        assert "grpo --params" in text and f"--stage {stage} --prompts results/clgrpo/data/prompts.jsonl" \
            f" --model results/clgrpo/{start} --out results/clgrpo/{stage}/adapter" in text
    assert "--phase1 results/clgrpo/phase1/vlm --llm results/clgrpo/grpo_cliplow/merged" in text
    default = planned_jobs(snakemake(tmp_path / "d", "-n", "all", "--configfile", str(REPO / "config" / "config.yaml")))
    assert default.get("grpo_accuracy") == 1 and not {"pairs", "dpo", "grpo_format", "grpo_cliplow"} & set(default)

"""The workflow layer stays declarative: what the rule files take from elsewhere (the schema, Snakemake's
shell prefix) rather than compute or patch themselves. Parses and one tiny job; no stage runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, load_workflow

from compass.config import job_settings, load_schema


def test_every_job_gets_the_hub_cache_and_snakemake_keeps_its_own_environment(tmp_path):
    """cluster.smk exports config cache.* in front of each job's shell command: a job sees them (here a
    rule added beside the workflow's), whatever Snakemake itself was started with."""
    (tmp_path / "Snakefile").write_text(f'include: "{REPO / "Snakefile"}"\n\n'
                                        'rule show_env:\n    output: "env.txt"\n    shell: "env > {output}"\n')
    cache = "my cache/{x}"  # a space and braces survive
    env = dict(os.environ, HF_HOME="/elsewhere", HF_HUB_OFFLINE="0")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                           "--config", f"cache={json.dumps({'dir': cache})}", "--", "env.txt"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if line.startswith("HF_"))
    home = str(tmp_path / cache)
    # (other HF_* variables the test session's environment carries, e.g. set by a library imported earlier, pass through)
    want = {"HF_HOME": home, "HF_HUB_CACHE": f"{home}/hub", "HF_DATASETS_CACHE": f"{home}/datasets",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    assert {k: seen.get(k) for k in want} == want, seen

    (tmp_path / "env.txt").unlink()
    (tmp_path / "online.yaml").write_text("cache: {offline: false}\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                           str(tmp_path / "online.yaml"), "--", "env.txt"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if line.startswith("HF_"))
    assert seen["HF_HOME"] == str(tmp_path / "cache/huggingface") and seen["HF_HUB_OFFLINE"] == "0", "offline: false leaves it be"


def test_eval_job_settings_come_from_the_schema():
    eval_keys = load_schema()["properties"]["eval"]["properties"]
    planned = {k for k, spec in eval_keys.items() if spec.get("x-plan")}
    assert planned == {"models", "checkpoints", "tasks", "data", "ablation", "compare"}
    assert job_settings("eval") == [k for k in eval_keys if k not in planned]


def evaluate_params(tmp_path, **eval_cfg) -> dict:
    wf = load_workflow(tmp_path, config={"eval": eval_cfg})
    return json.loads(wf.get_rule("evaluate").params.cfg)


def test_a_new_task_or_model_leaves_the_evaluations_done_alone_and_a_setting_reruns_them(tmp_path):
    """The evaluate rule's params (what Snakemake's params rerun-trigger compares) hold every eval setting
    from the schema and nothing that only chooses which evaluations run."""
    base = evaluate_params(tmp_path)
    assert set(base["eval"]) == set(job_settings("eval"))
    assert evaluate_params(tmp_path, tasks=["demo", "gsm8k"], models=["phase1", "phase2"],
                           ablation={"prompt_variants": ["step_by_step"]}) == base
    changed = evaluate_params(tmp_path, temperature=0.7, max_new_tokens=64)
    assert changed["eval"] == {**base["eval"], "temperature": 0.7, "max_new_tokens": 64}

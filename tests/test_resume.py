"""Preemption and resume: SFT killed midway (SIGKILL, as a preemption without grace) resumes from its
last checkpoint on the rerun -- the step count continues, only the remaining steps run -- and ends
with the adapter an uninterrupted run writes. Checkpoints of another run are never resumed, and a
checkpoint cut short while it was being written is passed over.

The same resume under SLURM (`scontrol requeue` of the running SFT job) is in tests/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

N_TRACES = 64
BATCH = 4
EPOCHS = 1
TOTAL_STEPS = N_TRACES // BATCH * EPOCHS  # 16
SETS = [
    f"sft.num_train_epochs={EPOCHS}", f"sft.global_batch_size={BATCH}", f"sft.micro_batch_size={BATCH}",
    "sft.save_steps=4", "sft.logging_steps=1", "sft.max_length=256", "sft.learning_rate=0.001",
]


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    """Traces of N_TRACES demo problems in the XML format (their worked solutions, as the
    `reference` teacher writes them)."""
    from compass import config
    from compass.data.prompts import demo_rows
    from compass.io import write_jsonl
    from compass.trace_format import format_response, system_prompt

    cfg = config.load([REPO / "config" / "config.yaml"])
    rows, _ = demo_rows({**cfg["data"]["demo"], "n_train": N_TRACES, "n_test": 4}, seed=0)
    out = [{**r, "system": system_prompt(r["lang"]), "response": format_response(r["problem"], r["solution"], r["answer"])}
           for r in rows]
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    write_jsonl(path, out)
    return path


def sft_cmd(traces: Path, model: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    sets = [a for s in [*SETS, *extra] for a in ("--set", s)]
    return [sys.executable, "-m", "compass", "sft", "--config", str(REPO / "config" / "config.yaml"), *sets,
            "--traces", str(traces), "--model", str(model), "--out", str(out), "--checkpoints", str(ckpt)]


def run(cmd, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def complete_checkpoints(ckpt: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def kill_after_checkpoint(cmd, cwd, ckpt: Path, min_step: int, timeout: float = 300) -> int:
    """Start `cmd`, SIGKILL it once a complete checkpoint >= min_step exists; the newest complete step."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done = complete_checkpoints(ckpt)
            if done and done[-1] >= min_step:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint within the timeout")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return complete_checkpoints(ckpt)[-1]


def logged_steps(stdout: str) -> int:
    """Training log lines ({'loss': ...}) a run printed: one per optimisation step it did."""
    return len(re.findall(r"\{'loss': ", stdout))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, traces, phase1_llm) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted")
    proc = run(sft_cmd(traces, phase1_llm, work / "adapter", work / "ckpt"), work)
    assert logged_steps(proc.stdout) == TOTAL_STEPS
    return work / "adapter"


def test_killed_sft_resumes_from_its_last_checkpoint_and_finishes(tmp_path, traces, phase1_llm, uninterrupted):
    out, ckpt = tmp_path / "adapter", tmp_path / "ckpt"
    cmd = sft_cmd(traces, phase1_llm, out, ckpt)
    step = kill_after_checkpoint(cmd, tmp_path, ckpt, min_step=4)
    assert 4 <= step < TOTAL_STEPS
    assert not out.exists(), "a killed run must leave no output"
    assert not list(tmp_path.glob(".adapter.*")), "nor a temporary one... that looks complete"

    proc = run(cmd, tmp_path)
    assert f"resuming from {ckpt / f'checkpoint-{step}'}" in proc.stdout
    # The step count continues: the rerun does only the remaining steps ...
    assert logged_steps(proc.stdout) == TOTAL_STEPS - step
    log = json.loads((out / "training_log.json").read_text())
    assert log["resumed_from"].endswith(f"checkpoint-{step}")
    assert log["base_model"]["path"] == str(phase1_llm)  # what `compass merge` checks its --base against
    assert log["global_step"] == TOTAL_STEPS
    # ... and the history is one run: steps 1..TOTAL, each logged once.
    steps = [h["step"] for h in log["log_history"] if "loss" in h]
    assert steps == list(range(1, TOTAL_STEPS + 1))
    assert not ckpt.exists(), "checkpoints are removed once the adapter is written"

    # Same adapter as a run that was never interrupted (CPU, fixed seed: RNG, optimizer, scheduler
    # and data order are restored from the checkpoint).
    from safetensors.torch import load_file
    import torch

    a = load_file(uninterrupted / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_checkpoints_of_another_run_are_not_resumed(tmp_path, traces, phase1_llm):
    out, ckpt = tmp_path / "adapter", tmp_path / "ckpt"
    kill_after_checkpoint(sft_cmd(traces, phase1_llm, out, ckpt), tmp_path, ckpt, min_step=4)
    proc = run(sft_cmd(traces, phase1_llm, out, ckpt, "sft.learning_rate=0.002"), tmp_path)
    assert "resuming from" not in proc.stdout
    assert "starting afresh" in proc.stdout
    assert logged_steps(proc.stdout) == TOTAL_STEPS
    assert json.loads((out / "training_log.json").read_text())["resumed_from"] is None


def test_a_checkpoint_cut_short_is_passed_over(tmp_path):
    from compass.train.common import last_checkpoint

    for step in (4, 8):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"x")
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    torn = tmp_path / "checkpoint-12"
    torn.mkdir()
    (torn / "adapter_model.safetensors").write_bytes(b"x")  # killed before trainer_state.json
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    (torn / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert last_checkpoint(tmp_path / "none") is None

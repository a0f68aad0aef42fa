"""The `compass` command: every subcommand has --help, user errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compass.cli import SUBCOMMANDS, main


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "compass", *args], capture_output=True, text=True, cwd=cwd)


def test_top_level_help_lists_every_stage():
    proc = run("--help")
    assert proc.returncode == 0
    for name in SUBCOMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--out" in out


def test_user_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"id": "a", "source": "demo", "lang": "en", "problem": "p", "answer": "1", "solution": "s"}\n{oops\n')
    proc = run("distill", "--prompts", str(bad), "--out", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"compass distill: error: {bad}:2: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert not (tmp_path / "t.jsonl").exists()


def test_missing_checkpoint_directory_is_one_line(tmp_path):
    proc = run("extract-llm", "--phase1", str(tmp_path / "nope"), "--out", str(tmp_path / "llm"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"compass extract-llm: error: phase1.path: directory not found: {tmp_path / 'nope'}"


def test_bad_set_names_the_key(tmp_path):
    proc = run("prompts", "--set", "data.demo.n_train=-1", "--out", str(tmp_path / "p.jsonl"), "--test-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "data.demo.n_train: -1 is less than the minimum of 1" in proc.stderr


def test_thread_counts_above_the_usable_cpus_are_cut():
    from compass.cli import fit_threads_to_cpus

    env = {"OMP_NUM_THREADS": "32", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "x", "PATH": "/bin"}
    assert fit_threads_to_cpus(env, 2) == ["OMP_NUM_THREADS=32"]
    assert env == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "x", "PATH": "/bin"}
    assert fit_threads_to_cpus(env, 2) == []


def test_a_job_given_more_threads_than_cores_runs_torch_on_the_cores():
    """What a SLURM job with `cpus: 32` gets from Snakemake on a node with fewer cores."""
    import os

    from compass.cli import usable_cpus

    code = "import os, compass.cli as c; c.fit_threads_to_cpus(os.environ, c.usable_cpus()); " \
           "import torch; print(torch.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="512")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert int(out) == usable_cpus()
    proc = subprocess.run([sys.executable, "-m", "compass", "grade", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert f"OMP_NUM_THREADS=512 but this process can use {usable_cpus()} CPU(s)" in proc.stderr

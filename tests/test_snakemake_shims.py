"""compass/snakemake_shims.py: each shim fixes what the unpatched upstream code still gets wrong.

The `upstream_...` tests run the installed Snakemake and SLURM plugin WITHOUT the shims and assert the
bug is still there: when one fails, upstream has fixed it: delete that shim (and its test), pin the
release that fixed it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import subprocess
import sys

import pytest

from conftest import REPO, planned_jobs

# A rule `a` whose params come from the config and which fails on request, and a rule `b` after it:
# dpo and merge_dpo/compose in small.
SNAKEFILE = """
if config.get("shim"):
    from compass.snakemake_shims import apply

    apply()

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "cp {input} {output}"

rule a:
    output: "a.txt"
    params: p=config["param"]
    shell: "test {config[fail]} = 0 && echo {params.p} > {output}"
"""


def snakemake(work, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "b.txt", *args],
                          cwd=work, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def rerun_after_a_failure(tmp_path, shim: bool) -> dict[str, int]:
    """Run with param=1; change it to 2 and let `a` fail (its output goes); what a rerun with param=2 plans."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    shim_cfg = [f"shim={shim}"] if shim else []
    first = snakemake(tmp_path, "--config", "param=1", "fail=0", *shim_cfg)
    assert first.returncode == 0, first.stderr[-2000:]
    failed = snakemake(tmp_path, "--config", "param=2", "fail=1", *shim_cfg)
    assert failed.returncode != 0 and "Error in rule a" in failed.stderr, failed.stderr[-2000:]
    assert not (tmp_path / "a.txt").exists() and (tmp_path / "b.txt").read_text() == "1\n"
    return planned_jobs(snakemake(tmp_path, "-n", "--config", "param=2", "fail=0", *shim_cfg))


def test_upstream_snakemake_still_takes_stale_outputs_for_up_to_date_after_a_failed_job(tmp_path):
    assert rerun_after_a_failure(tmp_path, shim=False) == {}, (
        "Snakemake now reruns a failed job's stage: delete keep_the_record_of_failed_jobs (compass/snakemake_shims.py)")


def test_with_the_shim_the_rerun_reruns_the_failed_stage_and_what_follows(tmp_path):
    assert rerun_after_a_failure(tmp_path, shim=True) == {"a": 1, "b": 1}


def test_the_shim_leaves_a_successful_job_alone(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    assert snakemake(tmp_path, "--config", "param=1", "fail=0", "shim=True").returncode == 0
    assert planned_jobs(snakemake(tmp_path, "-n", "--config", "param=1", "fail=0", "shim=True")) == {}
    assert planned_jobs(snakemake(tmp_path, "-n", "--config", "param=2", "fail=0", "shim=True")) == {"a": 1, "b": 1}


def test_the_shim_keeps_the_signature_it_relies_on():
    from snakemake.jobs import Job

    from compass import snakemake_shims

    snakemake_shims.apply()
    snakemake_shims.apply()  # the Snakefile is parsed again in each cluster job
    assert getattr(Job.postprocess, snakemake_shims.SHIMMED)
    assert getattr(Job.postprocess.__wrapped__, snakemake_shims.SHIMMED, False) is False, "patched once only"
    assert "error" in inspect.signature(Job.postprocess.__wrapped__).parameters
    from snakemake.persistence import PersistenceBase

    for name in ("metadata", "cleanup_metadata", "_get_key", "_write_record"):  # what the shim calls
        assert callable(getattr(PersistenceBase, name, None)), f"snakemake.persistence.PersistenceBase.{name}"


def query(function, lines):
    """Call the plugin's status query on a command that prints `lines` as sacct would."""
    command = "printf " + "'" + "\\n".join(lines) + "\\n'"
    return asyncio.run(function(command, logging.getLogger("test")))


SACCT = ["11|COMPLETED", "12|CANCELLED by 0", "13|RUNNING", "14|FAILED"]


def test_upstream_slurm_plugin_still_misses_cancelled_by():
    slurm = pytest.importorskip("snakemake_executor_plugin_slurm")
    upstream = getattr(slurm.query_job_status, "__wrapped__", slurm.query_job_status)
    states, _ = query(upstream, SACCT)
    check = inspect.getsource(slurm.Executor.check_active_jobs)
    assert states["12"] == "CANCELLED by 0" and "elif status in fail_stati:" in check, (
        "the SLURM plugin now reads 'CANCELLED by <uid>': delete first_word_of_slurm_states (compass/snakemake_shims.py)")


def test_with_the_shim_a_cancelled_job_reads_as_cancelled():
    slurm = pytest.importorskip("snakemake_executor_plugin_slurm")
    from compass import snakemake_shims

    snakemake_shims.apply()
    states, seconds = query(slurm.query_job_status, SACCT)
    assert states == {"11": "COMPLETED", "12": "CANCELLED", "13": "RUNNING", "14": "FAILED"} and seconds >= 0
    assert query(slurm.query_job_status, ["15|"])[0] == {"15": ""}


def test_the_snakefile_applies_the_shims_and_no_rule_file_patches_anything():
    snakefile = (REPO / "Snakefile").read_text()
    assert "apply_snakemake_shims()" in snakefile
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        for needle in ("os.environ[", "os.environ.update", "snakemake.jobs", "snakemake.persistence",
                       "snakemake_executor_plugin_slurm"):
            assert needle not in text, f"{path.name}: {needle}"

"""The only place compass changes Snakemake or its SLURM plugin: two upstream bugs, worked around
until a release fixes them. The Snakefile calls `apply()` once; no rule file patches anything.

Both are still present in the newest releases on PyPI (snakemake 9.27.1 and
snakemake-executor-plugin-slurm 2.8.0, checked 2026-12-01), so no pin fixes them. Each has a test in
tests/test_snakemake_shims.py that runs the unpatched upstream code and fails once upstream behaves,
saying which shim to delete.

1. Snakemake records a failed job's outputs as finished. `Job.postprocess(error=True)` still calls
   `persistence.finished(job)`, which writes the job's params into the record of outputs it never
   wrote. After `scancel` of DPO with a changed dpo.beta, the rerun saw no params change for DPO and,
   its removed output being an intermediate one, took the final VLM of the old beta for up to date:
   nothing ran. The shim puts back the record each output had before the failed job, so the rerun
   reruns the stage and what follows (snakemake/snakemake#3808 is the same bug seen from
   --keep-incomplete).
2. The SLURM plugin matches sacct's State against "CANCELLED", but sacct reports a job cancelled
   with scancel as "CANCELLED by <uid>": such a job looked like it was still running and the
   workflow waited forever (even Ctrl-C did not end it). The shim cuts each state to its first word
   before the plugin reads it.
"""

from __future__ import annotations

import functools
import inspect

SHIMMED = "__compass_shim__"  # set on a patched function, so that apply() is idempotent


def keep_the_record_of_failed_jobs(job_class) -> None:
    """Shim 1: `job_class.postprocess` (snakemake.jobs.Job) leaves the metadata record of each output
    of a failed job as it was before the job."""
    upstream = job_class.postprocess
    if getattr(upstream, SHIMMED, False):
        return
    signature = inspect.signature(upstream)

    @functools.wraps(upstream)
    async def postprocess(self, *args, **kwargs):
        if not signature.bind(self, *args, **kwargs).arguments.get("error", False):
            return await upstream(self, *args, **kwargs)
        persistence = self.dag.workflow.persistence
        before = {f: persistence.metadata(f) for f in self.output}
        try:
            return await upstream(self, *args, **kwargs)
        finally:
            for f, record in before.items():
                if record is None:
                    persistence.cleanup_metadata(f)
                else:
                    persistence._write_record(persistence._get_key(f), record)  # noqa: SLF001 - no public writer

    setattr(postprocess, SHIMMED, True)
    job_class.postprocess = postprocess


def first_word_of_slurm_states(plugin) -> None:
    """Shim 2: the plugin's `query_job_status` (the module `snakemake_executor_plugin_slurm`)
    returns each job's state cut to its first word ("CANCELLED by 0" -> "CANCELLED")."""
    upstream = plugin.query_job_status
    if getattr(upstream, SHIMMED, False):
        return

    @functools.wraps(upstream)
    async def query_job_status(command, logger):
        states, seconds = await upstream(command, logger)
        if states:
            states = {job: state.split()[0] if state.strip() else state for job, state in states.items()}
        return states, seconds

    setattr(query_job_status, SHIMMED, True)
    plugin.query_job_status = query_job_status


def apply() -> None:
    """Both shims. The SLURM one only where the plugin is installed (a local run does without it)."""
    from snakemake.jobs import Job

    keep_the_record_of_failed_jobs(Job)
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ModuleNotFoundError as e:
        if e.name != "snakemake_executor_plugin_slurm":
            raise
        return
    first_word_of_slurm_states(plugin)

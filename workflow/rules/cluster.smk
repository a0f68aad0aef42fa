# Cluster side of the rules: what each rule asks of SLURM (config `resources`), the launcher of the
# training rules (config `launch`) and the Hugging Face cache every rule reads (config `cache`).
# The `slurm` profile (slurm/config.yaml) only turns the executor and Apptainer on; everything a
# user tunes per rule is config, validated by workflow/schemas/config.schema.yaml.
import os
import shlex

from snakemake.settings.types import DeploymentMethod

RESOURCES = config["resources"]
APPTAINER = DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method


def _job(rule):
    return RESOURCES.get(rule) or RESOURCES["default"]


def threads_for(rule):
    """The rule's threads: its CPUs (sbatch --cpus-per-task); capped at --cores in a local run."""
    return _job(rule)["cpus"]


def resources_for(rule):
    """config resources.<rule> -> the resources the SLURM executor plugin turns into sbatch flags.
    `nodes` and `gpus_per_node` are also what the training launcher is told (compass.launch)."""
    job = _job(rule)
    gpus, nodes = job["gpus"], job["nodes"]
    res = {"mem_mb": job["mem_mb"], "runtime": job["runtime"], "nodes": nodes, "gpus_per_node": gpus}
    partition = job["partition"] or (RESOURCES["gpu_partition"] if gpus else RESOURCES["cpu_partition"])
    if partition:
        res["slurm_partition"] = partition
    if RESOURCES["account"]:
        res["slurm_account"] = RESOURCES["account"]
    extra = " ".join(x for x in ("--exclusive" if job["exclusive"] else "", job["extra"].strip()) if x)
    if extra:
        res["slurm_extra"] = extra
    if nodes > 1:
        # The job runs in the batch step (the plugin's `mpi` mode), where compass.launch starts one
        # launcher per node with srun; GPUs are asked per node.
        res.update(mpi="srun", tasks=nodes, tasks_per_gpu=0, cpus_per_task=job["cpus"])
        if gpus:
            res["gres"] = f"gpu:{gpus}"
    elif gpus:
        res.update(gpu=gpus, tasks_per_gpu=0)
    return res


def repo_path(path):
    """A config path: relative to the working directory if it is there, else to the repository."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.relpath(os.path.join(workflow.basedir, path))


def container_for(rule, image):
    """The rule's Apptainer image; None for a multi-node rule, whose launcher starts the image on
    each node itself (srun cannot be called from inside the image)."""
    return None if _job(rule)["nodes"] > 1 else config["containers"][image]


def launch(rule, image):
    """Shell prefix of a training rule: `python -m compass.launch ... --` then the compass subcommand."""
    args = [
        # PYTHONSAFEPATH: the installed compass (the image's), not a copy in the working directory
        "PYTHONSAFEPATH=1 python -m compass.launch --nodes {resources.nodes} --gpus-per-node {resources.gpus_per_node}",
        "--accelerate-config " + shlex.quote(repo_path(config["launch"]["accelerate_config"])),
    ]
    if _job(rule)["nodes"] > 1 and APPTAINER:
        image = config["containers"][image]
        prefix = f"apptainer exec --home {os.getcwd()} {workflow.deployment_settings.apptainer_args} {image}"
        args.append("--container " + shlex.quote(prefix))
    return " ".join(args) + " --"


# Hugging Face downloads: one cache (config cache.dir) for every rule; only the fetch rules
# (workflow/rules/fetch.smk, local rules on the submitting node) go online.
HF_CACHE = config["cache"]["dir"]
os.environ["HF_HOME"] = os.path.abspath(HF_CACHE)
os.environ["HF_HUB_CACHE"] = os.path.join(os.environ["HF_HOME"], "hub")
os.environ["HF_DATASETS_CACHE"] = os.path.join(os.environ["HF_HOME"], "datasets")
if config["cache"]["offline"]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def _normalise_slurm_job_states():
    """Work around snakemake-executor-plugin-slurm 2.8.0: it matches sacct's State against
    "CANCELLED", but sacct reports a job cancelled with scancel as "CANCELLED by <uid>", so such a
    job looked like it was still running and the workflow waited forever (even Ctrl-C did not end
    it). The states are cut to their first word before the plugin reads them."""
    try:
        import snakemake_executor_plugin_slurm as slurm
    except ImportError:
        return
    query = getattr(slurm, "query_job_status", None)
    if query is None or getattr(query, "compass_normalised", False):
        return

    async def normalised(command, logger):
        states, seconds = await query(command, logger)
        if states:
            states = {job: state.split()[0] if state.strip() else state for job, state in states.items()}
        return states, seconds

    normalised.compass_normalised = True
    slurm.query_job_status = normalised


_normalise_slurm_job_states()


def _keep_the_record_of_failed_jobs():
    """Work around Snakemake 9.27.1: when a job fails (or is cancelled), `Job.postprocess(error=True)`
    still calls `persistence.finished`, which records the job's outputs as finished with the new
    params. A rerun then sees no params change for the failed stage and, its (removed) output being
    an intermediate one, considers the stale downstream outputs up to date: after `scancel` of DPO
    with a changed dpo.beta, the rerun did nothing and final_vlm kept the old beta. Here a failed
    job leaves the previous record as it was (only its incomplete marker goes), so the rerun reruns
    the stage and what follows."""
    import weakref

    from snakemake.jobs import Job
    from snakemake.persistence import PersistenceBase

    if getattr(PersistenceBase.finished, "compass_patched", False):
        return
    failed = weakref.WeakSet()
    postprocess, finished = Job.postprocess, PersistenceBase.finished

    async def postprocess_noting_errors(self, *args, **kwargs):
        if kwargs.get("error"):
            failed.add(self)
        return await postprocess(self, *args, **kwargs)

    async def finished_unless_failed(self, job):
        if job in failed:
            failed.discard(job)
            self._clear_cache()
            for f in job.output:
                self._unmark_incomplete(self._get_key(f))
            return None
        return await finished(self, job)

    finished_unless_failed.compass_patched = True
    Job.postprocess = postprocess_noting_errors
    PersistenceBase.finished = finished_unless_failed


_keep_the_record_of_failed_jobs()

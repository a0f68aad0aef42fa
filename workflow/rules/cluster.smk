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
# (workflow/rules/fetch.smk, local rules on the submitting node) go online. The variables are exported
# in front of every job's shell command (Snakemake's shell.prefix; bash's default `set -euo pipefail`
# kept), so a local run, a SLURM job and an Apptainer image all see them; Snakemake's own environment
# is left as it is.
HF_CACHE = config["cache"]["dir"]
HF_ENV = {
    "HF_HOME": os.path.abspath(HF_CACHE),
    "HF_HUB_CACHE": os.path.join(os.path.abspath(HF_CACHE), "hub"),
    "HF_DATASETS_CACHE": os.path.join(os.path.abspath(HF_CACHE), "datasets"),
    **({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if config["cache"]["offline"] else {}),
}
# (braces doubled: shell.prefix formats its text like a rule's shell command)
shell.prefix("set -euo pipefail; export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in HF_ENV.items())
             .replace("{", "{{").replace("}", "}}") + "; ")

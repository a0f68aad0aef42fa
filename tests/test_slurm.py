"""The workflow through a real SLURM cluster: `snakemake --profile slurm final_vlm`, literally, from a
checkout of the repository, on the embedded default.

The cluster is the single node cluster/slurm-setup.sh starts (Debian's slurm-wlm with slurmdbd on a
local MariaDB, so the executor plugin's default `sacct` status check runs as on a real cluster; the
node declares 8 GPUs in gres.conf, so the production GPU requests of config `resources` schedule
unchanged). `.ci/run` starts it; without it these tests skip, except in CI (CI=true), where a missing
cluster fails them. No Apptainer binary can be installed here, so the container method is switched
off (COMPASS_CONTAINERS=off; tests/test_containers.py covers the images); the jobs run on the CPU.

What is shown:
* every stage ran as its own SLURM job (job ids from Snakemake's log, COMPLETED in `sacct`, a SLURM
  log per job), with the GPUs, CPUs and memory config `resources` asks for;
* the outputs are the same as a local `snakemake --cores 2 final_vlm` (files byte for byte, model
  tensors bit for bit: CPU training with a fixed seed is deterministic);
* a changed parameter (of the recipe's GRPO stage) reruns only that stage and what follows, under the
  SLURM executor;
* `scancel` of the running GRPO job fails the workflow cleanly, naming the rule, with no output
  marked complete; the rerun resumes the stage from its last checkpoint;
* a preemption (`scontrol requeue` of the running job) is survived: SLURM requeues the job,
  Snakemake keeps waiting, GRPO resumes from its last checkpoint and the run finishes.

Runtime (2 CPU cores): about 10 min for the SLURM run, 6 for the faults; the local run is the one\ntests/test_workflow.py checks (conftest.demo_run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, load_workflow, planned_jobs

# The tests that need the cluster are marked slurm and e2e (`make test-fast` deselects e2e,
# `make test-slurm` selects slurm); the others check the profile's plumbing without SLURM.

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
BIN = Path(sys.executable).parent
PLAN = ["phase1_demo", "extract_llm", "prompts", "distill", "gather_traces", "sft", "merge_sft", "grpo_accuracy",
        "merge_grpo_accuracy", "compose"]
RUN_TIMEOUT = 45 * 60
STAGE = "grpo_accuracy"  # the embedded default's post-SFT stage (train.recipe)
# The parameter change of the fault test: the stage's length (and save_steps: checkpoints early).
GRPO_CHANGE = {"save_steps": 10, "stages": {STAGE: {"max_steps": 60, "rewards": {"format": 0.0, "accuracy": 1.0}}}}


def resource_key(rule: str) -> str:
    """The config `resources` entry a rule's job asks with (every GRPO stage shares grpo / merge_grpo)."""
    return "merge_grpo" if rule.startswith("merge_grpo_") else "grpo" if rule.startswith("grpo_") else rule


def slurm_down_reason() -> str | None:
    """None when a SLURM cluster answers (a node up, accounting through slurmdbd), else why not."""
    for tool in ("sbatch", "sinfo", "sacct", "scontrol"):
        if not shutil.which(tool):
            return f"`{tool}` not found"
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
        return f"no SLURM node up (sinfo: {proc.stdout.strip() or proc.stderr.strip()})"
    proc = subprocess.run(["sacct", "-n", "-X", "-S", "now-1hours"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"sacct fails (no slurmdbd?): {proc.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_down_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but no SLURM cluster is running: {reason}. .ci/run starts one with cluster/slurm-setup.sh.")
        pytest.skip(f"no SLURM cluster running ({reason}); start one with `sudo cluster/slurm-setup.sh`")


def checkout(dest: Path) -> Path:
    """A copy of the repository as a user has it (sources, config, profile), without outputs."""
    ignore = shutil.ignore_patterns(".venv", "results", ".snakemake", ".git", ".pytest_cache", "__pycache__", "*.sif",
                                    "*.egg-info", "cache")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def env(**extra) -> dict:
    """The environment of the literal command: the project's venv on PATH (compass, snakemake),
    containers off (no Apptainer here)."""
    e = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", COMPASS_CONTAINERS="off")
    e.pop("SLURM_JOB_ID", None)
    e.update(extra)
    return e


class Run:
    """`snakemake ...` started in `cwd`; stopped with SIGINT (which scancels its jobs) on timeout."""

    def __init__(self, cwd: Path, *args: str, name: str):
        self.cwd, self.log = cwd, cwd / f"{name}.log"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "snakemake"), *args], cwd=cwd, env=env(), stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = RUN_TIMEOUT) -> "Run":
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            raise AssertionError(f"snakemake did not finish within {timeout:.0f} s:\n{self.text[-4000:]}\n"
                                 f"cluster at the timeout:\n{cluster_state()}")
        self.seconds = time.monotonic() - self.t0
        return self

    @property
    def rc(self) -> int:
        return self.proc.returncode

    @property
    def text(self) -> str:
        return self.log.read_text()

    def jobs(self) -> dict[str, list[tuple[str, Path]]]:
        """rule -> [(SLURM job id, SLURM log)] from Snakemake's submission lines."""
        out: dict[str, list] = {}
        for jobid, log in re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.", self.text):
            rule = re.search(r"/rule_(\w+)/", log).group(1)
            out.setdefault(rule, []).append((jobid, Path(log)))
        return out


def cluster_state() -> str:
    """What SLURM says of its queue, node and recent jobs (for the message of a run that timed out)."""
    out = []
    for cmd in (["squeue", "-o", "%i %j %T %r %M %l"], ["sinfo", "-N", "-o", "%N %T %C %m %G %E"],
                ["sacct", "-X", "-S", "now-2hours", "--format=JobIDRaw,JobName%12,State,Elapsed,Start,End,Reason%20"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        out.append(f"$ {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-500:]}")
    return "\n".join(out)


def sacct(jobids, duplicates: bool = False) -> list[dict]:
    fields = ["JobIDRaw", "JobName", "State", "Partition", "NodeList", "AllocCPUS", "AllocTRES", "ReqMem", "ExitCode"]
    cmd = ["sacct", "-X", "-n", "-P", "-j", ",".join(jobids), f"--format={','.join(fields)}"]
    if duplicates:
        cmd.append("--duplicates")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines() if line.strip()]


def mem_mb(req: str) -> int:
    """sacct's ReqMem ("62.50G", "4000M", "250Gn") in MB."""
    m = re.match(r"^([\d.]+)([KMGT])", req)
    return round(float(m.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[m.group(2)])


def wait_for(predicate, what: str, run: Run, timeout: float = 900, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if run.proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {run.rc}) before {what}:\n{run.text[-3000:]}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}:\n{run.text[-3000:]}\ncluster:\n{cluster_state()}")


def complete_checkpoints(ckpt: Path, since: float = 0) -> list[int]:
    """Steps of the complete checkpoints (trainer_state.json written), written after `since`."""
    steps = []
    for p in ckpt.glob("checkpoint-*"):
        state = p / "trainer_state.json"
        if state.is_file() and state.stat().st_mtime > since:
            steps.append(int(p.name.split("-")[1]))
    return sorted(steps)


def planned(cwd: Path, *args: str) -> set[str]:
    """Rules a dry run under the SLURM profile would submit."""
    proc = subprocess.run([str(BIN / "snakemake"), "--profile", "slurm", "-n", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return set(planned_jobs(proc))



CLUSTER_RESOURCES = "cluster-resources.yaml"

@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> Run:
    """The literal command, from a checkout, on the embedded default with config/phase2.yaml's
    production resources (GPUs, whole nodes, memory) as the cluster user sets them."""
    repo = checkout(tmp_path_factory.mktemp("slurm") / "compass")
    production = yaml.safe_load((repo / "config/phase2.yaml").read_text())["resources"]
    # One GPU for each training section: the demo's global batches (= micro batches) are checked against the
    # devices at start-up (every section's, in the recipe or not), and the jobs then train in one CPU process (no
    # CUDA here) exactly as the local run does.
    for rule in ("sft", "dpo", "grpo"):
        production[rule]["gpus"] = 1
    (repo / CLUSTER_RESOURCES).write_text(yaml.safe_dump({"resources": production}))
    run = Run(repo, "--profile", "slurm", "final_vlm", "--configfile", CLUSTER_RESOURCES, name="snakemake-slurm").wait()
    assert run.rc == 0, run.text[-6000:]
    print(f"snakemake --profile slurm final_vlm: {run.seconds:.0f} s")
    return run


@pytest.fixture(scope="module")
def local_run(cluster, demo_run) -> Path:
    """The local run of the embedded default (`snakemake --cores 2 all`, shared with
    tests/test_workflow.py): its results directory."""
    return demo_run / "results" / "demo"


@pytest.mark.slurm
@pytest.mark.e2e
def test_every_stage_ran_as_a_slurm_job(slurm_run):
    jobs = slurm_run.jobs()
    assert sorted(jobs) == sorted(PLAN), jobs
    assert all(len(v) == 1 for v in jobs.values()), jobs
    ids = {rule: v[0][0] for rule, v in jobs.items()}
    rows = {r["JobIDRaw"]: r for r in sacct(ids.values())}
    assert set(rows) == set(ids.values())
    run_names = {r["JobName"] for r in rows.values()}
    assert len(run_names) == 1, "all jobs carry the run's id as their SLURM job name"
    assert re.search(r"SLURM run ID: " + re.escape(run_names.pop()), slurm_run.text)
    for rule, jobid in ids.items():
        row = rows[jobid]
        assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", (rule, row)
        # The job's SLURM log: the jobstep's Snakemake ran this rule on the node.
        slurm_log = jobs[rule][0][1]
        assert slurm_log.is_file(), slurm_log
        text = slurm_log.read_text()
        assert f"rule {rule}:" in text and "Finished" in text and f"Host: {row['NodeList']}" in text, slurm_log
    # Local rules stay local.
    assert "final_vlm" not in jobs
    assert (slurm_run.cwd / "results/demo/final_vlm/model.safetensors").is_file()


@pytest.mark.slurm
@pytest.mark.e2e
def test_jobs_got_the_resources_config_asks_for(slurm_run):
    from compass import config

    res = config.load([REPO / "config" / "config.yaml", slurm_run.cwd / CLUSTER_RESOURCES])["resources"]
    assert res["sft"]["gpus"] > 0 and res["distill"]["exclusive"], "the production requests are what is tested"
    ids = {rule: v[0][0] for rule, v in slurm_run.jobs().items()}
    rows = {r["JobIDRaw"]: r for r in sacct(ids.values())}
    for rule, jobid in ids.items():
        want, row = res.get(resource_key(rule)) or res["default"], rows[jobid]
        tres = dict(kv.split("=", 1) for kv in row["AllocTRES"].split(","))
        gpus = int(tres.get("gres/gpu", 0))
        if want["exclusive"]:
            nodes_cpus = int(subprocess.run(["sinfo", "-h", "-N", "-n", row["NodeList"], "-o", "%c"], capture_output=True,
                                            text=True).stdout.split()[0])
            assert int(row["AllocCPUS"]) == nodes_cpus, (rule, row)  # the whole node
            assert gpus >= want["gpus"], (rule, row)
        else:
            assert int(row["AllocCPUS"]) == want["cpus"], (rule, row)
            assert gpus == want["gpus"], (rule, row)
        assert abs(mem_mb(row["ReqMem"]) - want["mem_mb"]) <= want["mem_mb"] / 100, (rule, row)  # sacct rounds
    # The GPU stages asked for GPUs, got them, and (no CUDA here) trained in one CPU process.
    for rule in ("sft", STAGE):
        log = (slurm_run.cwd / f"results/demo/logs/{rule}.log").read_text()
        assert f"compass.launch: no GPU visible (asked for {res[resource_key(rule)]['gpus']} per node)" in log


@pytest.mark.slurm
@pytest.mark.e2e
def test_outputs_equal_a_local_run(slurm_run, local_run):
    import torch

    from compass.models.checkpoint import iter_tensors

    a, b = slurm_run.cwd / "results/demo", local_run
    for f in ["data/prompts.jsonl", "data/test/demo.jsonl", "traces/traces.jsonl", "traces/traces.stats.json"]:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    for d in ["phase1/vlm", "phase1/llm", "sft/adapter", "sft/merged", f"{STAGE}/adapter", f"{STAGE}/merged", "final_vlm"]:
        ta, tb = dict(iter_tensors(a / d)), dict(iter_tensors(b / d))
        assert ta.keys() == tb.keys() and ta, d
        different = [k for k in ta if not torch.equal(ta[k], tb[k])]
        assert not different, f"{d}: {len(different)} tensors differ, e.g. {different[:3]}"
    for f in ["sft/adapter/training_log.json", f"{STAGE}/adapter/training_log.json"]:
        la, lb = json.loads((a / f).read_text()), json.loads((b / f).read_text())
        assert la["global_step"] == lb["global_step"]
        losses = lambda log: [h["loss"] for h in log["log_history"] if "loss" in h]  # noqa: E731
        assert losses(la) == losses(lb), f


@pytest.mark.slurm
@pytest.mark.e2e
def test_changed_parameter_scancel_and_preemption_under_slurm(slurm_run, tmp_path):
    """The GRPO stage's length (and save_steps) changed: only the stage, its merge and compose are planned and
    submitted; the stage cancelled midway fails the run cleanly; the rerun resumes it, survives a preemption
    (requeue) and finishes."""
    repo = slurm_run.cwd
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["grpo"].update(GRPO_CHANGE)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    args = ["--profile", "slurm", "final_vlm", "--configfile", str(changed)]
    assert planned(repo, "final_vlm", "--configfile", str(changed)) == {STAGE, f"merge_{STAGE}", "compose", "final_vlm"}
    ckpt = repo / f"results/demo/{STAGE}/checkpoints"
    adapter = repo / f"results/demo/{STAGE}/adapter"

    # 1. scancel the stage once it has written a checkpoint: the run fails cleanly, naming the rule.
    t0 = time.time()
    run = Run(repo, *args, name="snakemake-scancel")
    wait_for(lambda: STAGE in run.jobs() and complete_checkpoints(ckpt, t0), "a GRPO checkpoint", run)
    jobid = run.jobs()[STAGE][0][0]
    subprocess.run(["scancel", jobid], check=True)
    run.wait(600)
    assert run.rc != 0
    assert f"Error in rule {STAGE}" in run.text and f"SLURM-job '{jobid}' failed, SLURM status is: 'CANCELLED'" in run.text
    assert "Traceback" not in run.text
    assert set(run.jobs()) == {STAGE}, "nothing after the stage was submitted"
    assert not adapter.exists(), "a cancelled job leaves no output"
    assert planned(repo, "final_vlm", "--configfile", str(changed)) == {STAGE, f"merge_{STAGE}", "compose", "final_vlm"}
    assert sacct([jobid])[0]["State"].startswith("CANCELLED")

    # 2. The rerun resumes; preempt it (requeue) after a further checkpoint; it finishes.
    first = complete_checkpoints(ckpt)[-1]
    t0 = time.time()
    run = Run(repo, *args, name="snakemake-rerun")
    later = wait_for(lambda: STAGE in run.jobs() and [s for s in complete_checkpoints(ckpt, t0) if s > first],
                     "a further GRPO checkpoint", run)[-1]
    jobid = run.jobs()[STAGE][0][0]
    assert f"resuming from {ckpt.relative_to(repo) / f'checkpoint-{first}'}" in (repo / f"results/demo/logs/{STAGE}.log").read_text()
    subprocess.run(["scontrol", "requeue", jobid], check=True)
    # A requeued job waits 2 min (SLURM's BeginTime); start it now.
    wait_for(lambda: subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%T"], capture_output=True, text=True).stdout.strip() == "PENDING",
             "the requeued job to be pending", run, timeout=120, every=0.5)
    subprocess.run(["scontrol", "update", f"JobId={jobid}", "StartTime=now"], check=True)
    run.wait()
    assert run.rc == 0, run.text[-4000:]
    jobs = run.jobs()
    assert sorted(jobs) == ["compose", STAGE, f"merge_{STAGE}"], jobs
    assert [j for j, _ in jobs[STAGE]] == [jobid], "the same job, requeued by SLURM, not resubmitted"
    states = [r["State"] for r in sacct([jobid], duplicates=True)]
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states
    log = json.loads((adapter / "training_log.json").read_text())
    assert log["resumed_from"] and int(log["resumed_from"].rsplit("-", 1)[1]) >= later
    steps = [h["step"] for h in log["log_history"] if "loss" in h]
    assert steps == sorted(set(steps)) and steps[-1] == log["global_step"]
    assert not ckpt.exists()
    assert planned(repo, "final_vlm", "--configfile", str(changed)) == set()


# --- Without a cluster: config resources -> sbatch, and the training launcher's commands. ----------


def workflow_rules(tmp_path, config=None, apptainer=False) -> dict:
    """rule name -> parsed rule (conftest.load_workflow: cwd and environment are put back)."""
    from snakemake.settings.types import DeploymentMethod

    deployment = {DeploymentMethod.APPTAINER} if apptainer else set()
    wf = load_workflow(tmp_path, deployment=deployment, apptainer_args="--nv", config=config)
    return {r.name: r for r in wf.rules}


def sbatch_call(rule) -> str:
    """The sbatch command line snakemake-executor-plugin-slurm builds for a rule's job."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Res(dict):
        __getattr__ = dict.__getitem__

    res = Res({k: v.value for k, v in rule.resources.items() if not v.is_evaluable()})
    job = SimpleNamespace(resources=res, threads=res["_cores"], name=rule.name, is_group=lambda: False)
    params = {"run_uuid": "RUN", "slurm_logfile": "LOG", "comment_str": f"rule_{rule.name}", "account": "",
              "partition": f" -p {res['slurm_partition']}" if "slurm_partition" in res else "", "workdir": "WD"}
    return get_submit_command(job, params) + set_gres_string(job)


def test_config_resources_become_sbatch_flags(tmp_path):
    production = yaml.safe_load((REPO / "config/phase2.yaml").read_text())["resources"]
    batches = {stage: {"global_batch_size": 64, "micro_batch_size": 2} for stage in ("sft", "dpo")}  # 4 GPUs each
    rules = workflow_rules(tmp_path, {"resources": {**production, "account": "proj", "gpu_partition": "gpu", "cpu_partition": "cpu"},
                                      **batches})
    sft = sbatch_call(rules["sft"])
    for flag in ("--gpus=4", "--cpus-per-task=32", "--mem 256000", "-t 2880", "--nodes=1", "-p gpu"):
        assert flag in sft, (flag, sft)
    assert "--ntasks-per-gpu" not in sft and "--exclusive" not in sft
    distill = sbatch_call(rules["distill"])
    assert "--exclusive" in distill and "--gpus=4" in distill and "-p gpu" in distill
    merge = sbatch_call(rules["merge_sft"])
    for flag in ("--ntasks=1", "--cpus-per-task=8", "--mem 128000", "-p cpu"):
        assert flag in merge, (flag, merge)
    assert "--gpus" not in merge and "gres" not in merge
    assert sbatch_call(rules["evaluate"]).count("--gpus=1") == 1
    assert rules["sft"].resources["slurm_account"].value == "proj"


def test_the_embedded_default_asks_for_a_laptop(tmp_path):
    """A local demo run prints no job asking for GPUs or hundreds of GB (the defaults); phase2.yaml does."""
    rules = workflow_rules(tmp_path)
    for name, rule in rules.items():
        res = {k: v.value for k, v in rule.resources.items() if not v.is_evaluable()}
        assert res.get("gpus_per_node", 0) == 0 and res.get("mem_mb", 0) <= 8000, (name, res)


def test_multi_node_training_is_config(tmp_path):
    rules = workflow_rules(tmp_path, {"resources": {"sft": {"nodes": 2, "gpus": 8, "cpus": 64}},
                                      "sft": {"global_batch_size": 64, "micro_batch_size": 2}}, apptainer=True)
    sft = sbatch_call(rules["sft"])
    for flag in ("--nodes=2", "--ntasks=2", "--gres=gpu:8", "--cpus-per-task=64"):
        assert flag in sft, (flag, sft)
    assert "--gpus=" not in sft and "--ntasks-per-gpu" not in sft
    assert rules["sft"].resources["mpi"].value == "srun"  # the job runs in the batch step
    # The launcher starts the image on every node itself, so the rule has no container of its own.
    assert rules["sft"].container_img is None and rules["grpo_accuracy"].container_img == "containers/rl.sif"
    assert "--container 'apptainer exec --home" in rules["sft"].shellcmd and "containers/train.sif'" in rules["sft"].shellcmd
    assert "python -m compass.launch --nodes {resources.nodes} --gpus-per-node {resources.gpus_per_node}" in rules["grpo_accuracy"].shellcmd


def launch_args(*argv):
    from compass.launch import build_parser

    args = build_parser().parse_args(list(argv))
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return args


def test_launcher_commands(monkeypatch):
    import compass.launch as launch

    py = "PY"
    # No GPU (this machine, the CI cluster): one CPU process, whatever was asked for.
    p = launch.plan(launch_args("--nodes", "1", "--gpus-per-node", "4", "--", "sft", "--x"), {}, 0, py)
    assert p.argv == [py, "-m", "compass", "sft", "--x"] and "no GPU visible (asked for 4 per node)" in p.note
    # One node, 4 GPUs: accelerate launch with the DeepSpeed config, a free port.
    args = launch_args("--gpus-per-node", "4", "--", "sft", "--x")
    p = launch.plan(args, {}, 4, py)
    argv = launch.with_deepspeed_config(p.argv, str(REPO / args.accelerate_config))
    assert argv[:4] == [py, "-m", "accelerate.commands.launch", "--config_file"]
    assert argv[argv.index("--deepspeed_config_file") + 1].endswith("config/deepspeed/zero2.json")
    assert Path(argv[argv.index("--deepspeed_config_file") + 1]).is_file()
    assert argv[argv.index("--num_processes") + 1] == "4" and argv[argv.index("--main_process_port") + 1] == "0"
    assert argv[-4:] == ["-m", "compass", "sft", "--x"]
    with pytest.raises(SystemExit, match="asked for 8 GPU"):
        launch.plan(launch_args("--gpus-per-node", "8", "--", "sft"), {}, 4, py)
    # Two nodes, from the batch step: one launcher per node under srun, in the image.
    monkeypatch.setattr(launch, "first_node", lambda env: "gpu017")
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_CPUS_PER_TASK": "64"}
    p = launch.plan(launch_args("--nodes", "2", "--gpus-per-node", "8", "--container", "apptainer exec --nv t.sif", "--", "sft"), env, 0, py)
    assert p.argv[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--cpus-per-task=64"]
    assert p.argv[6:10] == ["apptainer", "exec", "--nv", "t.sif"]
    assert p.argv[10:14] == ["python", "-m", "compass.launch", "--node-task"]
    assert p.env == {"MASTER_ADDR": "gpu017", "MASTER_PORT": str(20000 + 4242)}
    with pytest.raises(SystemExit, match="needs a SLURM job with 2 nodes"):
        launch.plan(launch_args("--nodes", "2", "--", "sft"), {"SLURM_JOB_NUM_NODES": "1"}, 0, py)
    # ... and on each node: its rank from the allocation, the rendezvous from the environment.
    env = {"SLURM_PROCID": "1", "MASTER_ADDR": "gpu017", "MASTER_PORT": "24242"}
    p = launch.plan(launch_args("--node-task", "--nodes", "2", "--gpus-per-node", "8", "--", "sft"), env, 8, py)
    a = p.argv
    assert a[a.index("--num_machines") + 1] == "2" and a[a.index("--num_processes") + 1] == "16"
    assert a[a.index("--machine_rank") + 1] == "1" and a[a.index("--main_process_ip") + 1] == "gpu017"
    assert a[a.index("--main_process_port") + 1] == "24242"
    # CPU processes (tests): torchrun, DDP over gloo.
    p = launch.plan(launch_args("--node-task", "--nodes", "2", "--gpus-per-node", "1", "--", "sft"),
                    {**env, "COMPASS_LAUNCH_CPU_PROCS": "1"}, 0, py)
    assert p.argv[:3] == [py, "-m", "torch.distributed.run"] and "--node_rank=1" in p.argv and "--nnodes=2" in p.argv
    assert p.env["ACCELERATE_USE_CPU"] == "true"


def test_accelerate_and_deepspeed_configs():
    import json

    for z in (2, 3):
        acc = yaml.safe_load((REPO / f"config/accelerate/deepspeed_zero{z}.yaml").read_text())
        assert acc["distributed_type"] == "DEEPSPEED"
        assert acc["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
        ds_path = REPO / acc["deepspeed_config"]["deepspeed_config_file"]
        ds = json.loads(ds_path.read_text())
        assert ds["zero_optimization"]["stage"] == z
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
            assert ds[key] == "auto", key  # filled from the sft/dpo config sections
        assert ds["bf16"]["enabled"] == "auto"
    from compass import config

    cfg = config.load([REPO / "config" / "config.yaml"])
    assert (REPO / cfg["launch"]["accelerate_config"]).is_file()
    # The production teacher's tensor parallelism fits the GPUs its job asks for.
    prod = config.load([REPO / "config" / "phase2.yaml"])
    assert prod["teacher"]["tensor_parallel_size"] <= prod["resources"]["distill"]["gpus"]
    for sec in ("sft", "dpo"):
        g = prod["resources"][sec]["gpus"] * prod["resources"][sec]["nodes"]
        assert prod[sec]["global_batch_size"] % (prod[sec]["micro_batch_size"] * g) == 0, sec


@pytest.mark.slurm
@pytest.mark.e2e
def test_per_node_launchers_under_srun_train_one_model(cluster, tmp_path, phase1_llm):
    """The multi-node path on one machine: two srun tasks stand for two nodes, each runs
    `compass.launch --node-task` (rank from SLURM_PROCID, rendezvous from MASTER_ADDR/PORT) with one
    CPU process; together they train one model (world size 2) and one adapter is written."""
    from compass import config
    from compass.data.prompts import demo_rows
    from compass.io import write_jsonl
    from compass.trace_format import format_response, system_prompt

    cfg = config.load([REPO / "config" / "config.yaml"])
    rows, _ = demo_rows({**cfg["data"]["demo"], "n_train": 32, "n_test": 2}, seed=0)
    traces = tmp_path / "traces.jsonl"
    write_jsonl(traces, [{**r, "system": system_prompt(r["lang"]),
                          "response": format_response(r["problem"], r["solution"], r["answer"])} for r in rows])
    sets = ["sft.num_train_epochs=1", "sft.global_batch_size=8", "sft.micro_batch_size=4", "sft.save_steps=100"]
    cmd = ["srun", "--nodes=1", "--ntasks=2", "--cpus-per-task=1", "--mem=4000", "-t", "10", "--kill-on-bad-exit=1",
           sys.executable, "-m", "compass.launch", "--node-task", "--nodes", "2", "--gpus-per-node", "1", "--",
           "sft", "--config", str(REPO / "config/config.yaml"), *[a for s in sets for a in ("--set", s)],
           "--traces", str(traces), "--model", str(phase1_llm), "--out", str(tmp_path / "adapter"),
           "--checkpoints", str(tmp_path / "ckpt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900,
                          env=env(COMPASS_LAUNCH_CPU_PROCS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29611",
                                  PYTHONSAFEPATH="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("torch.distributed.run --nnodes=2 --nproc_per_node=1 --node_rank=") == 2
    log = json.loads((tmp_path / "adapter/training_log.json").read_text())
    assert log["world_size"] == 2
    assert log["global_step"] == 32 // 8  # the global batch is split over the two processes
    assert not list(tmp_path.glob(".adapter*")) and not (tmp_path / "ckpt").exists()


# --- Downloads: models and datasets named by Hub id are fetched by local rules, tokens from env. ---


def test_production_plan_on_a_machine_with_nothing_downloaded(tmp_path):
    """`snakemake -n final_vlm --configfile config/phase2.yaml`: the whole production plan, the
    downloads first as local rules (the Phase 1 VLM too: phase1.hf_id, put in place by assemble_phase1)."""
    e = env(HF_HOME=str(tmp_path / "nohome"), HF_TOKEN="hf_secret_token_value")
    proc = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n", "-p",
                           "final_vlm", "--configfile", str(REPO / "config/phase2.yaml")], capture_output=True, text=True, env=e)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:", 1)[1], re.M))
    for rule in ["fetch_model", "fetch_dataset", "prompts", "distill", "gather_traces", "extract_llm", "sft", "merge_sft",
                 "pairs", "dpo", "merge_dpo", "compose", "final_vlm", "assemble_phase1", "policy_samples"]:
        assert rule in jobs, rule
    assert int(jobs["distill"]) == yaml.safe_load((REPO / "config/phase2.yaml").read_text())["teacher"]["shards"]
    rules = workflow_rules(tmp_path, yaml.safe_load((REPO / "config/phase2.yaml").read_text()))
    wf = rules["fetch_model"].workflow
    assert {"fetch_model", "fetch_dataset"} <= set(wf._localrules), "downloads run on the submitting node"  # noqa: SLF001
    teacher = yaml.safe_load((REPO / "config/phase2.yaml").read_text())["teacher"]["model"]
    assert f"compass fetch --params '{{}}' --model {teacher}" in out
    assert f"cache/huggingface/fetched/models/{teacher.replace('/', '--')}.json" in out
    assert "hf_secret_token_value" not in out
    assert not (tmp_path / "cache").exists(), "a dry run downloads nothing"


def test_fetch_reads_the_cache_and_writes_a_marker_without_the_token(tmp_path):
    """`compass fetch --model` against a cache that already holds the snapshot (HF_HUB_OFFLINE=1: no
    network here): it resolves the commit and writes the marker; the token never reaches a file."""
    hub = tmp_path / "hf" / "hub" / "models--acme--tiny"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text(sha)
    snap = hub / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    e = env(HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), HF_HUB_OFFLINE="1",
            HF_TOKEN="hf_secret_token_value")
    marker = tmp_path / "fetched" / "acme--tiny.json"
    proc = subprocess.run([sys.executable, "-m", "compass", "fetch", "--params", "{}", "--model", "acme/tiny", "--out", str(marker)],
                          capture_output=True, text=True, env=e, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(marker.read_text())
    assert info["kind"] == "model" and info["id"] == "acme/tiny" and info["revision"] == sha and info["files"] == ["config.json"]
    assert "hf_secret_token_value" not in marker.read_text() + proc.stdout + proc.stderr
    # Not in the cache and offline: one line, no marker.
    proc = subprocess.run([sys.executable, "-m", "compass", "fetch", "--params", "{}", "--model", "acme/absent", "--out",
                           str(tmp_path / "absent.json")], capture_output=True, text=True, env=e, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("compass fetch: error: acme/absent: could not download the model")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "absent.json").exists()

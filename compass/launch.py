"""`python -m compass.launch`: run a `compass` training subcommand on what SLURM allocated.

The SFT and DPO rules call it as

    python -m compass.launch --nodes N --gpus-per-node G [--accelerate-config FILE] -- sft --params ...

with N and G from the rule's resources (config `resources.<rule>`), so GPU and node counts are
config, not code. What it starts:

* one process (`python -m compass sft ...`) when there is nothing to parallelise: G <= 1 on one
  node, or no GPU is visible (CPU run, e.g. the embedded default; a note says so when G > 1);
* one node, G GPUs: `accelerate launch --config_file FILE --num_processes G -m compass sft ...`,
  FILE being an Accelerate config that names a DeepSpeed ZeRO config (config/accelerate/,
  config/deepspeed/); TrainingArguments pick DeepSpeed up from the environment Accelerate sets;
* N > 1 nodes: from the batch step of the job (the rule runs there, see workflow/rules/cluster.smk),
  one launcher per node under `srun --nodes=N --ntasks-per-node=1`, optionally inside the rule's
  Apptainer image (`--container`); each runs `accelerate launch --num_machines N --machine_rank
  $SLURM_PROCID --main_process_ip <first node> --main_process_port <from the job id>`. The
  rendezvous comes from the allocation (`SLURM_JOB_NODELIST`, `SLURM_JOB_ID`), not from config.

On a machine without GPUs, COMPASS_LAUNCH_CPU_PROCS=K starts K CPU processes per node with
`torchrun` (gloo, no DeepSpeed): that is how the multi-process and multi-node paths are tested
without GPUs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ACCELERATE_CONFIG = "config/accelerate/deepspeed_zero2.yaml"


@dataclass
class Plan:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def visible_gpus() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in every image
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def port_for(env: dict) -> int:
    """A rendezvous port every node of one job agrees on, different between jobs."""
    job = env.get("SLURM_JOB_ID", "")
    return 20000 + int(job) % 20000 if job.isdigit() else 29500


def first_node(env: dict) -> str:
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise SystemExit("compass.launch: --nodes > 1 needs a SLURM allocation (SLURM_JOB_NODELIST is not set)")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def plan(args, env: dict, gpus_visible: int, python: str = sys.executable) -> Plan:
    """The command to run (pure apart from `first_node`): what `main` executes."""
    nodes, gpn, cmd = args.nodes, args.gpus_per_node, args.command
    if nodes < 1 or gpn < 0:
        raise SystemExit(f"compass.launch: bad topology --nodes {nodes} --gpus-per-node {gpn}")

    # N nodes, from the job's batch step: one launcher per node.
    if nodes > 1 and not args.node_task:
        if int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "0")) or 0) < nodes:
            raise SystemExit(
                f"compass.launch: --nodes {nodes} needs a SLURM job with {nodes} nodes "
                f"(this one has {env.get('SLURM_JOB_NUM_NODES', 'none')})"
            )
        srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
        if env.get("SLURM_CPUS_PER_TASK"):
            srun.append(f"--cpus-per-task={env['SLURM_CPUS_PER_TASK']}")
        inner_python = "python" if args.container else python
        inner = [inner_python, "-m", "compass.launch", "--node-task", "--nodes", str(nodes), "--gpus-per-node", str(gpn),
                 "--accelerate-config", args.accelerate_config, "--", *cmd]
        addr, port = first_node(env), args.port or port_for(env)
        return Plan([*srun, *shlex.split(args.container or ""), *inner], {"MASTER_ADDR": addr, "MASTER_PORT": str(port)})

    note = ""
    if gpus_visible:
        if gpus_visible < gpn:
            raise SystemExit(f"compass.launch: asked for {gpn} GPU(s) per node but {gpus_visible} are visible")
        procs, use_gpu = max(gpn, 1), True
    else:
        procs, use_gpu = int(env.get("COMPASS_LAUNCH_CPU_PROCS", "1")), False
        if gpn > 0:
            note = f"compass.launch: no GPU visible (asked for {gpn} per node): {procs} CPU process(es) per node"

    # One process: nothing to launch.
    if nodes == 1 and procs == 1:
        return Plan([python, "-m", "compass", *cmd], {}, note)

    world = nodes * procs
    if nodes > 1:
        rank = env.get("SLURM_PROCID", env.get("SLURM_NODEID", "0"))
        addr = env.get("MASTER_ADDR") or first_node(env)
        port = str(args.port or env.get("MASTER_PORT") or port_for(env))
    if use_gpu:
        argv = [python, "-m", "accelerate.commands.launch", "--config_file", args.accelerate_config,
                "--num_machines", str(nodes), "--num_processes", str(world)]
        if nodes > 1:
            argv += ["--machine_rank", rank, "--main_process_ip", addr, "--main_process_port", port]
        else:
            argv += ["--main_process_port", str(args.port or 0)]
        return Plan([*argv, "-m", "compass", *cmd], {}, note)
    # CPU processes (testing): torchrun, DDP over gloo.
    argv = [python, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc_per_node={procs}"]
    if nodes > 1:
        argv += [f"--node_rank={rank}", f"--master_addr={addr}", f"--master_port={port}"]
    else:
        argv += ["--standalone"]
    return Plan([*argv, "-m", "compass", *cmd], {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")}, note)


def with_deepspeed_config(argv: list[str], accelerate_config: str) -> list[str]:
    """Check the Accelerate config and pass the DeepSpeed config it names as an existing path: a
    relative path in it is taken from the working directory, else from the repository root (the
    directory above config/), so the same file works from the repository and from elsewhere."""
    import yaml

    path = Path(accelerate_config)
    if not path.is_file():
        raise SystemExit(f"compass.launch: accelerate config not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    ds = (cfg.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if not ds:
        return argv
    ds_path = Path(ds)
    if not ds_path.is_absolute() and not ds_path.is_file():
        ds_path = path.resolve().parent.parent.parent / ds
    if not ds_path.is_file():
        raise SystemExit(f"compass.launch: {path}: deepspeed_config_file not found: {ds}")
    i = argv.index("--config_file") + 2
    return [*argv[:i], "--deepspeed_config_file", str(ds_path), *argv[i:]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m compass.launch",
        description="Run a compass training subcommand on the GPUs/nodes of the SLURM allocation "
        "(accelerate launch + DeepSpeed; one launcher per node under srun for multi-node).",
    )
    p.add_argument("--nodes", type=int, default=1, help="nodes (config resources.<rule>.nodes)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (config resources.<rule>.gpus)")
    p.add_argument("--accelerate-config", default=os.environ.get("COMPASS_ACCELERATE_CONFIG", DEFAULT_ACCELERATE_CONFIG),
                   help=f"Accelerate config naming the DeepSpeed config (default: {DEFAULT_ACCELERATE_CONFIG})")
    p.add_argument("--container", default="", help="command prefix that runs a node's launcher in the image, "
                   "e.g. 'apptainer exec --nv containers/train.sif' (multi-node only)")
    p.add_argument("--port", type=int, default=0, help="rendezvous port (default: derived from SLURM_JOB_ID)")
    p.add_argument("--node-task", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the compass subcommand and its arguments")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        build_parser().error("give the compass subcommand after --, e.g. -- sft --params ...")
    env = dict(os.environ)
    gpus = visible_gpus() if not (args.nodes > 1 and not args.node_task) else 0
    p = plan(args, env, gpus)
    if "accelerate.commands.launch" in p.argv:
        p.argv = with_deepspeed_config(p.argv, args.accelerate_config)
    if p.note:
        print(p.note, file=sys.stderr, flush=True)
    print("compass.launch:", shlex.join(p.argv), file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    os.execvpe(p.argv[0], p.argv, {**env, **p.env})
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

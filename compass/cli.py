"""`compass`: one subcommand per pipeline stage, each usable without Snakemake.

Each stage module exposes `add_arguments(parser)` and `main(args, config)`; modules are imported
only when their subcommand runs, so `compass --help` stays fast.

Every subcommand reads the same config: `--config FILE` (repeatable; default: the embedded
config/config.yaml when run from the repository), `--set KEY=VALUE` for single keys, and
`--params JSON` (what the Snakemake rules pass: the config sections the stage reads).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from compass.io import CompassError, check_output_path

# name -> (module, one-line help). Order = pipeline order (what `compass --help` lists).
SUBCOMMANDS = {
    "fetch": ("compass.fetch", "download a model or dataset named by Hugging Face id into the cache (submitting node)"),
    "phase1-demo": ("compass.models.phase1_demo", "build the tiny demo Phase 1 VLM (random weights, local tokenizer)"),
    "assemble-phase1": ("compass.models.assemble_phase1", "put a Phase 1 VLM (Hub id, or vision tower + projector + LLM + tokenizer) into the LLaVA-OneVision layout"),
    "extract-llm": ("compass.models.extract_llm", "take the language model out of a Phase 1 VLM checkpoint"),
    "prompts": ("compass.data.prompts", "normalise the configured sources into one prompt file (+ held-out test sets)"),
    "distill": ("compass.teacher.distill", "write teacher traces in the XML format (reference | hf | vllm backend)"),
    "gather-traces": ("compass.teacher.gather_traces", "join the distillation shards into one traces file, with stats and a length plot"),
    "sft": ("compass.train.sft", "SFT with LoRA on the traces (TRL SFTTrainer + PEFT)"),
    "merge": ("compass.models.merge", "merge a LoRA adapter into its base LLM, with a logit parity check"),
    "policy-samples": ("compass.pairs.policy_samples", "sample the SFT model's own answers (for on-policy DPO pairs)"),
    "pairs": ("compass.pairs.build", "build DPO preference pairs from traces"),
    "dpo": ("compass.train.dpo", "DPO with LoRA on the pairs (TRL DPOTrainer + PEFT)"),
    "grpo": ("compass.train.grpo", "one GRPO stage with LoRA on the prompt pool, rewards by name (TRL GRPOTrainer + PEFT)"),
    "compose": ("compass.models.compose", "put the trained LLM back with the Phase 1 vision tower and projector"),
    "eval-data": ("compass.eval.eval_data", "normalise one evaluation task's data (local path or Hub id) into JSONL"),
    "evaluate": ("compass.eval.evaluate", "generate on an evaluation task and grade it"),
    "grade": ("compass.eval.grade", "grade model predictions against gold answers"),
    "compare": ("compass.eval.compare", "blind pairwise comparison of two models' answers -> ELO ratings"),
    "report": ("compass.report", "gather the evaluation and stage statistics into a report"),
}

DEFAULT_CONFIG = Path("config/config.yaml")

# What Snakemake sets to a rule's `threads` (and the BLAS/OpenMP libraries under torch read).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a SLURM job's cgroup, `taskset`), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fit_threads_to_cpus(environ, cpus: int) -> list[str]:
    """Cap the thread-count variables at `cpus`, in place; returns the ones changed.

    A rule's threads are its SLURM CPUs (config `resources`), which Snakemake exports as
    OMP_NUM_THREADS & co. When a job lands on fewer cores than it asked for (a node that
    oversubscribes its CPUs, a test cluster), more OpenMP threads than cores slow torch down by an
    order of magnitude, so the count is cut to the cores there are. Must run before torch is imported."""
    changed = []
    for name in THREAD_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > cpus:
            environ[name] = str(cpus)
            changed.append(f"{name}={value}")
    return changed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compass",
        description="compass: post-train a Phase 1 VLM into the Phase 2 reasoning VLM, one stage per subcommand. "
        "The whole pipeline runs with `snakemake --cores 2 final_vlm`; each stage also runs alone.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        g = p.add_argument_group("config")
        g.add_argument(
            "--config", action="append", default=None, metavar="FILE",
            help=f"config YAML (repeatable, later files win; default: {DEFAULT_CONFIG} if present and --params is not given, else the schema defaults)",
        )
        g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key, e.g. sft.learning_rate=1e-4")
        g.add_argument("--params", default=None, metavar="JSON", help="config sections as a JSON object (used by the Snakemake rules)")
        p.set_defaults(_module=module)
    return parser


# Arguments that name what a stage writes; every other path argument is read.
OUTPUT_ARGS = ("out", "stats", "plot", "test_dir", "checkpoints")


def _paths(value) -> list[Path]:
    """The existing paths an argument names (a value too long for a file name names none)."""
    out = []
    for v in value if isinstance(value, (list, tuple)) else [value]:
        try:
            if isinstance(v, (str, Path)) and v and Path(v).exists():
                out.append(Path(v))
        except OSError:
            pass
    return out


def check_paths(args) -> None:
    """Refuse outputs that would overwrite or delete an input, or each other, before any work: an
    output equal to an input, inside an input directory, or a directory holding an input. (The
    stats file a stage derives from --out counts as an output.)"""
    outs = {f"--{k.replace('_', '-')}": Path(getattr(args, k)) for k in OUTPUT_ARGS if getattr(args, k, None)}
    if "--out" in outs and hasattr(args, "stats") and not getattr(args, "stats", None):
        outs["--stats (default)"] = outs["--out"].with_suffix(".stats.json")
    ins = [(f"--{k.replace('_', '-')}", p) for k, v in vars(args).items()
           if k not in OUTPUT_ARGS + ("params", "set") and not k.startswith("_") for p in _paths(v)]
    real = lambda p: Path(os.path.realpath(p))  # noqa: E731
    for name, out in outs.items():
        o = real(out)
        for in_name, path in ins:
            i = real(path)
            # a directory written into (test_dir) may hold inputs; one replaced or cleared may not
            if o == i or i in o.parents or (o in i.parents and name != "--test-dir"):
                raise CompassError(f"{name} {out} would overwrite the input {in_name} {path}")
        for other, path in outs.items():
            if other != name and real(path) == o:
                raise CompassError(f"{name} and {other} are the same path: {out}")
        if name in ("--out", "--stats", "--plot"):
            check_output_path(out)


def error(command: str, message: str) -> int:
    """The one line a user error prints (a message of several lines is joined)."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"compass {command}: error: {line}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cpus = usable_cpus()
    capped = fit_threads_to_cpus(os.environ, cpus)
    if capped:
        print(f"compass: {', '.join(capped)} but this process can use {cpus} CPU(s): using {cpus} threads", file=sys.stderr)
    parser = build_parser()
    # Only the chosen subcommand's module is imported (to add its own arguments), so listing the
    # subcommands does not import torch.
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    if command is not None:
        sub_parser = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001
        importlib.import_module(SUBCOMMANDS[command][0]).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    try:
        check_paths(args)
        from compass import config as config_mod

        # --params carries everything a rule's stage reads, so the embedded default is not mixed in.
        use_default = args.config is None and args.params is None and DEFAULT_CONFIG.is_file()
        paths = args.config if args.config is not None else ([DEFAULT_CONFIG] if use_default else [])
        cfg = config_mod.load(paths, args.set, args.params)
        importlib.import_module(args._module).main(args, cfg)
    except CompassError as e:
        return error(args.command, str(e))
    except OSError as e:  # disk full, quota, permissions, a path that vanished: the file and the reason
        if os.environ.get("COMPASS_TRACEBACK"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        return error(args.command, f"{where}{e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)})")
    except KeyboardInterrupt:
        print(f"compass {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

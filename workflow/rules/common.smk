# Helpers every rule uses: output paths, the config sections a rule passes to its subcommand.
import os
import sys

from compass.config import section_json

RUN = f"results/{config['run']}"

PHASE1 = config["phase1"]["path"] or f"{RUN}/phase1/vlm"
if config["phase1"]["path"] and not os.path.isdir(PHASE1):
    sys.exit(f"compass: phase1.path: Phase 1 checkpoint directory not found: {PHASE1}")

# Models evaluated, by name (config eval.models) -> checkpoint directory.
MODEL_DIRS = {"phase1": PHASE1, "sft": f"{RUN}/sft/merged", "phase2": f"{RUN}/final_vlm"}


def sections(*keys):
    """Config sections a rule's subcommand reads, as JSON: passed as --params and compared by
    Snakemake's params rerun-trigger, so changing one key reruns exactly the stages that read it."""
    return section_json(config, *keys)


def log(name):
    return f"{RUN}/logs/{name}.log"


def bench(name):
    return f"{RUN}/benchmarks/{name}.tsv"


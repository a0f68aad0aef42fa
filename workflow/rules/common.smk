# Helpers every rule uses: output paths, the config sections a rule passes to its subcommand.
import os
import sys

from compass.config import section_json
from compass.io import damage

RUN = f"results/{config['run']}"

# The Phase 1 VLM: phase1.path in place; else built under results/ (phase1.smk): assembled from
# phase1.hf_id or phase1.parts, or the tiny demo. A Hub id is not looked for here: the fetch rules get it.
PHASE1 = config["phase1"]["path"] or f"{RUN}/phase1/vlm"
if config["phase1"]["path"] and not os.path.isdir(PHASE1):
    sys.exit(f"compass: phase1.path: Phase 1 checkpoint directory not found: {PHASE1} "
             "(a Hugging Face id goes in phase1.hf_id; a vision tower, projector and LLM in phase1.parts)")

# Models evaluated, by name (config eval.models) -> checkpoint directory.
MODEL_DIRS = {"phase1": PHASE1, "sft": f"{RUN}/sft/merged", "phase2": f"{RUN}/final_vlm"}

# The post-SFT stages (config train.recipe, docs/rl.md): each trains from the merged model of the stage
# before it (the first from the SFT model) and writes {RUN}/{stage}/adapter and merged; compose takes the last.
RECIPE = config["train"]["recipe"]
PHASE2_LLM = f"{RUN}/{RECIPE[-1]}/merged" if RECIPE else f"{RUN}/sft/merged"


# Training through the whole VLM (vision.train, docs/vision.md): SFT starts from the Phase 1 VLM itself and every
# merged model is a VLM. The vision section reaches the stages that read it only when it is in use (trained VLM
# or a configured tiling), so text-only runs keep their params (and their outputs) as they were.
VISION_TRAIN = config["vision"]["train"]
VISION_KEYS = ("vision",) if VISION_TRAIN or any(v is not None for v in config["vision"]["tiling"].values()) else ()
SFT_BASE = PHASE1 if VISION_TRAIN else f"{RUN}/phase1/llm"


def stage_start(stage):
    """The merged model `stage` trains from (a stage not in the recipe: the SFT model)."""
    i = RECIPE.index(stage) if stage in RECIPE else 0
    return f"{RUN}/{RECIPE[i - 1]}/merged" if i > 0 else f"{RUN}/sft/merged"


def sections(*keys):
    """Config sections a rule's subcommand reads, as JSON: passed as --params and compared by
    Snakemake's params rerun-trigger, so changing one key reruns exactly the stages that read it."""
    return section_json(config, *keys)


def log(name):
    return f"{RUN}/logs/{name}.log"


def bench(name):
    return f"{RUN}/benchmarks/{name}.tsv"



def check_directory_outputs(rules):
    """Stop at start-up, naming the file, when a directory output was damaged since it was written (a
    file deleted or cut short: compass-manifest.json), rather than plan "Nothing to be done" over it or
    let a later stage read it. Deleting the directory makes Snakemake rebuild it and what depends on it."""
    for rule in rules:
        for out in rule.output:
            if out.is_directory and not out.contains_wildcard():
                found = damage(out)
                if found != "whole":
                    sys.exit(f"compass: {found.removeprefix('damaged: ')}: a damaged output of rule {rule.name}; "
                             f"delete {out} and run again")

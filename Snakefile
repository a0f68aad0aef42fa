# compass — Phase 1 VLM -> Phase 2 reasoning VLM. This file is the table of contents:
# the config and its schema, one rules file per stage family, and the targets.
#
#   snakemake --cores 2 final_vlm        # the embedded default (CPU, no network): the Phase 2 VLM
#   snakemake --cores 2 all              # ... plus the evaluation and the report
#   snakemake --profile slurm final_vlm --configfile config/phase2.yaml   # on a cluster

from compass.config import validate_or_exit
from compass.snakemake_shims import apply as apply_snakemake_shims

configfile: "config/config.yaml"
validate_or_exit(config, workflow)
apply_snakemake_shims()  # two bugs of Snakemake and its SLURM plugin, until fixed upstream (compass/snakemake_shims.py)

include: "workflow/rules/common.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/phase1.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/dpo.smk"
include: "workflow/rules/grpo.smk"
include: "workflow/rules/compose.smk"
include: "workflow/rules/eval.smk"

localrules: all, final_vlm

if workflow.is_main_process:  # not again in each cluster job, while others may be replacing outputs
    check_directory_outputs(workflow.rules)  # a damaged directory output is named, never used (common.smk)


rule all:
    input:
        rules.report.output,


rule final_vlm:
    input:
        rules.compose.output,

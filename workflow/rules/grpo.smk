# GRPO stages of train.recipe (docs/rl.md): each one LoRA GRPO on the prompt pool from the previous stage's
# merged LLM (`compass grpo --stage NAME`: the shared grpo keys with grpo.stages.NAME over them), then merged.
# Rule names and outputs are the stage's: rule grpo_format -> results/{run}/grpo_format/adapter, rule
# merge_grpo_format -> results/{run}/grpo_format/merged.
import json

from compass.io import CompassError
from compass.train.grpo import stage_params, stage_section


def grpo_params(stage):
    """What the stage reads (--params): the shared grpo keys and its own overrides, so that changing another
    stage's overrides does not rerun it."""
    return json.dumps({"grpo": stage_params(config["grpo"], stage), "seed": config["seed"], "chat": config["chat"],
                       **{k: config[k] for k in VISION_KEYS}}, sort_keys=True, ensure_ascii=False)


for _stage in [s for s in RECIPE if s != "dpo"]:
    try:
        stage_section(config["grpo"], _stage)  # an undefined stage or a bad override stops the run at start-up
    except CompassError as e:
        sys.exit(f"compass: invalid config: train.recipe: {e}")

    rule:
        name: _stage
        input:
            prompts=rules.prompts.output.prompts,
            llm=stage_start(_stage),
        output:
            directory(f"{RUN}/{_stage}/adapter"),
        params:
            cfg=grpo_params(_stage),
            checkpoints=f"{RUN}/{_stage}/checkpoints",
            stage=_stage,
        log:
            log(_stage),
        benchmark:
            bench(_stage)
        threads: threads_for("grpo")
        resources: **resources_for("grpo")
        container: container_for("grpo", "rl")
        shell:
            launch("grpo", "train") + " grpo --params {params.cfg:q} --stage {params.stage} --prompts {input.prompts}"
            " --model {input.llm} --out {output} --checkpoints {params.checkpoints} > {log} 2>&1"

    rule:
        name: f"merge_{_stage}"
        input:
            base=stage_start(_stage),
            adapter=f"{RUN}/{_stage}/adapter",
        output:
            directory(f"{RUN}/{_stage}/merged"),
        params:
            cfg=sections("merge", "chat"),
        log:
            log(f"merge_{_stage}"),
        benchmark:
            bench(f"merge_{_stage}")
        threads: threads_for("merge_grpo")
        resources: **resources_for("merge_grpo")
        container: config["containers"]["train"]
        shell:
            "compass merge --params {params.cfg:q} --base {input.base} --adapter {input.adapter} --out {output} > {log} 2>&1"

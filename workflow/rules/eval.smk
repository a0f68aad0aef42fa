# Evaluation of every configured model on every configured task, ablations, the blind comparison
# ballots, and the report (docs/evaluation.md).
import json
import sys

from compass.config import job_settings
from compass.eval.tasks import TASKS

EVAL = config["eval"]
# Models evaluated, by name -> checkpoint directory: the pipeline's (eval.models) and any others (eval.checkpoints).
EVAL_MODEL_DIRS = {**{m: MODEL_DIRS[m] for m in EVAL["models"]}, **EVAL["checkpoints"]}
EVAL_MODELS = list(EVAL_MODEL_DIRS)
# Image tasks (charts, chartqa, mathvista): eval_image_data writes their rows and pictures (data/test/images/{task}/);
# every model is also evaluated on them with a blank image in place of each picture (variant blank_image), the
# grounding check of the report.
IMAGE_TASKS = [t for t in TASKS if TASKS[t].images]
DATA_TASKS = [t for t in TASKS if t != "demo" and t not in IMAGE_TASKS]
GROUNDING_TASKS = [t for t in EVAL["tasks"] if TASKS[t].images]
MATH_TASKS = [t for t in EVAL["tasks"] if TASKS[t].kind == "math"]
GEN_TASKS = [t for t in EVAL["tasks"] if TASKS[t].kind in ("math", "edinet")]
ABLATION = EVAL["ablation"]
ABLATION_MODELS = [m for m in ABLATION["models"] if m in EVAL_MODEL_DIRS]
COMPARE = EVAL["compare"]
COMPARE_TASK = COMPARE["task"] or (GEN_TASKS[0] if GEN_TASKS else None)
COMPARE_ON = len(COMPARE["models"]) >= 2
if COMPARE_ON:
    unknown = [m for m in COMPARE["models"] if m not in EVAL_MODEL_DIRS]
    if unknown or COMPARE_TASK not in GEN_TASKS:
        sys.exit(f"compass: invalid config: eval.compare: models must be evaluated models ({', '.join(EVAL_MODELS)}) "
                 f"and task a generated task in eval.tasks (got models {COMPARE['models']}, task {COMPARE_TASK})")

# The eval keys that change a model's outputs on a task: those the schema does not mark `x-plan`
# (passed as --params and compared by the params rerun-trigger): adding a task or a model does not
# rerun the evaluations already done.
EVAL_SETTINGS = job_settings("eval")


def eval_params():
    return json.dumps({"eval": {k: EVAL[k] for k in EVAL_SETTINGS}, "seed": config["seed"], "chat": config["chat"],
                       "vllm": config["vllm"]}, sort_keys=True)


def data_spec(task):
    if task == "charts":  # generated: the synthetic charts' held-out split
        return json.dumps({"data": {"charts": config["data"]["charts"]}, "seed": config["seed"]}, sort_keys=True)
    return json.dumps({"eval": {"data": {task: EVAL["data"][task]}}, "seed": config["seed"]}, sort_keys=True)


def task_images(w):
    """The pictures of an image task's rows (input of evaluate)."""
    return [f"{RUN}/data/test/images/{w.task}"] if TASKS[w.task].images else []


rule eval_data:
    input:
        lambda w: [EVAL["data"][w.task]["path"]] if EVAL["data"][w.task]["path"] else [],
        lambda w: fetched_task(w.task),  # a Hub dataset, downloaded by fetch_dataset (fetch.smk)
    output:
        f"{RUN}/data/test/{{task}}.jsonl",
    wildcard_constraints:
        task="|".join(DATA_TASKS),
    params:
        cfg=lambda w: data_spec(w.task),
    log:
        log("eval_data/{task}"),
    benchmark:
        bench("eval_data/{task}")
    threads: threads_for("eval_data")
    resources: **resources_for("eval_data")
    container: config["containers"]["eval"]
    shell:
        "compass eval-data --params {params.cfg:q} --task {wildcards.task} --out {output} > {log} 2>&1"


rule eval_image_data:  # `compass eval-data` of an image task: its rows and its pictures
    input:
        lambda w: [EVAL["data"][w.task]["path"]] if (EVAL["data"].get(w.task) or {}).get("path") else [],
        lambda w: fetched_task(w.task),
    output:
        data=f"{RUN}/data/test/{{task}}.jsonl",
        images=directory(f"{RUN}/data/test/images/{{task}}"),
    wildcard_constraints:
        task="|".join(IMAGE_TASKS),
    params:
        cfg=lambda w: data_spec(w.task),
    log:
        log("eval_data/{task}"),
    benchmark:
        bench("eval_data/{task}")
    threads: threads_for("eval_data")
    resources: **resources_for("eval_data")
    container: config["containers"]["eval"]
    shell:
        "compass eval-data --params {params.cfg:q} --task {wildcards.task} --out {output.data} > {log} 2>&1"


rule evaluate:
    input:
        model=lambda w: EVAL_MODEL_DIRS[w.model],
        data=f"{RUN}/data/test/{{task}}.jsonl",
        images=task_images,
    output:
        summary=f"{RUN}/eval/{{model}}/{{task}}.json",
        predictions=f"{RUN}/eval/{{model}}/{{task}}.predictions.jsonl",
    wildcard_constraints:
        model="|".join(EVAL_MODELS),
        task="|".join(TASKS),
    params:
        cfg=eval_params(),
    log:
        log("evaluate/{model}.{task}"),
    benchmark:
        bench("evaluate/{model}.{task}")
    threads: threads_for("evaluate")
    resources: **resources_for("evaluate")
    container: config["containers"]["eval"]
    shell:
        "compass evaluate --params {params.cfg:q} --model {input.model} --label {wildcards.model}"
        " --task {wildcards.task} --data {input.data} --out {output.summary} > {log} 2>&1"


rule evaluate_variant:
    input:
        model=lambda w: EVAL_MODEL_DIRS[w.model],
        data=f"{RUN}/data/test/{{task}}.jsonl",
        images=task_images,
    output:
        summary=f"{RUN}/eval/{{model}}/{{variant}}/{{task}}.json",
        predictions=f"{RUN}/eval/{{model}}/{{variant}}/{{task}}.predictions.jsonl",
    wildcard_constraints:
        model="|".join(EVAL_MODELS),
        task="|".join(t for t in TASKS if TASKS[t].kind == "math"),
        variant="step_by_step|blank_image",
    params:
        cfg=eval_params(),
    log:
        log("evaluate/{model}.{variant}.{task}"),
    benchmark:
        bench("evaluate/{model}.{variant}.{task}")
    threads: threads_for("evaluate_variant")
    resources: **resources_for("evaluate_variant")
    container: config["containers"]["eval"]
    shell:
        "compass evaluate --params {params.cfg:q} --model {input.model} --label {wildcards.model} --variant {wildcards.variant}"
        " --task {wildcards.task} --data {input.data} --out {output.summary} > {log} 2>&1"


rule compare_ballots:
    input:
        [f"{RUN}/eval/{m}/{COMPARE_TASK}.predictions.jsonl" for m in COMPARE["models"]] if COMPARE_ON else [],
    output:
        ballots=f"{RUN}/compare/ballots.jsonl",
        key=f"{RUN}/compare/key.json",
        page=f"{RUN}/compare/index.html",
    params:
        cfg=json.dumps({"eval": {"compare": {"n": COMPARE["n"]}}, "seed": config["seed"]}, sort_keys=True),
        labels=" ".join(COMPARE["models"]),
        outdir=f"{RUN}/compare",
    log:
        log("compare_ballots"),
    benchmark:
        bench("compare_ballots")
    threads: threads_for("compare_ballots")
    resources: **resources_for("compare_ballots")
    container: config["containers"]["eval"]
    shell:
        "compass compare --params {params.cfg:q} ballots --predictions {input} --labels {params.labels}"
        " --out {params.outdir} > {log} 2>&1"


# Training curves of the post-SFT stages (train.recipe): DPO's, and one figure per GRPO stage.
DPO_IN_RECIPE = "dpo" in RECIPE
GRPO_STAGES = [s for s in RECIPE if s != "dpo"]


def report_evals():
    evals = expand(f"{RUN}/eval/{{model}}/{{task}}.json", model=EVAL_MODELS, task=EVAL["tasks"])
    evals += expand(f"{RUN}/eval/{{model}}/{{variant}}/{{task}}.json", model=ABLATION_MODELS,
                    variant=ABLATION["prompt_variants"], task=MATH_TASKS)
    evals += expand(f"{RUN}/eval/{{model}}/blank_image/{{task}}.json", model=EVAL_MODELS, task=GROUNDING_TASKS)
    return evals


rule report:
    input:
        evals=report_evals(),
        traces_stats=f"{RUN}/traces/traces.stats.json",
        pairs_stats=f"{RUN}/dpo/pairs.stats.json" if DPO_IN_RECIPE else [],
        sft=rules.sft.output,
        dpo=rules.dpo.output if DPO_IN_RECIPE else [],
        grpo=[f"{RUN}/{s}/adapter" for s in GRPO_STAGES],
        ballots=rules.compare_ballots.output.key if COMPARE_ON else [],
        votes=COMPARE["votes"] if COMPARE_ON and COMPARE["votes"] else [],
        final_vlm=rules.compose.output if "phase2" in EVAL_MODEL_DIRS else [],  # its compose.json: what changed
    output:
        html=report(f"{RUN}/report/index.html", category="Report", labels={"page": "index.html"}),
        summary=f"{RUN}/report/summary.json",
        results=report(f"{RUN}/report/results.png", category="Evaluation", labels={"figure": "main metric per task and model"}),
        sft=report(f"{RUN}/report/sft_curves.png", category="Training", labels={"figure": "SFT curves"}),
        **({"dpo": report(f"{RUN}/report/dpo_curves.png", category="Training", labels={"figure": "DPO curves"})}
           if DPO_IN_RECIPE else {}),
        **{f"{s}_curves": report(f"{RUN}/report/{s}_curves.png", category="Training", labels={"figure": f"{s} curves"})
           for s in GRPO_STAGES},
        stats=report(f"{RUN}/report/stats.png", category="Data", labels={"figure": "distillation and pairs"}),
    params:
        cfg=sections("eval", "run", "seed"),
        outdir=f"{RUN}/report",
        compare=(f"--ballots {RUN}/compare" + (f" --votes {COMPARE['votes']}" if COMPARE["votes"] else "")) if COMPARE_ON else "",
    log:
        log("report"),
    benchmark:
        bench("report")
    threads: threads_for("report")
    resources: **resources_for("report")
    container: config["containers"]["eval"]
    shell:
        "compass report --params {params.cfg:q} --evals {input.evals} --traces-stats {input.traces_stats}"
        + (" --pairs-stats {input.pairs_stats}" if DPO_IN_RECIPE else "") + " --sft {input.sft}"
        + (" --dpo {input.dpo}" if DPO_IN_RECIPE else "") + (" --grpo {input.grpo}" if GRPO_STAGES else "")
        + (" --compose {input.final_vlm}/compose.json" if "phase2" in EVAL_MODEL_DIRS else "")
        + " --out {params.outdir} {params.compare} > {log} 2>&1"

# Evaluation of every configured model on every configured task, and the report.


rule evaluate:
    input:
        model=lambda w: MODEL_DIRS[w.model],
        data=f"{RUN}/data/test/{{task}}.jsonl",
    output:
        summary=f"{RUN}/eval/{{model}}/{{task}}.json",
        predictions=f"{RUN}/eval/{{model}}/{{task}}.predictions.jsonl",
    wildcard_constraints:
        model="|".join(MODEL_DIRS),
    params:
        cfg=sections("eval", "seed"),
    log:
        log("evaluate/{model}.{task}"),
    benchmark:
        bench("evaluate/{model}.{task}")
    threads: 2
    container: config["containers"]["eval"]
    shell:
        "compass evaluate --params {params.cfg:q} --model {input.model} --label {wildcards.model}"
        " --task {wildcards.task} --data {input.data} --out {output.summary} > {log} 2>&1"


rule report:
    input:
        evals=expand(f"{RUN}/eval/{{model}}/{{task}}.json", model=config["eval"]["models"], task=config["eval"]["tasks"]),
        traces_stats=rules.distill.output.stats,
        pairs_stats=rules.pairs.output.stats,
        sft=rules.sft.output,
        dpo=rules.dpo.output,
    output:
        html=f"{RUN}/report/index.html",
        summary=f"{RUN}/report/summary.json",
    params:
        cfg=sections("eval", "run"),
        outdir=f"{RUN}/report",
    log:
        log("report"),
    benchmark:
        bench("report")
    threads: 1
    container: config["containers"]["eval"]
    shell:
        "compass report --params {params.cfg:q} --evals {input.evals} --traces-stats {input.traces_stats}"
        " --pairs-stats {input.pairs_stats} --sft {input.sft} --dpo {input.dpo} --out {params.outdir} > {log} 2>&1"

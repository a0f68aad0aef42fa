# Teacher distillation: normalised prompts -> XML reasoning traces.


rule prompts:
    output:
        prompts=f"{RUN}/data/prompts.jsonl",
        stats=f"{RUN}/data/prompts.stats.json",
        demo_test=f"{RUN}/data/test/demo.jsonl",
    params:
        cfg=sections("data", "seed"),
        test_dir=f"{RUN}/data/test",
    log:
        log("prompts"),
    benchmark:
        bench("prompts")
    threads: 1
    container: config["containers"]["train"]
    shell:
        "compass prompts --params {params.cfg:q} --out {output.prompts} --test-dir {params.test_dir} > {log} 2>&1"


rule distill:
    input:
        rules.prompts.output.prompts,
    output:
        traces=f"{RUN}/traces/traces.jsonl",
        stats=f"{RUN}/traces/traces.stats.json",
    params:
        cfg=sections("teacher", "seed"),
    log:
        log("distill"),
    benchmark:
        bench("distill")
    threads: 2
    container: config["containers"]["teacher"]
    shell:
        "compass distill --params {params.cfg:q} --prompts {input} --out {output.traces} --stats {output.stats} > {log} 2>&1"

# Phase 1: the input VLM (built tiny when phase1.path is null) and its language model.

if not config["phase1"]["path"]:

    rule phase1_demo:
        output:
            directory(f"{RUN}/phase1/vlm"),
        params:
            cfg=sections("phase1", "seed"),
        log:
            log("phase1_demo"),
        benchmark:
            bench("phase1_demo")
        threads: threads_for("phase1_demo")
        resources: **resources_for("phase1_demo")
        container: config["containers"]["train"]
        shell:
            "compass phase1-demo --params {params.cfg:q} --out {output} > {log} 2>&1"


rule extract_llm:
    input:
        PHASE1,
    output:
        directory(f"{RUN}/phase1/llm"),
    log:
        log("extract_llm"),
    benchmark:
        bench("extract_llm")
    threads: threads_for("extract_llm")
    resources: **resources_for("extract_llm")
    container: config["containers"]["train"]
    shell:
        "compass extract-llm --params '{{}}' --phase1 {input} --out {output} > {log} 2>&1"

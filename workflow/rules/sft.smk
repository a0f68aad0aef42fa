# SFT: LoRA on the traces, then the adapter merged into the LLM.


rule sft:
    input:
        traces=rules.gather_traces.output.traces,
        llm=SFT_BASE,  # the extracted LLM, or the Phase 1 VLM itself (vision.train)
    output:
        directory(f"{RUN}/sft/adapter"),
    params:
        cfg=sections("sft", "seed", "chat", *VISION_KEYS),
        checkpoints=f"{RUN}/sft/checkpoints",
    log:
        log("sft"),
    benchmark:
        bench("sft")
    threads: threads_for("sft")
    resources: **resources_for("sft")
    container: container_for("sft", "train")
    shell:
        launch("sft", "train") + " sft --params {params.cfg:q} --traces {input.traces} --model {input.llm}"
        " --out {output} --checkpoints {params.checkpoints} > {log} 2>&1"


rule merge_sft:
    input:
        base=SFT_BASE,
        adapter=rules.sft.output,
    output:
        directory(f"{RUN}/sft/merged"),
    params:
        cfg=sections("merge", "chat"),
    log:
        log("merge_sft"),
    benchmark:
        bench("merge_sft")
    threads: threads_for("merge_sft")
    resources: **resources_for("merge_sft")
    container: config["containers"]["train"]
    shell:
        "compass merge --params {params.cfg:q} --base {input.base} --adapter {input.adapter} --out {output} > {log} 2>&1"

# SFT: LoRA on the traces, then the adapter merged into the LLM.


rule sft:
    input:
        traces=rules.gather_traces.output.traces,
        llm=rules.extract_llm.output,
    output:
        directory(f"{RUN}/sft/adapter"),
    params:
        cfg=sections("sft", "seed"),
        checkpoints=f"{RUN}/sft/checkpoints",
    log:
        log("sft"),
    benchmark:
        bench("sft")
    threads: 8
    container: config["containers"]["train"]
    shell:
        "compass sft --params {params.cfg:q} --traces {input.traces} --model {input.llm}"
        " --out {output} --checkpoints {params.checkpoints} > {log} 2>&1"


rule merge_sft:
    input:
        base=rules.extract_llm.output,
        adapter=rules.sft.output,
    output:
        directory(f"{RUN}/sft/merged"),
    params:
        cfg=sections("merge"),
    log:
        log("merge_sft"),
    benchmark:
        bench("merge_sft")
    threads: 2
    resources:
        mem_mb=65536,
    container: config["containers"]["train"]
    shell:
        "compass merge --params {params.cfg:q} --base {input.base} --adapter {input.adapter} --out {output} > {log} 2>&1"

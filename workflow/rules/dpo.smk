# DPO: preference pairs from the traces, LoRA DPO from the previous stage's merged LLM (train.recipe; the
# SFT model in the seed's [dpo]), then merged.


ON_POLICY = config["pairs"]["on_policy_ratio"] > 0


rule policy_samples:
    input:
        traces=rules.gather_traces.output.traces,
        model=stage_start("dpo"),
    output:
        f"{RUN}/dpo/policy_samples.jsonl",
    params:
        cfg=sections("pairs", "chat", "vllm"),
    log:
        log("policy_samples"),
    benchmark:
        bench("policy_samples")
    threads: threads_for("policy_samples")
    resources: **resources_for("policy_samples")
    container: config["containers"]["eval"]
    shell:
        "compass policy-samples --params {params.cfg:q} --model {input.model} --traces {input.traces} --out {output} > {log} 2>&1"


rule pairs:
    input:
        traces=rules.gather_traces.output.traces,
        samples=rules.policy_samples.output if ON_POLICY else [],
    output:
        pairs=f"{RUN}/dpo/pairs.jsonl",
        stats=f"{RUN}/dpo/pairs.stats.json",
    params:
        cfg=sections("pairs"),
    log:
        log("pairs"),
    benchmark:
        bench("pairs")
    threads: threads_for("pairs")
    resources: **resources_for("pairs")
    container: config["containers"]["train"]
    shell:
        "compass pairs --params {params.cfg:q} --traces {input.traces} --out {output.pairs} --stats {output.stats}"
        + (" --samples {input.samples}" if ON_POLICY else "")
        + " > {log} 2>&1"


rule dpo:
    input:
        pairs=rules.pairs.output.pairs,
        llm=stage_start("dpo"),
    output:
        directory(f"{RUN}/dpo/adapter"),
    params:
        cfg=sections("dpo", "seed", "chat", *VISION_KEYS),
        checkpoints=f"{RUN}/dpo/checkpoints",
    log:
        log("dpo"),
    benchmark:
        bench("dpo")
    threads: threads_for("dpo")
    resources: **resources_for("dpo")
    container: container_for("dpo", "train")
    shell:
        launch("dpo", "train") + " dpo --params {params.cfg:q} --pairs {input.pairs} --model {input.llm}"
        " --out {output} --checkpoints {params.checkpoints} > {log} 2>&1"


rule merge_dpo:
    input:
        base=stage_start("dpo"),
        adapter=rules.dpo.output,
    output:
        directory(f"{RUN}/dpo/merged"),
    params:
        cfg=sections("merge", "chat"),
    log:
        log("merge_dpo"),
    benchmark:
        bench("merge_dpo")
    threads: threads_for("merge_dpo")
    resources: **resources_for("merge_dpo")
    container: config["containers"]["train"]
    shell:
        "compass merge --params {params.cfg:q} --base {input.base} --adapter {input.adapter} --out {output} > {log} 2>&1"

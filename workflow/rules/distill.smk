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


SHARDS = config["teacher"]["shards"]


rule distill:
    input:
        rules.prompts.output.prompts,
    output:
        traces=f"{RUN}/traces/shards/{{shard}}-of-{SHARDS}.jsonl",
        stats=f"{RUN}/traces/shards/{{shard}}-of-{SHARDS}.stats.json",
    wildcard_constraints:
        shard=r"\d+",
    params:
        cfg=sections("teacher", "seed"),
    log:
        log("distill/{shard}"),
    benchmark:
        bench("distill/{shard}")
    threads: 2
    container: config["containers"]["teacher"]
    shell:
        "compass distill --params {params.cfg:q} --prompts {input} --shard {wildcards.shard} --num-shards %d"
        " --out {output.traces} --stats {output.stats} > {log} 2>&1" % SHARDS


rule gather_traces:
    input:
        expand(f"{RUN}/traces/shards/{{shard}}-of-{SHARDS}.jsonl", shard=range(SHARDS)),
    output:
        traces=f"{RUN}/traces/traces.jsonl",
        stats=f"{RUN}/traces/traces.stats.json",
        plot=f"{RUN}/traces/lengths.png",
    log:
        log("gather_traces"),
    benchmark:
        bench("gather_traces")
    threads: 1
    container: config["containers"]["train"]
    shell:
        "compass gather-traces --params '{{}}' --shards {input} --out {output.traces} --stats {output.stats}"
        " --plot {output.plot} > {log} 2>&1"

# Teacher distillation: normalised prompts -> XML reasoning traces.
from compass.data.prompts import is_image_source


# The held-out split of the synthetic demo problems is written by the prompts stage, and only when
# the demo source is configured.
DEMO_SOURCE = any(s["name"] == "demo" for s in config["data"]["sources"])
# Image sources (charts, chartqa, mathvista) write their pictures under data/images/{source}/, which the
# prompts' rows reference relatively (compass.images).
IMAGE_SOURCE = any(is_image_source(s["name"]) for s in config["data"]["sources"])


rule prompts:
    input:
        fetched_datasets(),  # Hub datasets of data.sources, downloaded by fetch_dataset (fetch.smk)
    output:
        prompts=f"{RUN}/data/prompts.jsonl",
        stats=f"{RUN}/data/prompts.stats.json",
        demo_test=[f"{RUN}/data/test/demo.jsonl"] if DEMO_SOURCE else [],
        **({"images": directory(f"{RUN}/data/images")} if IMAGE_SOURCE else {}),
    params:
        cfg=sections("data", "seed"),
        test_dir=f"{RUN}/data/test",
    log:
        log("prompts"),
    benchmark:
        bench("prompts")
    threads: threads_for("prompts")
    resources: **resources_for("prompts")
    container: config["containers"]["train"]
    shell:
        "compass prompts --params {params.cfg:q} --out {output.prompts} --test-dir {params.test_dir} > {log} 2>&1"


SHARDS = config["teacher"]["shards"]


rule distill:
    input:
        prompts=rules.prompts.output.prompts,
        images=[f"{RUN}/data/images"] if IMAGE_SOURCE else [],  # the pictures of image prompts
        teacher=fetched_models(),  # a teacher named by Hub id, downloaded by fetch_model (fetch.smk)
    output:
        traces=f"{RUN}/traces/shards/{{shard}}-of-{SHARDS}.jsonl",
        stats=f"{RUN}/traces/shards/{{shard}}-of-{SHARDS}.stats.json",
    wildcard_constraints:
        shard=r"\d+",
    params:
        cfg=sections("teacher", "seed", "vllm"),
    log:
        log("distill/{shard}"),
    benchmark:
        bench("distill/{shard}")
    threads: threads_for("distill")
    resources: **resources_for("distill")
    container: config["containers"]["teacher"]
    shell:
        "compass distill --params {params.cfg:q} --prompts {input.prompts} --shard {wildcards.shard} --num-shards %d"
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
    threads: threads_for("gather_traces")
    resources: **resources_for("gather_traces")
    container: config["containers"]["train"]
    shell:
        "compass gather-traces --params '{{}}' --shards {input} --out {output.traces} --stats {output.stats}"
        " --plot {output.plot} > {log} 2>&1"

# Phase 1: the input VLM and its language model. phase1.path is used in place; phase1.hf_id or
# phase1.parts is assembled into results/{run}/phase1/vlm; with none of them the tiny demo is built there.

PHASE1_PARTS = config["phase1"]["parts"] or {}


def phase1_sources():
    """What assemble_phase1 reads: the fetch markers of what is named by Hub id (fetch.smk), the local parts."""
    local = {k: PHASE1_PARTS[k] for k in ("vision_tower", "projector", "llm", "tokenizer")
             if PHASE1_PARTS.get(k) and (k == "projector" or not is_hub_id(PHASE1_PARTS[k]))}
    for key, path in local.items():
        if not os.path.exists(path):
            sys.exit(f"compass: phase1.parts.{key}: not found: {path}")
    return fetched_phase1() + sorted(set(local.values()))


if config["phase1"]["hf_id"] or PHASE1_PARTS:

    rule assemble_phase1:
        input:
            phase1_sources(),
        output:
            directory(f"{RUN}/phase1/vlm"),
        params:
            cfg=sections("phase1"),
        log:
            log("assemble_phase1"),
        benchmark:
            bench("assemble_phase1")
        threads: threads_for("assemble_phase1")
        resources: **resources_for("assemble_phase1")
        container: config["containers"]["train"]
        shell:
            "compass assemble-phase1 --params {params.cfg:q} --out {output} > {log} 2>&1"

elif not config["phase1"]["path"]:

    rule phase1_demo:
        output:
            directory(f"{RUN}/phase1/vlm"),
        params:
            cfg=sections("phase1", "seed", *VISION_KEYS),  # vision.tiling, when set
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

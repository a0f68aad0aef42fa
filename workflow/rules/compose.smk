# The final VLM: the last stage's merged LLM (train.recipe) put back with Phase 1's frozen vision tower and projector;
# with vision.train, the last stage's merged VLM checked against Phase 1 (compose.json names what changed).

COMPOSE_PARAMS = {"cfg": sections(*VISION_KEYS)} if VISION_KEYS else {}


rule compose:
    input:
        phase1=PHASE1,
        llm=PHASE2_LLM,
    output:
        directory(f"{RUN}/final_vlm"),
    params:
        **COMPOSE_PARAMS,
    log:
        log("compose"),
    benchmark:
        bench("compose")
    threads: threads_for("compose")
    resources: **resources_for("compose")
    container: config["containers"]["train"]
    shell:
        "compass compose --params " + ("{params.cfg:q}" if COMPOSE_PARAMS else "'{{}}'")
        + " --phase1 {input.phase1} --llm {input.llm} --out {output} > {log} 2>&1"

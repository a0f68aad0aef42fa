# The final VLM: the last stage's merged LLM (train.recipe) put back with Phase 1's frozen vision tower and projector.


rule compose:
    input:
        phase1=PHASE1,
        llm=PHASE2_LLM,
    output:
        directory(f"{RUN}/final_vlm"),
    log:
        log("compose"),
    benchmark:
        bench("compose")
    threads: threads_for("compose")
    resources: **resources_for("compose")
    container: config["containers"]["train"]
    shell:
        "compass compose --params '{{}}' --phase1 {input.phase1} --llm {input.llm} --out {output} > {log} 2>&1"

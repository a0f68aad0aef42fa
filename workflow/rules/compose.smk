# The final VLM: the DPO-merged LLM put back with Phase 1's frozen vision tower and projector.


rule compose:
    input:
        phase1=PHASE1,
        llm=rules.merge_dpo.output,
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

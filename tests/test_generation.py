"""Batched generation (shared by the hf teacher, on-policy sampling and evaluation)."""

from __future__ import annotations

import json

from compass import generation
from compass.cli import main
from compass.trace_format import prompt_messages


def test_batched_greedy_equals_one_by_one_and_keeps_order(phase1_llm):
    model, tok = generation.load(phase1_llm)
    convs = [prompt_messages(p) for p in ["Tom has 3 apples.", "A much longer problem about many many things and numbers 1 2 3 4.", "x"]]
    sampling = generation.Sampling(max_new_tokens=6)
    batched = generation.generate(model, tok, convs, sampling, batch_size=3)
    single = [generation.generate(model, tok, [c], sampling, batch_size=1)[0] for c in convs]
    assert batched == single
    assert all(len(o) == 1 for o in batched)


def test_vlm_checkpoint_generates_from_text(phase1_dir):
    model, tok = generation.load(phase1_dir)
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    out = generation.generate(model, tok, [prompt_messages("Tom has 3 apples.")], generation.Sampling(max_new_tokens=4))
    assert isinstance(out[0][0], str)


def test_sample_writes_n_samples_per_trace(phase1_llm, tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps({"id": f"t{i}", "problem": f"What is {i}+1?", "lang": "en"}) + "\n" for i in range(3)))
    out = tmp_path / "samples.jsonl"
    assert main(["sample", "--model", str(phase1_llm), "--traces", str(traces), "--out", str(out),
                 "--set", "pairs.on_policy_samples=2", "--set", "pairs.sampling.max_new_tokens=5"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t0", "t1", "t2"]
    assert all(len(r["samples"]) == 2 for r in rows)

"""The generation layer (compass/generation.py) shared by the teacher, on-policy sampling and
evaluation: hf and vLLM behind one interface, with the same prompts, stops and parsing."""

from __future__ import annotations

import json

import pytest

from compass import generation
from compass.cli import main
from compass.io import CompassError
from compass.trace_format import prompt_messages

CHAT = {"template_kwargs": {}, "stop_tokens": None}
PROBLEMS = ["Tom has 3 apples.", "A much longer problem about many many things and numbers 1 2 3 4.", "x"]


def test_batched_greedy_equals_one_by_one_and_keeps_order(phase1_llm):
    engine = generation.load("hf", phase1_llm, CHAT, batch_size=3)
    convs = [prompt_messages(p) for p in PROBLEMS]
    sampling = generation.Sampling(max_new_tokens=6)
    batched = engine.generate(convs, sampling)
    engine.batch_size = 1
    single = [engine.generate([c], sampling)[0] for c in convs]
    assert batched == single
    assert all(len(o) == 1 for o in batched)


def test_vlm_checkpoint_generates_from_text_and_image(phase1_dir):
    from PIL import Image

    engine = generation.load("hf", phase1_dir, CHAT)
    assert type(engine.model).__name__ == "LlavaOnevisionForConditionalGeneration"
    out = engine.generate([prompt_messages("Tom has 3 apples.")], generation.Sampling(max_new_tokens=4))
    assert isinstance(out[0][0].text, str)
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    out = engine.generate([conv], generation.Sampling(max_new_tokens=4), images=[[image]])
    assert isinstance(out[0][0].text, str)


def test_unknown_backend_and_images_for_a_text_model_are_refused(phase1_llm):
    with pytest.raises(CompassError, match="unknown generation backend 'tgi'"):
        generation.load("tgi", phase1_llm, CHAT)
    engine = generation.load("hf", phase1_llm, CHAT)
    with pytest.raises(CompassError, match="LLaVA-OneVision"):
        engine.generate([prompt_messages("x")], generation.Sampling(max_new_tokens=2), images=[[]])


def test_policy_samples_writes_n_samples_per_trace(phase1_llm, tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps({"id": f"t{i}", "problem": f"What is {i}+1?", "lang": "en"}) + "\n" for i in range(3)))
    out = tmp_path / "samples.jsonl"
    assert main(["policy-samples", "--model", str(phase1_llm), "--traces", str(traces), "--out", str(out),
                 "--set", "pairs.on_policy_samples=2", "--set", "pairs.sampling.max_new_tokens=5"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t0", "t1", "t2"]
    assert all(len(r["samples"]) == 2 for r in rows)
    assert all(r["chat_template_kwargs"] == {} for r in rows)


VLLM_CPU = {"enforce_eager": True, "kv_cache_memory_bytes": 64 << 20, "max_model_len": 1024}


def test_vllm_and_hf_give_the_same_greedy_completions(phase1_llm):
    """The real vLLM engine (its CPU build here) against transformers on the same checkpoint: same
    rendered prompts, stops and parsing, so greedy completions agree token for token."""
    sampling = generation.Sampling(max_new_tokens=12)
    convs = [prompt_messages(p) for p in PROBLEMS]
    hf = generation.load("hf", phase1_llm, CHAT).generate(convs, sampling)
    engine = generation.load("vllm", phase1_llm, CHAT, engine_kwargs=VLLM_CPU)
    assert engine.generate(convs, sampling) == hf
    assert any(c.text for cs in hf for c in cs)
    # Sampling (the teacher's and on-policy sampling's path): n completions per prompt.
    sampled = engine.generate(convs, generation.Sampling(max_new_tokens=6, temperature=1.0, top_p=0.9, n=2))
    assert [len(cs) for cs in sampled] == [2, 2, 2]

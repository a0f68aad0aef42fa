"""bench/bench_train.py at a tiny shape on the CPU, so that the GPU benchmark cannot rot: every run
completes through the stages' own config and trainer builders and reports its figures."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def test_bench_train_tiny_runs_every_configuration(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--tiny", "--out", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    runs = {r["name"]: r for r in report["runs"]}
    assert list(runs) == ["sft/trl-defaults", "sft/compass", "dpo/trl-defaults", "dpo/compass",
                          "dpo/compass-precomputed-ref"]
    for r in runs.values():
        assert r["real_tokens_per_s"] > 0 and r["peak_memory_gib"] > 0 and 0 < r["real_token_fraction"] <= 1
        assert r["mfu"] is None  # no GPU peak to divide by on a CPU
    assert runs["sft/compass"]["packing"] and runs["sft/compass"]["real_token_fraction"] == 1.0
    assert not runs["sft/trl-defaults"]["packing"] and runs["sft/trl-defaults"]["real_token_fraction"] < 1
    assert runs["dpo/compass-precomputed-ref"]["precompute_ref_log_probs"]
    for name in ("sft/compass", "dpo/compass"):  # the memory plan beside the measured peak
        assert 0.7 < runs[name]["plan_gib"] / runs[name]["peak_memory_gib"] < 1.3


def test_mfu_formula_counts_lora_training_flops():
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from compass.train.memory_plan import Shape

    s = Shape.from_config(bench.TINY)
    lm_head = s.vocab * s.hidden
    # No attention, every token in the loss: 4 FLOPs a frozen weight, 6 a LoRA weight.
    assert bench.flops_per_token(s, 8, 0.0, 1.0, reference=False) == 4 * s.matmul_params() + 6 * s.lora_params(8)
    assert bench.flops_per_token(s, 8, 0.0, 0.0, reference=False) == 4 * (s.matmul_params() - lm_head) + 6 * s.lora_params(8)
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0 and bench.peak_tflops("NVIDIA H200") == 989.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and bench.peak_tflops("cpu") is None

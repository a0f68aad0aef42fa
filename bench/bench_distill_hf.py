"""Throughput of the `hf` teacher backend: prompts/s and generated tokens/s.

Builds a model of the demo Phase 1's LLM shape (random weights; or `--shape FILE` for a real
architecture from ../shared/data/model_configs, e.g. on a lent GPU), then times batched generation
of the demo prompts through the same code path as `compass distill` with `teacher.backend: hf`.

    python bench/bench_distill_hf.py                 # tiny model on CPU
    python bench/bench_distill_hf.py --prompts 256 --batch-size 64 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--shape", type=Path, default=None, help="a LlamaConfig-shaped JSON (default: the demo's tiny LLM)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from compass import config as config_mod
    from compass import generation
    from compass.data import demo
    from compass.models import phase1_demo
    from compass.trace_format import prompt_messages

    cfg = config_mod.load([])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        vlm = Path(tmp) / "vlm"
        phase1_demo.build(vlm, cfg["phase1"]["demo"], seed=0)
        from compass.models.extract_llm import extract_llm

        extract_llm(vlm, Path(tmp) / "llm")
        model, tok = generation.load(Path(tmp) / "llm", device=device)
        if args.shape:
            shape = {k: v for k, v in json.loads(args.shape.read_text()).items() if not k.startswith("_")}
            shape["vocab_size"] = len(tok)
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            model = AutoModelForCausalLM.from_config(LlamaConfig(**shape), dtype=dtype).to(device).eval()
        train, _ = demo.generate(args.prompts, 1, seed=0)
        convs = [prompt_messages(r["problem"], r["lang"]) for r in train]
        sampling = generation.Sampling(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.8)
        generation.generate(model, tok, convs[: args.batch_size], sampling, args.batch_size, "warm-up")
        t0 = time.perf_counter()
        outs = generation.generate(model, tok, convs, sampling, args.batch_size, "bench")
        seconds = time.perf_counter() - t0
    new_tokens = sum(len(tok(o[0], add_special_tokens=False).input_ids) for o in outs)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "backend": "hf", "device": device, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "parameters": params, "prompts": args.prompts,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "seconds": round(seconds, 2),
        "prompts_per_s": round(args.prompts / seconds, 1), "generated_tokens_per_s": round(new_tokens / seconds, 1),
    }, indent=1))


if __name__ == "__main__":
    main()

"""`compass sample`: the SFT model's own answers to the trace prompts, for on-policy DPO pairs.

Writes `{"id", "samples": [...]}` per trace row: what `compass pairs --samples` reads. The pairs
stage grades them and uses a wrong one as the rejected side (compass/pairs/build.py).
"""

from __future__ import annotations

from pathlib import Path

from compass.io import read_jsonl, write_jsonl
from compass.trace_format import prompt_messages


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, type=Path, help="SFT-merged model directory")
    p.add_argument("--traces", required=True, type=Path, help="traces JSONL whose prompts are sampled")
    p.add_argument("--out", required=True, type=Path, help="samples JSONL")


def main(args, cfg) -> None:
    from compass import generation

    pcfg = cfg["pairs"]
    rows = read_jsonl(args.traces, required=("id", "problem"))
    model, tokenizer = generation.load(args.model)
    sampling = generation.Sampling(
        max_new_tokens=pcfg["sampling"]["max_new_tokens"], temperature=pcfg["sampling"]["temperature"],
        top_p=pcfg["sampling"]["top_p"], n=pcfg["on_policy_samples"], seed=pcfg["seed"],
    )
    conversations = [prompt_messages(r["problem"], r.get("lang")) for r in rows]
    outs = generation.generate(model, tokenizer, conversations, sampling, pcfg["sampling"]["batch_size"], "sample")
    write_jsonl(args.out, ({"id": r["id"], "samples": o} for r, o in zip(rows, outs)))
    print(f"{sum(map(len, outs))} samples for {len(rows)} prompts -> {args.out}")

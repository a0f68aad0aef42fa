"""`compass policy-samples` (rule policy_samples): the SFT model's own answers to the trace prompts, for on-policy DPO pairs.

Writes `{"id", "samples": [...]}` per trace row: what `compass pairs --samples` reads. The pairs
stage grades them and uses a wrong one as the rejected side (compass/pairs/build.py).
"""

from __future__ import annotations

from pathlib import Path

from compass.images import load_images
from compass.io import CompassError, read_jsonl, write_jsonl
from compass.trace_format import prompt_messages


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, type=Path, help="SFT-merged model directory")
    p.add_argument("--traces", required=True, type=Path, help="traces JSONL whose prompts are sampled")
    p.add_argument("--out", required=True, type=Path, help="samples JSONL")


def main(args, cfg) -> None:
    from compass import generation

    pcfg = cfg["pairs"]
    scfg = pcfg["sampling"]
    rows = read_jsonl(args.traces, required=("id", "problem"))
    engine = generation.load(scfg["backend"], args.model, cfg["chat"], batch_size=scfg["batch_size"], seed=pcfg["seed"],
                             engine_kwargs=cfg["vllm"]["engine_kwargs"])
    sampling = generation.Sampling(
        max_new_tokens=scfg["max_new_tokens"], temperature=scfg["temperature"], top_p=scfg["top_p"],
        n=pcfg["on_policy_samples"], seed=pcfg["seed"],
    )
    n_images = [len(r.get("images") or []) for r in rows]
    conversations = [prompt_messages(r["problem"], r.get("lang"), n) for r, n in zip(rows, n_images)]
    images = None
    if any(n_images):  # image traces (compass.images): the model sees each prompt's pictures, as in training
        if not engine.vlm:
            first = next(r["id"] for r, n in zip(rows, n_images) if n)
            raise CompassError(f"{args.model} is a language model, and traces such as {first} come with images "
                               "(sample the merged VLM of a vision.train run)")
        images = [load_images(r, args.traces.parent) for r in rows]
    outs = generation.texts(engine.generate(conversations, sampling, images=images, desc="policy samples",
                                            ids=[r["id"] for r in rows]))
    write_jsonl(args.out, ({"id": r["id"], "samples": o, "chat_template_kwargs": engine.template_kwargs}
                           for r, o in zip(rows, outs)))
    print(f"{sum(map(len, outs))} samples for {len(rows)} prompts ({scfg['backend']}) -> {args.out}")

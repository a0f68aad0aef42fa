"""`compass extract-llm` (rule extract_llm): take the language model out of a Phase 1 LLaVA-OneVision
checkpoint.

SFT and DPO train the LLM alone (the vision tower and projector stay frozen and untouched); this
writes it as a plain causal-LM checkpoint (`LlamaForCausalLM` for llm-jp-4) with the Phase 1
tokenizer and chat template, so TRL and PEFT see an ordinary language model. The tensor mapping
(compass/models/vlm.py) is the one compose and assemble-phase1 use to put an LLM back.
"""

from __future__ import annotations

from pathlib import Path

from compass.io import atomic_output
from compass.models.vlm import llm_from_vlm, load_vlm


def extract_llm(vlm_dir, out_dir) -> None:
    from transformers import AutoTokenizer

    llm = llm_from_vlm(load_vlm(vlm_dir))
    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    with atomic_output(out_dir, directory=True) as tmp:
        llm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    print(f"extracted {type(llm).__name__} ({sum(p.numel() for p in llm.parameters()) / 1e6:.1f}M parameters) -> {out_dir}")


def add_arguments(p) -> None:
    p.add_argument("--phase1", required=True, type=Path, help="Phase 1 VLM checkpoint directory")
    p.add_argument("--out", required=True, type=Path, help="output directory of the language model")


def main(args, cfg) -> None:
    extract_llm(args.phase1, args.out)

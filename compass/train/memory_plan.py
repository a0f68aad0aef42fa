"""Per-GPU memory of a LoRA SFT or DPO step, from the model config and the stage's settings.

    python -m compass.train.memory_plan                         # llm-jp-4-8b: SFT at 4096, DPO at 2048
    python -m compass.train.memory_plan --model-config CFG.json --stage sft --max-length 4096 --micro-batch 2

The peak of a training step is counted from what is alive when it happens (docs/training-performance.md):

- static: the base weights (bf16: 2 bytes a parameter, frozen), and the LoRA adapter in float32
  (PEFT up-casts it) with its gradient and two Adam moments: 16 bytes a LoRA parameter;
- the checkpointed layer inputs (non-reentrant activation checkpointing): L x tokens x hidden;
- then the larger of two moments of the backward pass: one layer recomputed (the tensors it saves for its
  backward, counted from LlamaDecoderLayer + PEFT's LoRA Linear, below) with its gradients in flight, or
  the LM head's loss (TRL's chunked log-prob kernel: a [4096 tokens x 32768 vocab] tile, the float32
  gradient of the last hidden state; on a CPU, its torch fallback keeps ~8 float32 tiles alive);
- the attention mask where SDPA takes one (packed or padded: tokens^2 bytes; FlashAttention takes none).

A DPO micro-batch is its chosen and rejected sequences together (2 x micro_batch x max_length tokens);
the reference forward runs with the adapter disabled and without gradients, before the policy's, so it
adds no weights and its activations are gone before the policy's peak. Device-side overheads outside
tensors (the CUDA context, the allocator's fragmentation) are a stated margin, not counted here.

`measure_peak` measures the same quantity on any device: the bytes of tensor storage alive at once.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

GiB = 2**30
# TRL 1.16's chunked log-prob kernel (trl/kernels/chunked_logprob.py): tokens and vocabulary columns a tile.
LOSS_TOKEN_TILE, LOSS_VOCAB_TILE = 4096, 32768
# Its torch fallback (no Triton, e.g. a CPU) holds about this many float32 tiles at once in the backward.
CPU_LOSS_TILES = 8
LLM_JP_4_8B = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "model_configs" / "llm-jp-4-8b.llama-shape.json"


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> "Shape":
        return cls(cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"],
                   cfg.get("num_key_value_heads") or cfg["num_attention_heads"], cfg["vocab_size"],
                   bool(cfg.get("tie_word_embeddings", False)))

    @property
    def kv(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def layer_linears(self) -> list[tuple[int, int]]:
        """(in, out) of q, k, v, o, gate, up, down: the linear layers `all-linear` LoRA adapts."""
        h, kv, f = self.hidden, self.kv, self.ffn
        return [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]

    def params(self) -> int:
        layer = sum(i * o for i, o in self.layer_linears()) + 2 * self.hidden
        embed = self.vocab * self.hidden
        return self.layers * layer + embed * (1 if self.tied else 2) + self.hidden

    def matmul_params(self) -> int:
        """Parameters a token multiplies by in a forward pass (embedding lookup excluded, lm_head included)."""
        return self.layers * sum(i * o for i, o in self.layer_linears()) + self.vocab * self.hidden

    def lora_params(self, r: int) -> int:
        return self.layers * sum(r * (i + o) for i, o in self.layer_linears())


def layer_saved_bytes(s: Shape, r: int, dropout: bool, act_bytes: int, masked_sdpa: bool) -> float:
    """Bytes a token keeps for the backward of one decoder layer (LlamaDecoderLayer with PEFT LoRA on its
    seven linears), counted from what each op saves:
    - the normed inputs of attention and MLP (h each), RoPE'd q (h), attention output and its contiguous copy
      for o_proj (2h), the residual sum (h); k and v as attention saves them (kv each; h each when SDPA
      takes a mask, as transformers then repeats them to every head);
    - gate, up, silu(gate) and their product (4 ffn); LoRA's A outputs (7 r);
    - LoRA's copy of each linear's input (6h + ffn): the dropout output (and its 1-byte mask) with dropout;
      in bf16 PEFT casts the input to the adapter's float32 and autocast casts it back, so a copy is saved
      even without dropout; in float32 without dropout the input itself is used (no copy);
    - in bf16, RMSNorm's float32 up-cast of its input (2 norms x 4h bytes)."""
    h, f = s.hidden, s.ffn
    kv = h if masked_sdpa else s.kv
    b = act_bytes * (6 * h + 2 * kv + 4 * f + 7 * r)
    lora_inputs = 6 * h + f
    if dropout or act_bytes < 4:
        b += act_bytes * lora_inputs
    if dropout:
        b += lora_inputs  # bool masks
    if act_bytes < 4:
        b += 2 * 4 * h
    return b


def plan(s: Shape, *, tokens: int, seq_len: int, sequences: int, r: int = 32, dropout: bool = True,
         bf16: bool = True, checkpointing: bool = True, attention: str = "flash", device: str = "cuda",
         stage: str = "sft") -> dict:
    """Peak bytes of one training step, by component. `tokens`: tokens in the micro-batch as the model sees
    it (padding included); `seq_len` and `sequences`: its padded rows (a packed, padding-free micro-batch
    is one row of `tokens`); `attention`: "flash" (no mask) or "sdpa" (a boolean mask it is given)."""
    ab = 2 if bf16 else 4
    masked = attention != "flash"
    weights = s.params() * ab
    lora = 16 * s.lora_params(r)
    per_layer = tokens * layer_saved_bytes(s, r, dropout, ab, masked)
    # In a layer's backward the gradients of its largest activations are in flight beside its saved tensors:
    # the MLP's (3 ffn) and the hidden state's (2h), at the activation precision.
    layer_grads = tokens * ab * (3 * s.ffn + 2 * s.hidden)
    if checkpointing:
        stored = s.layers * tokens * s.hidden * ab
        layer_phase = per_layer + layer_grads
    else:
        stored = s.layers * per_layer
        layer_phase = layer_grads
    tile_tokens = min(tokens, LOSS_TOKEN_TILE)
    loss_phase = tile_tokens * LOSS_VOCAB_TILE * ab + tokens * s.hidden * 4
    if device != "cuda":
        loss_phase += CPU_LOSS_TILES * tile_tokens * min(s.vocab, LOSS_VOCAB_TILE) * 4
    mask = sequences * seq_len * seq_len if masked else 0
    embeddings = 2 * tokens * s.hidden * ab  # the embedding output and the final norm's
    parts = {"weights": weights, "lora_and_adam": lora, "checkpointed_activations": stored,
             "layer_backward": layer_phase if layer_phase >= loss_phase else 0,
             "loss_backward": loss_phase if loss_phase > layer_phase else 0,
             "attention_mask": mask, "embeddings": embeddings}
    return {"stage": stage, "tokens_per_micro_batch": tokens, "parts": parts, "total": sum(parts.values())}


def stage_plan(s: Shape, stage: str, max_length: int, micro_batch: int, **kw) -> dict:
    """SFT packed (one padding-free row of micro_batch x max_length tokens) or DPO (chosen and rejected
    of each pair, padded to max_length at worst)."""
    if stage == "sft":
        tokens = micro_batch * max_length
        return plan(s, tokens=tokens, seq_len=tokens, sequences=1, stage=stage, **kw)
    rows = 2 * micro_batch
    return plan(s, tokens=rows * max_length, seq_len=max_length, sequences=rows, stage=stage, **kw)


def measure_peak(step, tensors=()) -> int:
    """Peak bytes of tensor storage alive while `step()` runs, counting `tensors` (weights made before) as
    alive throughout. On a GPU this is torch.cuda.max_memory_allocated's quantity; on a CPU, where torch keeps
    no such count, every storage an op creates is counted until it is freed (a TorchDispatchMode)."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveStorage(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.sizes, self.current, self.peak = {}, 0, 0

        def add(self, t):
            st = t.untyped_storage()
            if id(st) in self.sizes or t.device.type == "meta":
                return
            self.sizes[id(st)] = st.nbytes()
            self.current += st.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self.free, id(st))

        def free(self, key):
            self.current -= self.sizes.pop(key)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.add(t)
            return out

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    mode = LiveStorage()
    for t in tensors:
        mode.add(t)
    with mode:
        step()
    return mode.peak


def production_plans(model_config: dict, cfg: dict) -> list[dict]:
    """The SFT and DPO plans at a config's settings (config/phase2.yaml over the default)."""
    s = Shape.from_config(model_config)
    out = []
    for stage in ("sft", "dpo"):
        sec = cfg[stage]
        attention = "flash" if sec["attn_implementation"].startswith(("flash", "kernels")) else "sdpa"
        out.append(stage_plan(s, stage, sec["max_length"], sec["micro_batch_size"], r=sec["lora"]["r"],
                              dropout=sec["lora"]["dropout"] > 0, bf16=sec["bf16"],
                              checkpointing=sec["gradient_checkpointing"], attention=attention)
                   | {"attention": attention, "max_length": sec["max_length"], "micro_batch_size": sec["micro_batch_size"]})
    return out


def table(plans: list[dict]) -> str:
    names = list(plans[0]["parts"])
    head = "| | " + " | ".join(f"{p['stage'].upper()} {p['max_length']} x {p['micro_batch_size']} ({p['attention']})" for p in plans) + " |"
    lines = [head, "|---|" + "---:|" * len(plans)]
    for n in names:
        lines.append(f"| {n.replace('_', ' ')} | " + " | ".join(f"{p['parts'][n] / GiB:.2f}" for p in plans) + " |")
    lines.append("| **total (GiB)** | " + " | ".join(f"**{p['total'] / GiB:.2f}**" for p in plans) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from compass import config

    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-config", type=Path, default=LLM_JP_4_8B, help="a Llama-shape config.json")
    ap.add_argument("--config", type=Path, nargs="*", default=[repo / "config" / "config.yaml", repo / "config" / "phase2.yaml"],
                    help="compass configs merged in order (default: the production config)")
    ap.add_argument("--json", action="store_true", help="print the plans as JSON")
    args = ap.parse_args(argv)
    plans = production_plans(json.loads(args.model_config.read_text()), config.load(args.config))
    print(json.dumps(plans, indent=1) if args.json else table(plans))


if __name__ == "__main__":
    main()

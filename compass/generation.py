"""Batched chat generation with transformers: the `hf` teacher backend and evaluation share it.

Works for a causal LM checkpoint and for a LLaVA-OneVision VLM checkpoint (text-only prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from compass.models.checkpoint import is_vlm


@dataclass
class Sampling:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    seed: int = 42


def load(path, dtype="auto", device=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cls = AutoModelForImageTextToText if is_vlm(path) else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def chat_prompts(tokenizer, conversations: list[list[dict]], **template_kwargs) -> list[str]:
    return [
        tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **template_kwargs)
        for msgs in conversations
    ]


def generate(model, tokenizer, conversations: list[list[dict]], sampling: Sampling, batch_size: int = 16,
             desc: str = "generate", template_kwargs: dict | None = None) -> list[list[str]]:
    """`sampling.n` completions per conversation, in input order. Prompts are batched by length."""
    import torch
    from tqdm import tqdm

    texts = chat_prompts(tokenizer, conversations, **(template_kwargs or {}))
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out: list[list[str]] = [[] for _ in texts]
    torch.manual_seed(sampling.seed)
    greedy = sampling.temperature <= 0
    gen_kwargs = dict(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=not greedy,
        num_return_sequences=sampling.n,
        pad_token_id=tokenizer.pad_token_id,
    )
    if not greedy:
        gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    with tqdm(total=len(texts), desc=desc, unit="prompt") as bar, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            ids = model.generate(**enc, **gen_kwargs)
            new = ids[:, enc["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = decoded[j * sampling.n : (j + 1) * sampling.n]
            bar.update(len(idx))
    return out

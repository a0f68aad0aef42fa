"""The vLLM teacher backend: a thin adapter over vLLM's offline engine (production, GPU only).

Only the engine call lives here; prompts, parsing and filtering are shared with the `hf` backend
in compass.teacher.distill. vLLM is imported only when this backend is chosen.
"""

from __future__ import annotations


def generate(model: str, conversations, sampling, tensor_parallel_size: int, template_kwargs: dict) -> list[list[str]]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=sampling.seed)
    params = SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
        max_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    outputs = llm.chat(conversations, params, chat_template_kwargs=template_kwargs, use_tqdm=True)
    return [[c.text for c in o.outputs] for o in outputs]

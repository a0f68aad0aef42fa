"""The vLLM teacher backend: a thin adapter over vLLM's offline engine (production, GPU only).

Only the engine call lives here; prompts, parsing, filtering and resume are shared with the `hf`
backend in compass.teacher.distill. vLLM is imported only when this backend is chosen.
"""

from __future__ import annotations


class Engine:
    def __init__(self, model: str, tensor_parallel_size: int, seed: int):
        from vllm import LLM

        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed)

    def generate(self, conversations, sampling, template_kwargs: dict) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        outputs = self.llm.chat(conversations, params, chat_template_kwargs=template_kwargs, use_tqdm=True)
        return [[c.text for c in o.outputs] for o in outputs]

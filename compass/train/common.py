"""What SFT and DPO share: config section -> TRL/PEFT arguments, data loading, and saving.

Training itself is TRL's; this module only translates one config section into its arguments.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from compass.io import CompassError, atomic_output, check_output_path, publish


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(global_batch: int, micro_batch: int, n_devices: int, section: str) -> int:
    per_step = micro_batch * n_devices
    if global_batch % per_step:
        raise CompassError(
            f"{section}.global_batch_size={global_batch} is not a multiple of "
            f"{section}.micro_batch_size={micro_batch} x {n_devices} device(s)"
        )
    return global_batch // per_step


def use_bf16(sec: dict, section: str) -> bool:
    import torch

    if not sec["bf16"]:
        return False
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    warnings.warn(f"{section}.bf16 is set but no GPU with bf16 is available: training in float32")
    return False


# attn_implementation -> what transformers needs to run it (a Hub kernel `org/name` needs the `kernels` package).
_ATTENTION_NEEDS = {"flash_attention_2": "is_flash_attn_2_available", "flash_attention_3": "is_flash_attn_3_available",
                    "flash_attention_4": "is_flash_attn_4_available"}


def attn_implementation(sec: dict, section: str) -> str:
    """The section's attention implementation, or sdpa (with a warning) where it cannot run: FlashAttention
    needs a CUDA GPU and its package, a Hub kernel (`kernels-community/...`) the `kernels` package."""
    import torch
    import transformers.utils as tu

    want = sec["attn_implementation"]
    if want in ("sdpa", "eager"):
        return want
    check = _ATTENTION_NEEDS.get(want, "is_kernels_available")
    if torch.cuda.is_available() and getattr(tu, check)():
        return want
    warnings.warn(f"{section}.attn_implementation={want} needs a CUDA GPU and its package ({check} is false "
                  "here): using sdpa")
    return "sdpa"


def use_liger_kernel(sec: dict, section: str) -> bool:
    """Liger's Triton kernels (RMSNorm, SwiGLU, RoPE; TRL keeps its own chunked LM-head loss) need a GPU."""
    import torch
    from transformers.utils import is_liger_kernel_available

    if not sec["use_liger_kernel"]:
        return False
    if torch.cuda.is_available() and is_liger_kernel_available():
        return True
    warnings.warn(f"{section}.use_liger_kernel is set but needs a CUDA GPU and liger-kernel: not used")
    return False


def dataloader_workers(sec: dict, section: str) -> int:
    """Workers overlap batching with GPU compute; on a CPU they only take cores from the training itself."""
    import torch

    workers = sec["dataloader_num_workers"]
    if workers and not torch.cuda.is_available():
        warnings.warn(f"{section}.dataloader_num_workers={workers} without a GPU: batching in the main process")
        return 0
    return workers


# report_to -> transformers' check that the tracker's package is installed
_TRACKERS = {"tensorboard": "is_tensorboard_available", "wandb": "is_wandb_available", "mlflow": "is_mlflow_available"}


def report_to(sec: dict, section: str) -> list[str]:
    """The trackers the Trainer also logs to. Each takes its settings and credentials from its own environment
    variables; a missing package stops the stage before a model is loaded, and so does TensorBoard without
    TENSORBOARD_LOGGING_DIR (its default directory lies under the checkpoints, removed after training)."""
    import transformers.integrations

    want = sec["report_to"]
    trackers = [] if want == "none" else [want] if isinstance(want, str) else list(want)
    for name in trackers:
        if not getattr(transformers.integrations, _TRACKERS[name])():
            raise CompassError(f"{section}.report_to: {name} needs its Python package, which is not installed here")
    if "tensorboard" in trackers and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
        raise CompassError(f"{section}.report_to: tensorboard needs TENSORBOARD_LOGGING_DIR (its default directory, "
                           "under the checkpoints, is removed once the adapter is written)")
    return trackers


def training_kwargs(sec: dict, section: str, output_dir, seed: int) -> dict:
    """Keyword arguments shared by SFTConfig and DPOConfig (both are TrainingArguments). Every GPU-only
    setting falls back, with a warning, where it cannot run (bf16, Liger, dataloader workers)."""
    import torch

    workers = dataloader_workers(sec, section)
    return dict(
        output_dir=str(output_dir),
        learning_rate=sec["learning_rate"],
        num_train_epochs=sec["num_train_epochs"],
        per_device_train_batch_size=sec["micro_batch_size"],
        gradient_accumulation_steps=gradient_accumulation(
            sec["global_batch_size"], sec["micro_batch_size"], world_size(), section
        ),
        # transformers 5: a float in [0, 1) is a ratio of the total steps.
        warmup_steps=sec["warmup_ratio"],
        lr_scheduler_type=sec["lr_scheduler_type"],
        optim=sec["optim"],
        weight_decay=sec["weight_decay"],
        bf16=use_bf16(sec, section),
        # transformers 5 names it activation checkpointing; non-reentrant recomputation (TRL forces reentrant
        # itself under PEFT + ZeRO-3, which needs it).
        activation_checkpointing=sec["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False} if sec["gradient_checkpointing"] else None,
        use_liger_kernel=use_liger_kernel(sec, section),
        max_length=sec["max_length"],
        logging_steps=sec["logging_steps"],
        # num_input_tokens_seen counts every token the model processed, padding included; TRL's num_tokens
        # the real ones (RealTokens reads both).
        include_num_input_tokens_seen="all",
        save_strategy="steps",
        save_steps=sec["save_steps"],
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to=report_to(sec, section) or "none",
        disable_tqdm=False,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning is for host-to-GPU copies
    )


def lora_config(sec: dict):
    from peft import LoraConfig

    lora = sec["lora"]
    return LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"], task_type="CAUSAL_LM",
    )


def model_kwargs(sec: dict, section: str, bf16: bool) -> dict:
    """`from_pretrained` / `from_config` arguments: the weights in bf16 when training in bf16, and the
    attention implementation that can run here."""
    import torch

    return {"dtype": torch.bfloat16 if bf16 else torch.float32, "attn_implementation": attn_implementation(sec, section)}


def load_llm(path, model_kw: dict, chat_cfg: dict | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compass.models.checkpoint import is_vlm

    if is_vlm(path):
        raise CompassError(f"{path}: is a VLM checkpoint; training takes the language model (see `compass extract-llm`)")
    model = AutoModelForCausalLM.from_pretrained(path, **model_kw)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    from compass.chat import check_pinned

    check_pinned(tokenizer, chat_cfg or {})
    return model, tokenizer


def real_tokens_callback():
    """A TrainerCallback that records how many of the tokens the model processed were real, not padding:
    TRL's `num_tokens` over transformers' `num_input_tokens_seen` (this session's share, when resumed), as
    `real_token_fraction` in each log entry and the closing one (training_log.json), and in the stage log."""
    from transformers import TrainerCallback

    class RealTokens(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.real, self.processed = state.num_input_tokens_seen, 0, 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            processed = logs.get("num_input_tokens_seen", 0) - self.start
            if "num_tokens" in logs and processed > 0:
                self.real, self.processed = int(logs["num_tokens"]), processed
                state.log_history[-1]["real_token_fraction"] = round(self.real / processed, 4)

        def on_train_end(self, args, state, control, **kwargs):
            if not self.processed:
                return
            fraction = round(self.real / self.processed, 4)
            state.log_history[-1].update(real_tokens=self.real, processed_tokens=self.processed,
                                         real_token_fraction=fraction)
            if state.is_world_process_zero:
                print(f"real tokens: {self.real:,} of {self.processed:,} processed ({100 * fraction:.1f} %; "
                      "the rest is padding)")

    return RealTokens()


def real_token_fraction(log_history: list[dict]) -> float | None:
    """The whole run's share of real tokens, from a Trainer's log history (training_log.json)."""
    return next((e["real_token_fraction"] for e in reversed(log_history) if "real_token_fraction" in e), None)


def require_rows(rows: list, path) -> None:
    """Training data must hold rows: an empty file stops the stage before a model is loaded."""
    if not rows:
        raise CompassError(f"{path}: no rows to train on (an empty file)")


def load_inputs(data_path, fields, model_path, sec: dict, section: str, bf16: bool, chat_cfg: dict):
    """(rows, model, tokenizer, chat-template arguments) of a stage: its data file's rows (an empty file
    stops it before the model is loaded), its model and tokenizer, and the pinned template arguments."""
    from compass import chat
    from compass.io import read_jsonl

    rows = read_jsonl(data_path, required=fields)
    require_rows(rows, data_path)
    model, tokenizer = load_llm(model_path, model_kwargs(sec, section, bf16), chat_cfg)
    return rows, model, tokenizer, chat.template_kwargs(chat_cfg)


def trains_vlm(model_path, vision_cfg: dict | None) -> bool:
    """Whether a stage trains the whole VLM: the model is a VLM checkpoint and `vision.train` is on. Either one
    alone is the wrong model (e.g. the Phase 1 VLM where its extracted language model was meant), refused
    with the key to set."""
    from compass.models.checkpoint import is_vlm

    vlm, wanted = is_vlm(model_path), bool((vision_cfg or {}).get("train"))
    if vlm and not wanted:
        raise CompassError(f"{model_path}: is a VLM checkpoint; training takes the language model (see "
                           "`compass extract-llm`), or set vision.train: true to train the whole VLM")
    if wanted and not vlm:
        raise CompassError(f"{model_path}: is a language model, but vision.train is true (the stage trains the whole "
                           "VLM: give it the Phase 1 VLM or the previous stage's merged VLM)")
    return vlm


def with_vision(sec: dict, model_path, vision_cfg: dict | None) -> dict:
    """The section a stage's checkpoints are fingerprinted by: with the vision settings when it trains a VLM."""
    from compass.models.checkpoint import is_vlm

    return {**sec, "vision": vision_cfg or {}} if is_vlm(model_path) else sec


def train_stage(trainer, tokenizer, record: dict, sec: dict, seed: int, chat_cfg: dict, inputs, checkpoints_dir, out_dir) -> None:
    """`train_and_save` of a stage's trainer, its checkpoints fingerprinted by the section (but report_to:
    where metrics also go changes nothing trained), the chat settings, the seed and the `inputs` (data
    file, model)."""
    trainer.model.print_trainable_parameters()
    trained_by = {k: v for k, v in sec.items() if k != "report_to"}
    train_and_save(trainer, tokenizer, checkpoints_dir, out_dir,
                   fingerprint=run_fingerprint({**trained_by, "chat": chat_cfg}, seed, *inputs), record=record)


RUN_FILE = "compass-run.json"


def run_fingerprint(sec: dict, seed: int, *inputs) -> dict:
    """What a run trains from: its config section, the seed, each input file's size and mtime (every
    file under an input directory), the number of processes (it sets the batch each one sees) and the
    versions of the libraries that write the checkpoints. Checkpoints are resumed only by the same run."""
    from importlib.metadata import version

    files = []
    for root in map(Path, inputs):
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in paths:
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
    return {"section": sec, "seed": seed, "inputs": files, "world_size": world_size(),
            "versions": {pkg: version(pkg) for pkg in ("torch", "transformers", "trl", "peft")}}


def _complete(checkpoint) -> bool:
    """trainer_state.json is the last file the Trainer writes into a checkpoint."""
    try:
        json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def last_checkpoint(output_dir) -> str | None:
    """The newest complete checkpoint-N in output_dir (`get_last_checkpoint`), to resume a preempted
    or interrupted run; one cut short by a kill while it was being written is passed over."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(output_dir).is_dir():
        return None
    last = get_last_checkpoint(str(output_dir))
    if last is None or _complete(last):
        return last
    steps = sorted((p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in steps:
        if _complete(p):
            print(f"passing over incomplete checkpoint {last}")
            return str(p)
    return None


def prepare_checkpoints(checkpoints_dir, fingerprint: dict | None) -> None:
    """Keep the checkpoints only if this same run wrote them (RUN_FILE = `fingerprint`): those of
    another run (changed config or inputs) are removed, so a rerun never resumes them."""
    import shutil

    if fingerprint is None:
        return
    ckpt = Path(checkpoints_dir)
    run_file = ckpt / RUN_FILE
    try:
        same = json.loads(run_file.read_text()) == json.loads(json.dumps(fingerprint))
    except (OSError, ValueError):
        same = False
    if same:
        return
    if any(ckpt.glob("checkpoint-*")):
        print(f"{ckpt}: checkpoints of another run (config or inputs changed): starting afresh")
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(fingerprint, indent=1) + "\n")


def train_and_save(trainer, tokenizer, checkpoints_dir, out_dir, fingerprint: dict | None = None,
                   record: dict | None = None) -> None:
    """Train (resuming from the last checkpoint of the same run if there is one) and write the
    adapter atomically; the checkpoints are removed once the adapter is written.

    Under a multi-process launch (`python -m compass.launch`: accelerate + DeepSpeed, or torchrun)
    every rank trains and the main process alone writes the adapter (gathered collectively first
    when DeepSpeed partitions it)."""
    import shutil

    from compass.models.checkpoint import base_record

    main = trainer.is_world_process_zero()
    # the model the adapter is trained on, so that `compass merge` refuses any other base
    peft_config = next(iter(getattr(trainer.model, "peft_config", {}).values()), None)
    if peft_config is not None and peft_config.base_model_name_or_path:
        record = {**(record or {}), "base_model": base_record(peft_config.base_model_name_or_path)}
    if main:
        prepare_checkpoints(checkpoints_dir, fingerprint)
    trainer.accelerator.wait_for_everyone()
    resume = last_checkpoint(checkpoints_dir)
    if resume:
        print(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    if trainer.args.world_size > 1 or trainer.is_deepspeed_enabled:
        _save_distributed(trainer, tokenizer, out_dir, resume, record)
    else:
        with atomic_output(out_dir, directory=True) as tmp:
            trainer.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            log = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step,
                   "resumed_from": resume, **(record or {})}
            (Path(tmp) / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    if main:
        shutil.rmtree(checkpoints_dir, ignore_errors=True)


def _save_distributed(trainer, tokenizer, out_dir, resume=None, record: dict | None = None) -> None:
    """`train_and_save`'s write for several processes: one temporary sibling every rank agrees on,
    renamed into place by the main process."""
    import shutil

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    main = trainer.is_world_process_zero()
    if main:
        check_output_path(out_dir, directory=True)
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_deepspeed_enabled:
        trainer.save_model(str(tmp))  # collective: gathers ZeRO-3 shards, writes on the main process
    elif main:
        trainer.model.save_pretrained(tmp)
    if main:
        tokenizer.save_pretrained(tmp)
        log = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step,
               "resumed_from": resume, "world_size": trainer.args.world_size, **(record or {})}
        (tmp / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
        publish(tmp, out_dir, directory=True)
    trainer.accelerator.wait_for_everyone()

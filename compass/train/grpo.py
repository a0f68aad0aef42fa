"""`compass grpo`: one GRPO stage with LoRA -- TRL's GRPOTrainer over a PEFT adapter, rewarded by
`compass.train.rewards`.

The policy is the previous stage's merged LLM plus a fresh adapter. With a KL term (`beta` > 0) the
reference is the same model with the adapter disabled (TRL does this for a PEFT model), so no second
copy of the weights is held. The ratio is clipped to [1 - epsilon, 1 + epsilon_high]; the clip only acts
when a generation batch is used for more than one optimizer step (`num_iterations` > 1, or
`steps_per_generation` above the gradient accumulation), and its fractions are logged
(`clip_ratio/low_mean`, `clip_ratio/high_mean`).

Data: the prompt pool (results/{run}/data/prompts.jsonl: normalised, decontaminated, with gold answers),
not the traces; a seeded sample of `data.limit` prompts, those whose rendered prompt leaves
`max_completion_length` tokens within `max_length`, and optionally (`data.pass_rate.samples` > 0) only
the prompts the current model solves in a share of its samples between `data.pass_rate.min` and `.max`
(Skywork-R1V's selection of what the model does not always solve).

A stage is the shared `grpo` section with the overrides of `grpo.stages.<stage>` merged over it
(`stage_section`); CLGRPO's stages (format only, format + accuracy, ClipLow) are named presets there.
Generation is TRL's own: transformers (`generation.backend: hf`, CPU or GPU) or vLLM (`vllm`, colocated
with the trainer or a `trl vllm-serve` server), stopping at the chat template's end-of-turn tokens.
Rewards, KL, clip fractions and completion lengths are in training_log.json (the adapter's).
"""

from __future__ import annotations

import gc
import random
from pathlib import Path

from compass import chat
from compass.io import CompassError
from compass.train import common, rewards

PROMPT_FIELDS = ("id", "problem", "answer")


def stage_section(grpo_sec: dict, stage: str | None) -> dict:
    """The settings a stage trains with: the shared `grpo` keys, the stage's overrides (`grpo.stages.<stage>`)
    merged over them, validated by the schema (defaults filled). `stage` None: the shared keys alone."""
    from compass import config

    shared = {k: v for k, v in grpo_sec.items() if k != "stages"}
    if stage is None:
        return shared
    stages = grpo_sec.get("stages") or {}
    if stage not in stages:
        raise CompassError(f"grpo.stages: no stage {stage!r} (defined: {', '.join(sorted(stages)) or 'none'})")
    merged = config.deep_merge(shared, stages[stage])
    try:
        checked = config.validate({"grpo": {**merged, "stages": {}}})["grpo"]
    except CompassError as e:
        raise CompassError(f"grpo.stages.{stage}: {str(e).split(': ', 1)[-1]}") from None
    return {k: v for k, v in checked.items() if k != "stages"}


def stage_params(grpo_sec: dict, stage: str) -> dict:
    """What one stage reads of the `grpo` section: the shared keys and its own overrides only (a rule's
    --params, so that changing another stage's overrides reruns only that stage and what follows it)."""
    return {**{k: v for k, v in grpo_sec.items() if k != "stages"}, "stages": {stage: grpo_sec["stages"][stage]}}


# --- data -----------------------------------------------------------------------------------------


def to_example(row: dict) -> dict:
    """A prompt row as TRL's conversational prompt example; `answer` travels to the rewards as a column."""
    from compass.trace_format import prompt_messages

    return {"prompt": prompt_messages(row["problem"], row.get("lang")), "answer": row["answer"], "id": row["id"]}


def sample_rows(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """A seeded sample of `limit` rows (in their file order), or all of them."""
    if limit is None or limit >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]


def fits(rows: list[dict], tokenizer, chat_cfg: dict, max_prompt_tokens: int) -> list[dict]:
    """The rows whose rendered prompt is at most `max_prompt_tokens` tokens."""
    out = []
    for r in rows:
        text = chat.render(tokenizer, to_example(r)["prompt"], chat_cfg)
        if len(tokenizer(text, add_special_tokens=False).input_ids) <= max_prompt_tokens:
            out.append(r)
    return out


def pass_rates(rows: list[dict], model_path, chat_cfg: dict, sec: dict, seed: int) -> list[float]:
    """Each prompt's share of `data.pass_rate.samples` completions of the model at `model_path` that the answer
    layer grades correct (sampled as the stage samples: its temperature, top_p and completion length; with its
    images, for rows `compass.train.vlm.prepare` gave `image_paths`)."""
    from compass import generation
    from compass.answers import is_correct
    from compass.trace_format import prompt_messages

    band = sec["data"]["pass_rate"]
    backend = "vllm" if sec["generation"]["backend"] == "vllm" else "hf"
    engine = generation.load(backend, model_path, chat_cfg, batch_size=band["batch_size"], seed=seed)
    sampling = generation.Sampling(max_new_tokens=sec["max_completion_length"], temperature=sec["temperature"],
                                   top_p=sec["top_p"], n=band["samples"], seed=seed)
    if engine.vlm:
        from PIL import Image

        images = [[Image.open(p).convert("RGB") for p in r.get("image_paths", [])] for r in rows]
        convs = [prompt_messages(r["problem"], r.get("lang"), n_images=len(ims)) for r, ims in zip(rows, images)]
        outs = generation.texts(engine.generate(convs, sampling, images=images, desc="pass rate"))
    else:
        outs = generation.texts(engine.generate([prompt_messages(r["problem"], r.get("lang")) for r in rows], sampling,
                                                desc="pass rate"))
    del engine  # its memory (a GPU's, for vLLM) goes back before the trainer loads the model
    gc.collect()
    return [sum(is_correct(o, r["answer"]) for o in outs_r) / len(outs_r) for r, outs_r in zip(rows, outs)]


def in_band(rows: list[dict], rates: list[float], low: float, high: float) -> list[dict]:
    return [r for r, p in zip(rows, rates) if low <= p <= high]


# --- trainer --------------------------------------------------------------------------------------


def reward_functions(sec: dict, parser) -> tuple[list, list[float]]:
    """The stage's rewards (bound to their settings and the output parser) and their weights, in config order.
    A weight of 0 keeps a reward logged (rewards/{name}/mean) without training on it."""
    settings = sec["reward_settings"]
    per_name = {
        "format": settings["format"],
        "length": {**settings["length"], "max_tokens": sec["max_completion_length"]},
        "repetition": settings["repetition"],
    }
    names = list(sec["rewards"])
    if not names:
        raise CompassError("grpo.rewards: no reward (name: weight) for this stage")
    unknown = [n for n in names if n not in rewards.REWARDS]
    if unknown:
        raise CompassError(f"grpo.rewards: unknown reward(s) {', '.join(unknown)} (known: {', '.join(rewards.REWARDS)})")
    if not any(sec["rewards"][n] for n in names):
        raise CompassError(f"grpo.rewards: every weight is 0 ({sec['rewards']}): nothing to train on")
    return [rewards.bind(n, parser=parser, **per_name.get(n, {})) for n in names], [float(sec["rewards"][n]) for n in names]


def config(sec: dict, seed: int, output_dir, chat_cfg: dict | None = None, reward_weights=None, stop_ids=None, **overrides):
    """The stage's GRPOConfig (`overrides` for a test's step counts). `global_batch_size` counts completions
    (`num_generations` per prompt) per optimizer step."""
    from trl import GRPOConfig

    kwargs = common.training_kwargs(sec, "grpo", output_dir, seed)
    kwargs.pop("max_length")  # GRPO bounds the completion (max_completion_length); max_length selects prompts
    kwargs["include_num_input_tokens_seen"] = "no"  # GRPO counts its own tokens (num_tokens) from the rollouts
    gen = sec["generation"]
    vllm = gen["backend"] == "vllm"
    extra = dict(use_vllm=True, vllm_mode=gen["vllm_mode"], vllm_gpu_memory_utilization=gen["vllm_gpu_memory_utilization"],
                 vllm_tensor_parallel_size=gen["vllm_tensor_parallel_size"], vllm_server_host=gen["vllm_server_host"],
                 vllm_server_port=gen["vllm_server_port"], vllm_max_model_length=sec["max_length"],
                 generation_kwargs={"stop_token_ids": list(stop_ids)} if stop_ids else None) if vllm else {}
    try:
        return GRPOConfig(
            **{**kwargs, **overrides}, max_steps=sec["max_steps"] or -1,
            num_generations=sec["num_generations"], max_completion_length=sec["max_completion_length"],
            temperature=sec["temperature"], top_p=sec["top_p"], beta=sec["beta"], epsilon=sec["epsilon"],
            epsilon_high=sec["epsilon_high"], loss_type=sec["loss_type"], scale_rewards=sec["scale_rewards"],
            num_iterations=sec["num_iterations"], steps_per_generation=sec["steps_per_generation"],
            mask_truncated_completions=sec["mask_truncated_completions"], reward_weights=reward_weights,
            chat_template_kwargs=chat.template_kwargs(chat_cfg or {}) or None, disable_dropout=True, **extra,
        )
    except ValueError as e:  # TRL's own checks: batch sizes against num_generations, ...
        raise CompassError(f"grpo: {e}") from None


def trainer(args, model, tokenizer, dataset, sec: dict, reward_funcs, peft_config=None):
    """TRL's GRPOTrainer as the stage runs it: a fresh LoRA adapter on `model` (the KL reference, when beta > 0,
    is `model` with the adapter disabled). `tokenizer` is the processor for a VLM (TRL's vision path), with
    `peft_config` from compass.train.vlm."""
    from trl import GRPOTrainer

    return GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                       processing_class=tokenizer, peft_config=peft_config or common.lora_config(sec))


def select(rows: list[dict], tokenizer, model_path, sec: dict, seed: int, chat_cfg: dict, processor=None,
           prompts_path=None) -> tuple[list[dict], dict]:
    """The prompts a stage trains on (see the module docstring) and what the selection kept at each step. With a
    VLM's `processor`, prompts are measured with their image tokens; one cut inside its image is counted apart."""
    rows = sample_rows([r for r in rows if r["answer"] not in (None, "")], sec["data"]["limit"], seed)
    selected = {"prompts": len(rows)}
    budget = sec["max_length"] - sec["max_completion_length"]
    if processor is None:
        rows = fits(rows, tokenizer, chat_cfg, budget)
    else:
        from compass.train import vlm

        rows, kept = vlm.prepare(rows, prompts_path, processor, chat_cfg, budget)
        selected["cut_in_image"] = kept["cut_in_image"]
        rows = [r for r in rows if vlm.prompt_length(processor, r, chat_cfg) <= budget]
    selected["fit_max_length"] = len(rows)
    band = sec["data"]["pass_rate"]
    if band["samples"] and rows:
        rates = pass_rates(rows, model_path, chat_cfg, sec, seed)
        rows = in_band(rows, rates, band["min"], band["max"])
        selected.update(pass_rate_band=[band["min"], band["max"]], in_band=len(rows),
                        mean_pass_rate=round(sum(rates) / len(rates), 4))
    return rows, selected


def build(prompts_path, model_path, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          stage: str | None = None, vision_cfg: dict | None = None, **overrides):
    """(trainer, tokenizer, record for training_log.json) of the stage, as `train` runs it (`overrides` for a
    test's step counts)."""
    from datasets import Dataset

    chat_cfg, vision_cfg = chat_cfg or {}, vision_cfg or {}
    processor = None
    if common.trains_vlm(model_path, vision_cfg):  # the whole VLM (compass.train.vlm): image and text-only prompts
        from compass.io import read_jsonl
        from compass.train import vlm

        rows = read_jsonl(prompts_path, required=PROMPT_FIELDS)
        common.require_rows(rows, prompts_path)
        model, processor = vlm.load(model_path, common.model_kwargs(sec, "grpo", common.use_bf16(sec, "grpo")),
                                    chat_cfg, vision_cfg)
        tokenizer, kwargs = processor.tokenizer, chat.template_kwargs(chat_cfg)
    else:
        rows, model, tokenizer, kwargs = common.load_inputs(prompts_path, PROMPT_FIELDS, model_path, sec, "grpo",
                                                            common.use_bf16(sec, "grpo"), chat_cfg)
    stop_ids = chat.stop_token_ids(tokenizer, chat_cfg)
    # Generation (and TRL's completion mask) ends at every end-of-turn token of the template, as evaluation's does.
    model.generation_config.eos_token_id = stop_ids
    rows, selected = select(rows, tokenizer, model_path, sec, seed, chat_cfg, processor, prompts_path)
    common.require_rows(rows, f"{prompts_path} (after the selection {selected})")
    print(f"grpo{f' {stage}' if stage else ''}: {len(rows)} prompts ({selected})")
    funcs, weights = reward_functions(sec, chat.OutputParser(tokenizer, chat_cfg))
    args = config(sec, seed, checkpoints_dir, chat_cfg, reward_weights=weights, stop_ids=stop_ids, **overrides)
    record = {"stage": stage, "rewards": dict(sec["rewards"]), "epsilon": sec["epsilon"],
              "epsilon_high": sec["epsilon_high"], "beta": sec["beta"], "loss_type": sec["loss_type"],
              "num_iterations": sec["num_iterations"], "data": selected, "chat_template_kwargs": kwargs,
              "generation": sec["generation"]["backend"], "attn_implementation": model.config._attn_implementation}
    if processor is None:
        dataset = Dataset.from_list([to_example(r) for r in rows])
        return trainer(args, model, tokenizer, dataset, sec, funcs), tokenizer, record
    # TRL puts one image part per image before the user text (prompt_messages' layout) and suppresses the image
    # token in its rollouts.
    dataset = vlm.dataset([{**to_example(r), "images": r["image_paths"]} for r in rows])
    tr = trainer(args, model, processor, dataset, sec, funcs,
                 peft_config=vlm.lora_config(sec, model, vision_cfg.get("projector", "frozen")))
    record["vision"] = vlm.record(tr.model, processor, vision_cfg, {"selected": selected})
    return tr, processor, record


def train(prompts_path, model_path, out_dir, checkpoints_dir, sec: dict, seed: int, chat_cfg: dict | None = None,
          stage: str | None = None, vision_cfg: dict | None = None) -> None:
    built = build(prompts_path, model_path, checkpoints_dir, sec, seed, chat_cfg, stage, vision_cfg)
    common.train_stage(*built, common.with_vision(sec, model_path, vision_cfg), seed, chat_cfg or {},
                       (prompts_path, model_path), checkpoints_dir, out_dir)


def add_arguments(p) -> None:
    p.add_argument("--prompts", required=True, type=Path, help="prompt pool JSONL with gold answers (`compass prompts`)")
    p.add_argument("--model", required=True, type=Path, help="the previous stage's merged language model "
                   "directory (or merged VLM, when the whole VLM is trained: vision.train)")
    p.add_argument("--out", required=True, type=Path, help="output adapter directory")
    p.add_argument("--stage", default=None, help="a stage of grpo.stages (its overrides of the shared grpo keys), "
                   "e.g. grpo_format, grpo_accuracy, grpo_cliplow; default: the shared keys alone")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory for resume (default: OUT.checkpoints)")


def main(args, cfg) -> None:
    ckpt = args.checkpoints or Path(f"{args.out}.checkpoints")
    sec = stage_section(cfg["grpo"], args.stage)
    train(args.prompts, args.model, args.out, ckpt, sec, cfg["seed"], cfg["chat"], args.stage, cfg["vision"])

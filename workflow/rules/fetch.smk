# Models and datasets named by Hugging Face id, downloaded by local rules on the submitting node
# (compute nodes often have no internet) into the cache config cache.dir names (HF_HOME of every
# rule, see cluster.smk). Each download leaves a marker JSON under {cache}/fetched/; the rules that
# read the model or dataset take the marker as input and then load it from the cache offline.
# Hub tokens come only from the environment (HF_TOKEN), never from config.
import re

from compass.data.sources import EVAL_SETS, SOURCE_DEFAULTS
from compass.eval.tasks import TASKS

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name):
    """A Hugging Face id (org/name) rather than a local directory."""
    return bool(name) and not os.path.exists(name) and bool(HF_ID.match(name))


def _slug(*parts):
    return "--".join(re.sub(r"[^\w.-]", "_", str(p).replace("/", "--")) for p in parts if p not in (None, ""))


def hub_models():
    """{marker slug: hub id} of the models to fetch: the teacher of the hf and vllm backends."""
    t = config["teacher"]
    models = {}
    if t.get("backend") in ("hf", "vllm") and is_hub_id(t.get("model")):
        models[_slug(t["model"])] = t["model"]
    return models


def phase1_models():
    """{marker slug: hub id} of the models Phase 1 is made from: phase1.hf_id, or the parts named by
    Hub id (the projector is a local file)."""
    p = config["phase1"]
    if p.get("hf_id"):
        return {_slug(p["hf_id"]): p["hf_id"]}
    parts = p.get("parts") or {}
    return {_slug(parts[k]): parts[k] for k in ("vision_tower", "llm", "tokenizer") if is_hub_id(parts.get(k))}


def _source_dataset(spec, seed_sources):
    """(hub id, configs, split) that compass.data.sources.load_source reads for a spec without a path."""
    name = spec.get("name")
    default = seed_sources.get(name)
    hf_id = spec.get("hf_id") or (default.hf_id if default else None)
    if not hf_id:
        return None
    if spec.get("hf_config") is not None:
        cfg = spec["hf_config"]
        configs = tuple(cfg) if isinstance(cfg, (list, tuple)) else (cfg,)
    elif default is not None and hf_id == default.hf_id:
        configs = default.hf_configs
    else:
        configs = (None,)
    split = spec.get("split") or (default.split if default else "train")
    return hf_id, tuple(configs), split


def hub_datasets():
    """({slug: (hub id, configs, split)} the prompts rule loads from the Hub, {task: same} for each
    evaluation task eval_data loads from the Hub): data.sources and data.decontamination.eval_sets
    entries without a local path, and eval.data of the configured tasks (ids, configs and splits
    resolved as compass.data.sources and compass.eval.tasks resolve them)."""
    prompts = {}
    for spec in config["data"]["sources"]:
        if spec.get("name") in ("demo", "charts") or spec.get("path"):  # generated, or a local file
            continue
        hub = _source_dataset(spec, SOURCE_DEFAULTS)
        if hub:
            prompts[_slug(hub[0], *hub[1], hub[2])] = hub
    for spec in config["data"].get("decontamination", {}).get("eval_sets", []):
        if spec.get("path"):
            continue
        source, default_id, cfg, split = EVAL_SETS[spec["name"]]
        hf_id = spec.get("hf_id") or default_id
        hub = _source_dataset({"name": source, "split": split, "hf_id": hf_id,
                               "hf_config": cfg if hf_id == default_id else None}, SOURCE_DEFAULTS)
        if hub:
            prompts[_slug(hub[0], *hub[1], hub[2])] = hub
    tasks = {}
    for name in config["eval"]["tasks"]:
        task = TASKS[name]
        spec = config["eval"].get("data", {}).get(name) or {}
        if name == "demo" or spec.get("path"):
            continue
        hf_id = spec.get("hf_id") or task.hf_id
        if not hf_id:
            continue
        hf_config = spec.get("hf_config") if spec.get("hf_id") else (spec.get("hf_config") or task.hf_config)
        split = spec.get("split") or task.split
        if task.kind == "math":
            hub = _source_dataset({"name": task.source, "split": split, "hf_id": hf_id, "hf_config": hf_config}, SOURCE_DEFAULTS)
        else:
            hub = (hf_id, (hf_config,), split)
        if hub:
            tasks[name] = hub
    return prompts, tasks


TEACHER_MODELS = hub_models()
PHASE1_MODELS = phase1_models()
HUB_MODELS = {**TEACHER_MODELS, **PHASE1_MODELS}
PROMPT_DATASETS, TASK_DATASETS = hub_datasets()
HUB_DATASETS = {**PROMPT_DATASETS, **{_slug(h[0], *h[1], h[2]): h for h in TASK_DATASETS.values()}}
FETCHED = f"{HF_CACHE}/fetched"


def fetched_models():
    """Markers of the teacher model (input of distill)."""
    return [f"{FETCHED}/models/{slug}.json" for slug in TEACHER_MODELS]


def fetched_phase1():
    """Markers of the Hub models Phase 1 is made from (input of assemble_phase1)."""
    return [f"{FETCHED}/models/{slug}.json" for slug in PHASE1_MODELS]


def fetched_datasets():
    """Markers of the datasets the prompts rule loads (input of prompts)."""
    return [f"{FETCHED}/datasets/{slug}.json" for slug in PROMPT_DATASETS]


def fetched_task(task):
    """Marker of an evaluation task's Hub dataset (input of eval_data), or none."""
    hub = TASK_DATASETS.get(task)
    return [f"{FETCHED}/datasets/{_slug(hub[0], *hub[1], hub[2])}.json"] if hub else []


localrules: fetch_model, fetch_dataset


rule fetch_model:
    output:
        f"{FETCHED}/models/{{slug}}.json",
    wildcard_constraints:
        slug="|".join(map(re.escape, HUB_MODELS)) or "^$",
    params:
        hub_id=lambda w: HUB_MODELS[w.slug],
    log:
        f"{FETCHED}/logs/model-{{slug}}.log",
    container: config["containers"]["train"]
    shell:
        "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 compass fetch --params '{{}}' --model {params.hub_id:q} --out {output} > {log} 2>&1"


rule fetch_dataset:
    output:
        f"{FETCHED}/datasets/{{slug}}.json",
    wildcard_constraints:
        slug="|".join(map(re.escape, HUB_DATASETS)) or "^$",
    params:
        hub_id=lambda w: HUB_DATASETS[w.slug][0],
        names=lambda w: " ".join(f"--name {shlex.quote(str(c))}" for c in HUB_DATASETS[w.slug][1] if c is not None),
        split=lambda w: HUB_DATASETS[w.slug][2],
    log:
        f"{FETCHED}/logs/dataset-{{slug}}.log",
    container: config["containers"]["train"]
    shell:
        "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 compass fetch --params '{{}}' --dataset {params.hub_id:q} {params.names}"
        " --split {params.split:q} --out {output} > {log} 2>&1"

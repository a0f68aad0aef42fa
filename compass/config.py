"""The config: one JSON schema (workflow/schemas/config.schema.yaml) gives every key, type and default.

Snakemake validates its `config` through `validate_or_exit()` at start-up; every `compass` subcommand
loads the same schema, so a key means the same thing in a rule and on the command line. Validation
also checks the rules that join several keys (`cross_key_errors`), which the stages would otherwise
find only when they run, hours in. An error names the key and where its value came from: the config
file, `--set`, `--params` or Snakemake's `--config`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import yaml

from compass.io import CompassError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")  # a link to workflow/schemas/


class YamlLoader(yaml.SafeLoader):
    """YAML as people write numbers: `1e-4` and `3e5` are floats (YAML 1.1 wants `1.0e-4`)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
               |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
               |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
               |[-+]?\.(?:inf|Inf|INF)
               |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_yaml(text: str):
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)

_NUMBER = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _as_number(value, types: list):
    """A number written as text (`"1e-4"` from a YAML 1.1 reader, e.g. Snakemake's) where the schema
    wants one; an integral float where it wants an integer. Anything else is left to the validator."""
    if "string" in types or isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value) if any(c in value for c in ".eE") else int(value)
    if isinstance(value, float) and "integer" in types and "number" not in types and value.is_integer():
        return int(value)
    return value


def coerce_numbers(instance, schema: dict):
    """Numbers in any notation become numbers, in place, where the schema's type asks for one."""
    if isinstance(instance, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = coerce_numbers(value, sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        instance[:] = [coerce_numbers(v, schema["items"]) for v in instance]
    else:
        types = schema.get("type")
        types = [types] if isinstance(types, str) else (types or [])
        if "number" in types or "integer" in types:
            return _as_number(instance, types)
    return instance


def _key_path(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def _has(data, path) -> bool:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return False
    return True


def source_of(layers, *paths, default: str = "config") -> str:
    """The last layer (label, data) that sets any of `paths` (or, failing that, a key above one)."""
    for cut in range(max(map(len, paths)), 0, -1):
        for label, data in reversed(layers):
            if any(_has(data, p[:cut]) for p in paths if len(p) >= cut):
                return label
    return default


def _devices(config: dict, rule: str) -> tuple[int, str]:
    res = config["resources"]
    job = res.get(rule) or res["default"]
    key = f"resources.{rule}" if res.get(rule) else "resources.default"
    return job["nodes"] * max(job["gpus"], 1), f"{key}: {job['nodes']} node(s) x {job['gpus']} GPU(s)"


def cross_key_errors(config: dict, workflow: bool = False) -> list[tuple[list[tuple], str]]:
    """Rules that join several keys, as (key paths involved, message): what a stage would find only when
    it runs. `workflow`: also the rules of a Snakemake run, which checks every stage's keys at start-up
    (a stage run alone checks those it uses: `compass distill` names teacher.model when it needs one)."""
    errors = []
    for section in ("sft", "dpo"):
        sec = config[section]
        devices, where = _devices(config, section)
        if sec["global_batch_size"] % (sec["micro_batch_size"] * devices):
            errors.append(([(section, "global_batch_size"), (section, "micro_batch_size"), ("resources", section)],
                           f"{section}.global_batch_size={sec['global_batch_size']} is not a multiple of "
                           f"{section}.micro_batch_size={sec['micro_batch_size']} x {devices} device(s) ({where})"))
    dpo = config["dpo"]
    if dpo["loss_weights"] is not None and len(dpo["loss_weights"]) != len(dpo["loss_type"]):
        errors.append(([("dpo", "loss_weights"), ("dpo", "loss_type")],
                       f"dpo.loss_weights has {len(dpo['loss_weights'])} weight(s) for {len(dpo['loss_type'])} "
                       f"loss(es) in dpo.loss_type {dpo['loss_type']}"))
    weights = config["pairs"]["weights"]
    if not any(w > 0 for w in weights.values()):
        errors.append(([("pairs", "weights")], f"pairs.weights: at least one corruption needs a weight > 0 (got {weights})"))
    if workflow:
        teacher = config["teacher"]
        if teacher["backend"] != "reference" and not teacher["model"]:
            errors.append(([("teacher", "model"), ("teacher", "backend")],
                           f"teacher.model: the {teacher['backend']} backend needs a teacher checkpoint (directory or Hub id)"))
    return errors


def validate(config: dict, source: str = "config", layers=None, workflow: bool = False) -> dict:
    """Fill defaults in place and check every key and every cross-key rule; raise CompassError naming
    the first bad key and the layer (file, --set, --params) its value came from."""
    layers = layers or []
    schema = load_schema()
    coerce_numbers(config, schema)
    validator = _Validator(schema)
    # Defaults of nested objects are only filled once the parent exists, so validate twice.
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = list(e.absolute_path)
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            where = f"{_key_path(path)}." if path else ""
            known = ", ".join(sorted(e.schema.get("properties", {})))
            raise CompassError(f"{source_of(layers, tuple(path) + (extra[0],), default=source)}: unknown key "
                               f"{where}{extra[0]} (known here: {known})")
        raise CompassError(f"{source_of(layers, tuple(path), default=source)}: {_key_path(path)}: {e.message}")
    for paths, message in cross_key_errors(config, workflow):
        raise CompassError(f"{source_of(layers, *paths, default=source)}: {message}")
    return config


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


_KEY = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*")


def parse_set(item: str) -> dict:
    """'sft.lora.r=16' -> {'sft': {'lora': {'r': 16}}} (the value is read as YAML)."""
    key, eq, value = item.partition("=")
    if not eq or not _KEY.fullmatch(key.strip()):
        raise CompassError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. sft.learning_rate=1e-4")
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError as e:
        raise CompassError(f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node[p] = {}
        node = node[p]
    node[parts[-1]] = parsed
    return out


def read_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CompassError(f"config file not found: {path}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise CompassError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise CompassError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise CompassError(f"{path}: expected a mapping at the top level")
    return data


def load(paths=(), sets=(), params_json: str | None = None) -> dict:
    """Config from YAML files (later ones win), then --set items, then a JSON object; validated."""
    layers = [(str(path), read_config_file(path)) for path in paths]
    layers += [(f"--set {item}", parse_set(item)) for item in sets]
    if params_json:
        try:
            params = json.loads(params_json)
        except ValueError as e:
            raise CompassError(f"--params: not valid JSON ({e})") from None
        if not isinstance(params, dict):
            raise CompassError(f"--params: expected a JSON object, got {type(params).__name__}")
        layers.append(("--params", params))
    config: dict = {}
    for _, data in layers:
        config = deep_merge(config, data)
    return validate(config, str(paths[-1]) if paths else "config", layers)


def section_json(config: dict, *keys: str) -> str:
    """The named top-level sections as canonical JSON: what a rule passes to its subcommand
    (and what Snakemake's params rerun-trigger compares)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, ensure_ascii=False)


def job_settings(section: str) -> list[str]:
    """The keys of a config section that change what a job of its stage writes: every key but those the
    schema marks `x-plan: true` (which jobs run, where their data comes from). A rule passes exactly
    these as --params, so Snakemake's params rerun-trigger reruns the jobs a changed setting affects
    and not the ones already done when, say, a task is added."""
    properties = load_schema()["properties"][section]["properties"]
    return [key for key, spec in properties.items() if not spec.get("x-plan")]


def workflow_layers(workflow) -> list:
    """Snakemake's config layers, lowest first: the Snakefile's `configfile:`, each `--configfile`, `--config`."""
    settings = workflow.config_settings
    cli_files = [str(f) for f in settings.configfiles]
    files = [str(f) for f in workflow.configfiles if str(f) not in cli_files] + cli_files
    layers = []
    for f in files:
        try:
            layers.append((f, read_config_file(f)))
        except (CompassError, OSError):  # Snakemake read it; only the naming of a bad key is lost
            pass
    if settings.config:
        layers.append(("--config", dict(settings.config)))
    return layers


def validate_or_exit(config: dict, workflow=None) -> dict:
    """For the Snakefile: validate in place, or stop with a one-line message naming the file and the key."""
    import sys

    layers = workflow_layers(workflow) if workflow is not None else []
    try:
        return validate(config, layers[-1][0] if layers else "config", layers, workflow=True)
    except CompassError as e:
        sys.exit(f"compass: invalid config: {e}")

"""The config: one JSON schema (workflow/schemas/config.schema.yaml) gives every key, type and default.

Snakemake validates its `config` through `validate()` at start-up; every `compass` subcommand loads the
same schema, so a key means the same thing in a rule and on the command line.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from compass.io import CompassError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")  # a link to workflow/schemas/


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


def _key_path(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def validate(config: dict, source: str = "config") -> dict:
    """Fill defaults in place and check every key; raise CompassError naming the first bad key."""
    validator = _Validator(load_schema())
    # Defaults of nested objects are only filled once the parent exists, so validate twice.
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "additionalProperties":
            parent = _key_path(e)
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            where = f"{parent}." if parent != "(top level)" else ""
            known = ", ".join(sorted(e.schema.get("properties", {})))
            raise CompassError(f"{source}: unknown key {where}{extra[0]} (known here: {known})")
        raise CompassError(f"{source}: {_key_path(e)}: {e.message}")
    return config


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def parse_set(item: str) -> dict:
    """'sft.lora.r=16' -> {'sft': {'lora': {'r': 16}}} (the value is read as YAML)."""
    if "=" not in item:
        raise CompassError(f"--set {item!r}: expected KEY=VALUE, e.g. sft.learning_rate=1e-4")
    key, value = item.split("=", 1)
    node: dict = {}
    out = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node[p] = {}
        node = node[p]
    node[parts[-1]] = yaml.safe_load(value)
    return out


def load(paths=(), sets=(), params_json: str | None = None) -> dict:
    """Config from YAML files (later ones win), then --set items, then a JSON object; validated."""
    config: dict = {}
    source = "config"
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise CompassError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise CompassError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise CompassError(f"{path}: expected a mapping at the top level")
        config = deep_merge(config, data)
        source = str(path)
    for item in sets:
        config = deep_merge(config, parse_set(item))
    if params_json:
        config = deep_merge(config, json.loads(params_json))
    return validate(config, source)


def section_json(config: dict, *keys: str) -> str:
    """The named top-level sections as canonical JSON: what a rule passes to its subcommand
    (and what Snakemake's params rerun-trigger compares)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, ensure_ascii=False)


def validate_or_exit(config: dict) -> dict:
    """For the Snakefile: validate in place, or stop with a one-line message naming the key."""
    import sys

    try:
        return validate(config)
    except CompassError as e:
        sys.exit(f"compass: invalid config: {e}")

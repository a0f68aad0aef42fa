"""`compass fetch`: download a model or a dataset named by Hugging Face id into the cache.

The workflow's fetch rules (workflow/rules/fetch.smk) run it on the submitting node, which has
internet, with HF_HOME = config `cache.dir`; every other rule then reads the cache offline
(HF_HUB_OFFLINE=1), so compute nodes need no internet. When the download is complete a marker JSON
(`--out`) records what is in the cache (id, resolved commit, configs, split, rows); the marker is
what the rules that need the model or dataset take as input.

The Hub token comes only from the environment (HF_TOKEN); no token file and no config key is read,
and the token is never written anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from compass.io import CompassError, write_json


def token():
    """HF_TOKEN from the environment, else False (anonymous; a token file is not looked at)."""
    return os.environ.get("HF_TOKEN") or False


def fetch_model(hub_id: str, revision: str | None) -> dict:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(hub_id, revision=revision, token=token()))
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo
        raise CompassError(f"{hub_id}: could not download the model ({type(e).__name__}: {e})") from None
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    return {"kind": "model", "id": hub_id, "revision": path.name, "path": str(path), "files": files}


def fetch_dataset(hub_id: str, configs: list, split: str | None) -> dict:
    import datasets

    rows = {}
    for cfg in configs or [None]:
        try:
            ds = datasets.load_dataset(hub_id, cfg, split=split, token=token())
        except Exception as e:  # noqa: BLE001 - network, auth, missing config or split
            raise CompassError(f"{hub_id} ({cfg or 'default'}, {split}): could not download the dataset ({type(e).__name__}: {e})") from None
        rows[cfg or "default"] = len(ds) if hasattr(ds, "__len__") else None
    return {"kind": "dataset", "id": hub_id, "configs": configs or [None], "split": split, "rows": rows}


def add_arguments(p) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="Hugging Face model id (org/name)")
    what.add_argument("--dataset", help="Hugging Face dataset id (org/name)")
    p.add_argument("--name", action="append", default=[], dest="names", help="dataset config name (repeatable)")
    p.add_argument("--split", default=None, help="dataset split (as datasets.load_dataset takes it)")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit; default: main)")
    p.add_argument("--out", required=True, type=Path, help="marker JSON, written once the download is complete")


def main(args, cfg) -> None:
    if args.model:
        info = fetch_model(args.model, args.revision)
    else:
        info = fetch_dataset(args.dataset, args.names, args.split)
    info["cache"] = os.environ.get("HF_HOME", "")
    write_json(args.out, info)
    print(f"{info['kind']} {info['id']} -> {info['cache'] or 'the default Hugging Face cache'}; marker {args.out}")

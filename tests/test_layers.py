"""Imports point down: each part of compass imports only parts below it (or itself), so a stage never
reaches into another stage or into the commands above it, and shared logic (answers, generation, the trace
format) lives once below the stages that use it. Read from the source (every import, including the ones
inside functions), so a new upward import fails here, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# Lowest first. A module's part is its top-level name under compass (compass.train.sft -> train).
LAYERS = [
    {"io"},
    {"trace_format", "chat", "images", "config", "fetch", "snakemake_shims"},
    {"answers", "vision"},
    {"data"},
    {"models"},
    {"generation"},
    {"teacher", "pairs", "train", "eval"},  # the stages: none imports another
    {"report_figures"},
    {"report"},
    {"cli", "launch"},
    {"__main__"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "compass":
                out += [(node.lineno, f"compass.{a.name}") for a in node.names]
            elif node.module.startswith("compass."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("compass.")]
    return out


def test_every_part_of_compass_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in (REPO / "compass").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts == set(RANK), f"add new parts to LAYERS: {sorted(parts - set(RANK))}; gone: {sorted(set(RANK) - parts)}"


def test_imports_point_down():
    upward = []
    for path in sorted((REPO / "compass").rglob("*.py")):
        rel = path.relative_to(REPO)
        here = rel.parts[1] if len(rel.parts) > 2 else rel.stem
        for line, module in imports(path):
            there = _part(module)
            if there and there != here and RANK[there] >= RANK[here]:
                upward.append(f"{rel}:{line}: {here} imports {module} (layer {RANK[there]} >= {RANK[here]})")
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)

"""Shared fixtures. Real data fixtures live in ../shared/data beside the repository (never copied
in); tests that need them skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data fixtures not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the calling test when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data fixture not found: {path}")
    return path


@pytest.fixture(scope="session")
def demo_config() -> dict:
    """The embedded default config, validated (defaults filled)."""
    from compass import config

    return config.load([REPO / "config" / "config.yaml"])


@pytest.fixture(scope="session")
def phase1_dir(tmp_path_factory, demo_config) -> Path:
    """A tiny demo Phase 1 VLM, built once per session."""
    from compass.models import phase1_demo

    out = tmp_path_factory.mktemp("phase1") / "vlm"
    phase1_demo.build(out, demo_config["phase1"]["demo"], seed=0)
    return out


@pytest.fixture(scope="session")
def phase1_llm(tmp_path_factory, phase1_dir) -> Path:
    from compass.models.vlm import extract_llm

    out = tmp_path_factory.mktemp("phase1_llm") / "llm"
    extract_llm(phase1_dir, out)
    return out

"""The vision demo (config/vision.yaml, `make vision`) end to end on a small cut: the tiny Phase 1 VLM trained
through the whole VLM on the synthetic bar charts, evaluated with each chart and with a blank image."""

from __future__ import annotations

import pytest
from conftest import REPO, snakemake

from compass.io import read_json

pytestmark = pytest.mark.e2e

# The cut: half the charts (378 SFT steps instead of 750) and 100 test questions; docs/vision.md has the full run.
# Measured here (2026-12-01): Phase 2 31.0 % with the chart, 6.0 % blank (+25.0); 23.6 min on the 2 shared cores
# at load 4 (SFT ~20 min of it; about 2 min at load 2).
CUT = """
data:
  charts: {n_train: 1000, n_test: 100}
"""


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vision")
    (workdir / "cut.yaml").write_text(CUT)
    snakemake(workdir, "--configfile", str(REPO / "config" / "config.yaml"), str(REPO / "config" / "vision.yaml"),
              str(workdir / "cut.yaml"), "--cores", "2", "all")
    return workdir / "results" / "vision"


def test_vision_demo_trains_the_vlm_and_checks_grounding(vision_run):
    # SFT trained the VLM on image rows, none cut inside its image, LoRA on the language model + the projector
    log = read_json(vision_run / "sft" / "adapter" / "training_log.json")
    vision = log["vision"]
    assert vision["projector"] == "train" and vision["examples"]["cut_in_image"] == 0
    assert vision["examples"]["with_images"] == vision["examples"]["kept"] > 900
    assert vision["trainable_tensors"]["projector"] == 4 and vision["trainable_tensors"]["language_model_lora"] > 0
    assert not (vision_run / "phase1" / "llm").exists()  # no extract/compose round trip
    # compose: vision tower bit-identical, the projector's four tensors and the language model changed
    parts = read_json(vision_run / "final_vlm" / "compose.json")["parts"]
    assert parts["vision_tower"]["changed"] == [] and parts["vision_tower"]["tensors"] > 0
    assert len(parts["projector"]["changed"]) == 4 and parts["language_model"]["changed"]
    # the report: the chart task with real and blank images for Phase 1 and Phase 2, and what changed
    summary = read_json(vision_run / "report" / "summary.json")
    grounding = summary["grounding"]["charts"]
    assert set(grounding) == {"phase1", "phase2"} and grounding["phase2"]["n"] == 100
    assert summary["phase2_changes"]["parts"]["projector"]["changed"] == parts["projector"]["changed"]
    html = (vision_run / "report" / "index.html").read_text()
    assert "Grounding check" in html and "Phase 2 against Phase 1" in html
    # even this cut reads the charts: Phase 2 answers better with the chart than with a blank image (a model that
    # ignores the image scores the same on both, within a few points)
    assert grounding["phase2"]["gap"] >= 0.10, grounding

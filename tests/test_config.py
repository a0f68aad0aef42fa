import pytest
import yaml

from conftest import REPO

from compass import config
from compass.io import CompassError


def test_embedded_and_production_configs_validate():
    demo = config.load([REPO / "config/config.yaml"])
    prod = config.load([REPO / "config/phase2.yaml"])
    assert demo["teacher"]["backend"] == "reference"
    # the seed's hyperparameters
    sft, dpo = prod["sft"], prod["dpo"]
    assert (sft["learning_rate"], sft["global_batch_size"], sft["micro_batch_size"], sft["num_train_epochs"]) == (2e-4, 64, 2, 1)
    assert (sft["max_length"], sft["lora"]["r"], sft["lora"]["alpha"], sft["warmup_ratio"]) == (4096, 32, 64, 0.03)
    assert sft["bf16"] and sft["gradient_checkpointing"] and sft["optim"].startswith("adamw")
    assert (dpo["learning_rate"], dpo["global_batch_size"], dpo["micro_batch_size"], dpo["beta"], dpo["max_length"]) == (5e-6, 32, 1, 0.1, 2048)


def test_defaults_fill_nested_sections():
    cfg = config.validate({})
    assert cfg["sft"]["lora"]["r"] == 32
    assert cfg["dpo"]["learning_rate"] == 5e-6 and cfg["dpo"]["beta"] == 0.1
    assert cfg["pairs"]["weights"] == {"omit_thinking": 0.34, "tamper_thinking_numbers": 0.33, "tamper_answer": 0.33}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"dpo": {"beta": "high"}}, "dpo.beta: 'high' is not of type 'number'"),
        ({"sft": {"lora": {"r": 0}}}, "sft.lora.r: 0 is less than the minimum of 1"),
        ({"sft": {"lr": 1}}, "unknown key sft.lr"),
        ({"teacher": {"backend": "openai"}}, "teacher.backend: 'openai' is not one of"),
        ({"data": {"sources": [{"name": "demo", "limt": 3}]}}, "unknown key data.sources[0].limt"),
    ],
)
def test_errors_name_the_key(tmp_path, override, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(CompassError) as err:
        config.load([path])
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_set_and_params_override_files(tmp_path):
    cfg = config.load([REPO / "config/config.yaml"], ["sft.lora.r=8", "run=x"], '{"dpo": {"beta": 0.3}}')
    assert (cfg["sft"]["lora"]["r"], cfg["run"], cfg["dpo"]["beta"]) == (8, "x", 0.3)
    with pytest.raises(CompassError, match="KEY=VALUE"):
        config.load([], ["sft.lora.r"])


def test_section_json_is_canonical():
    a = config.section_json({"b": {"y": 1, "x": 2}, "a": 1}, "b")
    assert a == '{"b": {"x": 2, "y": 1}}'


def test_schema_link_is_the_workflow_schema():
    assert config.SCHEMA_PATH.resolve() == (REPO / "workflow/schemas/config.schema.yaml").resolve()

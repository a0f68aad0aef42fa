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


# --- numbers, sources, cross-key rules (issue 10) ---------------------------------------------------


def test_numbers_in_any_yaml_notation_are_numbers(tmp_path):
    """YAML 1.1 reads `1e-4` as a string; the README's own `--set sft.learning_rate=1e-3` must work."""
    path = tmp_path / "c.yaml"
    path.write_text("sft:\n  learning_rate: 1e-4\n  save_steps: 1e3\ndpo:\n  beta: 5E-2\n")
    cfg = config.load([REPO / "config/config.yaml", path], ["dpo.learning_rate=1e-6", "merge.atol_fp32=2e-3"])
    assert cfg["sft"]["learning_rate"] == 1e-4 and cfg["dpo"]["beta"] == 0.05
    assert cfg["sft"]["save_steps"] == 1000 and isinstance(cfg["sft"]["save_steps"], int)
    assert (cfg["dpo"]["learning_rate"], cfg["merge"]["atol_fp32"]) == (1e-6, 2e-3)
    # what Snakemake's own YAML reader hands the Snakefile: text where the schema wants a number
    cfg = config.validate({"sft": {"learning_rate": "1e-4", "logging_steps": "5"}, "chat": {"template_kwargs": {"x": "1e-4"}}})
    assert cfg["sft"]["learning_rate"] == 1e-4 and cfg["sft"]["logging_steps"] == 5
    assert cfg["chat"]["template_kwargs"]["x"] == "1e-4"  # a string where strings are allowed stays one


@pytest.mark.parametrize("sets, params, blamed", [
    (["dpo.beta=high"], None, "--set dpo.beta=high: dpo.beta: 'high' is not of type 'number'"),
    (["sft.lr=1"], None, "--set sft.lr=1: unknown key sft.lr"),
    ([], '{"dpo": {"beta": "x"}}', "--params: dpo.beta: 'x' is not of type 'number'"),
    (["sft.lora.r=8"], None, None),
])
def test_errors_name_the_layer_that_set_the_key(tmp_path, sets, params, blamed):
    path = tmp_path / "c.yaml"
    path.write_text("dpo:\n  beta: 0.2\n")
    if blamed is None:
        assert config.load([REPO / "config/config.yaml", path], sets, params)["sft"]["lora"]["r"] == 8
        return
    with pytest.raises(CompassError) as err:
        config.load([REPO / "config/config.yaml", path], sets, params)
    assert str(err.value).startswith(blamed)


@pytest.mark.parametrize("override, message", [
    ({"sft": {"global_batch_size": 16, "micro_batch_size": 3}},
     "sft.global_batch_size=16 is not a multiple of sft.micro_batch_size=3 x 1 device(s)"),
    ({"dpo": {"global_batch_size": 16, "micro_batch_size": 1}, "resources": {"dpo": {"gpus": 3}}},
     "dpo.global_batch_size=16 is not a multiple of dpo.micro_batch_size=1 x 3 device(s) (resources.dpo: 1 node(s) x 3 GPU(s))"),
    ({"dpo": {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}},
     "dpo.loss_weights has 1 weight(s) for 2 loss(es)"),
    ({"pairs": {"weights": {"omit_thinking": 0, "tamper_thinking_numbers": 0, "tamper_answer": 0}}},
     "pairs.weights: at least one corruption needs a weight > 0"),
    ({"sft": {"lr_scheduler_type": "cosine_annealing"}}, "sft.lr_scheduler_type: 'cosine_annealing' is not one of"),
    ({"dpo": {"optim": "adam"}}, "dpo.optim: 'adam' is not one of"),
])
def test_cross_key_rules_are_checked_at_start_up(tmp_path, override, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(CompassError) as err:
        config.load([REPO / "config/config.yaml", path])
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_teacher_backend_without_a_model_stops_the_workflow_at_start_up():
    cfg = config.validate({"teacher": {"backend": "hf"}})  # a stage run alone: only distill needs it, and says so
    with pytest.raises(CompassError, match="teacher.model: the hf backend needs a teacher checkpoint"):
        config.validate(cfg, workflow=True)


def test_schema_enums_are_the_ones_transformers_accepts():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    props = config.load_schema()["properties"]["sft"]["properties"]
    assert props["lr_scheduler_type"]["enum"] == [s.value for s in SchedulerType]
    assert props["optim"]["enum"] == [o.value for o in OptimizerNames]


@pytest.mark.parametrize("content, sets, params, message", [
    (b"sft:\n  learning_rate: caf\xe9\n", [], None, "not UTF-8 text (byte 25)"),
    (b"sft:\n  lora: [1\n", [], None, ":3:1: not valid YAML"),
    (b"{}", ["sft..r=1"], None, "--set 'sft..r=1': expected KEY=VALUE"),
    (b"{}", ["sft.lora.r=[1"], None, "--set 'sft.lora.r=[1': the value is not valid YAML"),
    (b"{}", [], "{bad", "--params: not valid JSON"),
    (b"{}", [], "[1]", "--params: expected a JSON object"),
])
def test_malformed_config_input_is_one_line(tmp_path, content, sets, params, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(CompassError) as err:
        config.load([path], sets, params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_workflow_start_up_message_names_the_file_and_reads_1e_4(tmp_path):
    from conftest import snakemake

    bad = tmp_path / "x.yaml"
    bad.write_text("dpo:\n  beta: high\n")
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/config.yaml"), str(bad), "-n", "final_vlm", check=False)
    assert proc.returncode != 0
    assert f"compass: invalid config: {bad}: dpo.beta: 'high' is not of type 'number'" in proc.stderr + proc.stdout
    bad.write_text("sft:\n  learning_rate: 1e-4\n")
    snakemake(tmp_path, "--configfile", str(REPO / "config/config.yaml"), str(bad), "--config", "dpo={beta: 2e-1}",
              "-n", "final_vlm")

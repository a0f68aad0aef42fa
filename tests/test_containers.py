"""Apptainer images: every definition file's structure (header, sections, pins equal to envs/), every
rule that runs software naming an image, the profile turning Apptainer on with --nv and binds, the
command line Snakemake builds for an image, and the image build script.

No Apptainer binary can be installed here (not in Debian bookworm, not on PyPI), so the images are
not built; a stand-in `apptainer` on PATH records the calls and runs the command on the host.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, load_workflow

DEFS = sorted((REPO / "containers").glob("*.def"))
NAMES = [d.stem for d in DEFS]
SECTIONS = ["%labels", "%help", "%files", "%post", "%environment", "%runscript", "%test"]
KNOWN_SECTIONS = {"%setup", "%files", "%environment", "%post", "%runscript", "%startscript", "%test", "%labels", "%help", "%arguments"}
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)$")


def parse_def(path: Path) -> tuple[dict, dict[str, list[str]]]:
    """(header, {section: lines}) of an Apptainer definition file, strictly: header keys before the
    first section, one block per section name."""
    header, sections, current = {}, {}, None
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if current is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.startswith("%"):
            name = line.split()[0]
            assert name in KNOWN_SECTIONS, f"{path.name}: unknown section {name}"
            assert name not in sections, f"{path.name}: section {name} twice"
            sections[name] = []
            current = name
        elif current is None:
            key, sep, value = line.partition(":")
            assert sep and key.strip() and value.strip(), f"{path.name}: bad header line {line!r}"
            header[key.strip()] = value.strip()
        else:
            sections[current].append(line)
    return header, sections


def def_pins(sections) -> dict[str, str]:
    """name -> version of every `name==version` the %post installs."""
    pins = {}
    for line in sections["%post"]:
        for tok in line.replace("\\", " ").split():
            m = PIN.match(tok)
            if m:
                assert m.group(1).lower() not in pins, f"{m.group(1)} pinned twice"
                pins[m.group(1).lower()] = m.group(2)
    return pins


def env_pins(name: str) -> tuple[dict[str, str], str]:
    """(pip pins, python version) of envs/{name}.yaml."""
    env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    pins, python = {}, None
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                m = PIN.match(item.split("#")[0].strip())
                assert m, f"envs/{name}.yaml: {item!r} is not pinned with =="
                pins[m.group(1).lower()] = m.group(2)
        elif str(dep).startswith("python="):
            python = str(dep).split("=", 1)[1]
    return pins, python


def test_there_is_an_image_per_environment_and_config_names_them():
    assert set(NAMES) == {"train", "teacher", "eval", "rl"}
    assert {p.stem for p in (REPO / "envs").glob("*.yaml")} == set(NAMES)
    from compass import config

    images = config.load([REPO / "config" / "config.yaml"])["containers"]
    assert set(images) == set(NAMES)
    for name, sif in images.items():
        assert sif == f"containers/{name}.sif"


@pytest.mark.parametrize("path", DEFS, ids=NAMES)
def test_definition_file_structure(path):
    header, sections = parse_def(path)
    assert header.get("Bootstrap") == "docker"
    image, _, tag = header["From"].rpartition(":")
    assert image and tag and tag != "latest" and re.search(r"\d", tag), f"base image not pinned: {header['From']}"
    for s in SECTIONS:
        assert s in sections, f"{path.name}: no {s}"
    post = "\n".join(sections["%post"])
    assert "set -e" in post
    assert "/opt/venv/bin/pip install --no-cache-dir --no-deps /opt/compass" in post, "installs compass itself"
    env = "\n".join(sections["%environment"])
    assert "/opt/venv/bin" in env and "HF_HUB_OFFLINE=1" in env
    assert any("compass" in line for line in sections["%test"])
    assert any(f"envs/{path.stem}.yaml" in line for line in sections["%labels"])
    for line in sections["%files"]:
        if line.strip():
            src = line.split()[0]
            assert (REPO / src).exists(), f"{path.name}: %files source {src} missing"


@pytest.mark.parametrize("path", DEFS, ids=NAMES)
def test_definition_pins_equal_envs(path):
    _, sections = parse_def(path)
    pins, python = env_pins(path.stem)
    assert def_pins(sections) == pins
    assert f"python{python}" in "\n".join(sections["%post"]), f"python {python} as in envs/{path.stem}.yaml"


def test_spython_reads_every_definition():
    from spython.main.parse.parsers import SingularityParser

    for path in DEFS:
        (recipe,) = SingularityParser(str(path)).recipe.values()
        header, sections = parse_def(path)
        assert recipe.fromHeader == header["From"], path.name
        assert recipe.install and recipe.files and recipe.environ, path.name


def test_image_pins_equal_the_tested_environment():
    """Where an image and requirements.lock (the stack the tests run on) both pin a package, the
    versions agree. The one difference, transformers in the images with vLLM (teacher, eval), is
    checked too: the image's pin lies within the bound its line says vLLM sets, the tested version
    outside it."""
    from packaging.specifiers import SpecifierSet

    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            lock[m.group(1).lower().replace("_", "-")] = m.group(2)
    for name in NAMES:
        pins, python = env_pins(name)
        assert python == "3.12"
        for pkg, version in pins.items():
            if "vllm" in pins and pkg == "transformers" and version != lock[pkg]:
                line = next(x for x in (REPO / "envs" / f"{name}.yaml").read_text().splitlines() if f"{pkg}=={version}" in x)
                bound = SpecifierSet(re.search(rf"vllm {pins['vllm']} requires transformers([^ ]+)", line).group(1))
                assert version in bound and lock[pkg] not in bound, f"envs/{name}.yaml: {line.strip()}"
                continue
            if pkg.replace("_", "-") in lock:
                assert lock[pkg.replace("_", "-")] == version, f"envs/{name}.yaml {pkg}=={version}, requirements.lock {lock[pkg]}"
    train, _ = env_pins("train")
    for pkg in ("torch", "transformers", "peft", "trl", "deepspeed", "datasets", "accelerate"):
        assert pkg in train, f"train image lacks {pkg}"
    assert "vllm" in env_pins("teacher")[0]
    assert "vllm" in env_pins("eval")[0]  # eval.backend: vllm and pairs.sampling.backend: vllm run there
    rl, _ = env_pins("rl")  # GRPO: TRL + PEFT with vLLM colocated, vLLM within the range TRL supports
    assert {"vllm", "trl", "peft", "accelerate", "deepspeed"} <= set(rl)
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    assert Version(rl["vllm"]) in SpecifierSet(">=0.22.0,<=0.31.0"), "TRL 1.16's supported vLLM range (trl[vllm])"


# Both kinds of post-SFT stage in the plan (the embedded default's recipe has GRPO only; phase2.yaml's, DPO).
BOTH_STAGES = {"train": {"recipe": ["dpo", "grpo_accuracy"]}}


def test_every_rule_that_runs_software_names_an_image(tmp_path):
    wf = load_workflow(tmp_path, config=BOTH_STAGES)
    images = {f"containers/{n}.sif" for n in NAMES}
    shell_rules = [r for r in wf.rules if r.shellcmd]
    assert {"sft", "dpo", "grpo_accuracy", "distill", "merge_sft", "compose", "evaluate", "fetch_model",
            "fetch_dataset"} <= {r.name for r in shell_rules}
    assert all(not r.run_func or r.shellcmd or r.norun for r in wf.rules if r.name not in ("all", "final_vlm")), \
        "every rule runs a shell command (no `run:` blocks outside the images)"
    for rule in shell_rules:
        assert rule.container_img in images, f"rule {rule.name} names no image ({rule.container_img})"
    by_rule = {r.name: r.container_img for r in wf.rules}
    assert by_rule["sft"] == by_rule["dpo"] == by_rule["merge_grpo_accuracy"] == "containers/train.sif"
    assert by_rule["grpo_accuracy"] == "containers/rl.sif"  # TRL's rollouts on vLLM (grpo.generation.backend: vllm)
    assert by_rule["distill"] == "containers/teacher.sif"
    assert by_rule["evaluate"] == "containers/eval.sif"


def test_every_rule_file_declares_container_for_each_shell_rule():
    """The same, read from the rule files: every `rule` block with a `shell:` has a `container:`."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"(?ms)^\s*rule (\w+):\n(.*?)(?=^\s*rule \w+:|\Z)", smk.read_text()):
            if "shell:" in body:
                assert "container:" in body, f"{smk.name}: rule {name} has no container"


def render_profile(monkeypatch, **env) -> dict:
    from snakemake.profiles import ProfileConfigFileParser

    for key in ("COMPASS_CONTAINERS", "COMPASS_BINDS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with open(REPO / "slurm" / "config.yaml") as f:
        return dict(ProfileConfigFileParser().parse(f))


def test_profile_turns_apptainer_on_with_gpus_and_binds(monkeypatch):
    prof = render_profile(monkeypatch)
    assert prof["executor"] == "slurm"
    assert prof["software-deployment-method"] == "apptainer"
    assert prof["apptainer-args"] == "--nv"
    prof = render_profile(monkeypatch, COMPASS_BINDS="/scratch/me,/data/phase1")
    assert prof["apptainer-args"] == "--nv --bind /scratch/me --bind /data/phase1"
    prof = render_profile(monkeypatch, COMPASS_CONTAINERS="off")
    assert "software-deployment-method" not in prof


@pytest.fixture
def fake_apptainer(tmp_path):
    """An `apptainer` that reports a version, records each call and runs the command on the host."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "apptainer-calls.log"
    script = bindir / "apptainer"
    script.write_text(f"""#!/usr/bin/env bash
if [[ "$1" == "--version" || "$1" == "version" ]]; then echo "apptainer version 1.3.4"; exit 0; fi
printf '%s\\n' "$*" >> {log}
args=("$@"); i=0
[[ "${{args[0]}}" == "--quiet" ]] && i=2
[[ "${{args[$i]}}" == "exec" ]] || {{ echo "fake apptainer: unsupported: $*" >&2; exit 2; }}
i=$((i+1))
while [[ $i -lt ${{#args[@]}} ]]; do
  case "${{args[$i]}}" in --home|--bind|-B|--pwd) i=$((i+2));; --*) i=$((i+1));; *) break;; esac
done
i=$((i+1))
exec "${{args[@]:$i}}"
""")
    script.chmod(0o755)
    return bindir, log


def test_a_rule_runs_in_its_image_with_gpus_and_binds(tmp_path, fake_apptainer):
    bindir, log = fake_apptainer
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    small = tmp_path / "small.yaml"
    small.write_text("data: {demo: {n_train: 8, n_test: 2}}\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "1",
           "--configfile", str(REPO / "config" / "config.yaml"), str(small),
           "--sdm", "apptainer", f"--apptainer-args=--nv --bind {tmp_path}", "results/demo/data/prompts.jsonl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    assert calls[0].startswith(f"exec --home {work} --nv --bind {tmp_path}")
    assert " containers/train.sif bash -c " in calls[0] and "compass prompts" in calls[0]
    assert (work / "results/demo/data/prompts.jsonl").is_file()


def test_build_script_builds_every_definition(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "apptainer"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n[[ "$1" == build ]] && touch "${{@: -2:1}}"\n')
    fake.chmod(0o755)
    repo = tmp_path / "repo"
    for sub in ("containers", "envs", "compass", "cluster"):
        (repo / sub).mkdir(parents=True)
    for d in DEFS:
        (repo / "containers" / d.name).write_text(d.read_text())
    (repo / "pyproject.toml").write_text("")
    script = repo / "cluster" / "build-images.sh"
    script.write_text((REPO / "cluster" / "build-images.sh").read_text())
    script.chmod(0o755)
    env = dict(os.environ, APPTAINER=str(fake), APPTAINER_BUILD_ARGS="--fakeroot")
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    built = sorted(calls.read_text().splitlines())
    assert built == sorted(f"build --fakeroot containers/{n}.sif.partial containers/{n}.def" for n in NAMES)
    assert sorted(p.name for p in (repo / "containers").glob("*.sif")) == sorted(f"{n}.sif" for n in NAMES)
    # Up to date: nothing rebuilt; a missing apptainer is one clear line.
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    assert proc.stdout.count("is up to date") == len(NAMES)
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=dict(env, APPTAINER="", PATH="/usr/bin:/bin"))
    assert proc.returncode == 1 and "apptainer (or singularity) not found" in proc.stderr


# What each image must hold: the third-party modules its rules' `compass` subcommands import
# (statically, through compass's own imports), as the distributions that provide them.
PROVIDES = {"yaml": "pyyaml", "math_verify": "math-verify", "lm_eval": "lm-eval", "PIL": "pillow", "sklearn": "scikit-learn"}
# Installed as dependencies of a pinned package (name in the image -> the pinned one that brings it).
COMES_WITH = {"safetensors": "transformers", "tokenizers": "transformers", "huggingface_hub": "transformers",
              "pyarrow": "datasets", "numpy": "torch", "torch": "vllm", "jinja2": "torch"}


def provided(mod: str, pins: set[str]) -> bool:
    """The module's distribution is pinned in the image, or brought by something pinned there (COMES_WITH)."""
    while mod is not None:
        if PROVIDES.get(mod, mod).replace("_", "-").lower() in pins:
            return True
        mod = COMES_WITH.get(mod)
    return False


def third_party_imports(module: str, seen: set | None = None) -> set[str]:
    import ast

    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = REPO / module.replace(".", "/") / "__init__.py"
        if not path.is_file():
            return set()
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for name in names:
            if name.split(".")[0] == "compass":
                out |= third_party_imports(name, seen)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                out.add(name.split(".")[0])
    return out


def test_each_image_holds_what_its_rules_import(tmp_path):
    from compass.cli import SUBCOMMANDS

    wf = load_workflow(tmp_path, config=BOTH_STAGES)
    base = third_party_imports("compass.cli") | third_party_imports("compass.config") | third_party_imports("compass.launch")
    checked = 0
    for rule in wf.rules:
        if not rule.shellcmd:
            continue
        m = re.search(r"(?:\bcompass|compass\.launch .*?--) ([a-z0-9-]+) ", rule.shellcmd)
        assert m and m.group(1) in SUBCOMMANDS, f"rule {rule.name}: no compass subcommand in {rule.shellcmd[:120]}"
        image = Path(rule.container_img).stem
        pins = set(env_pins(image)[0])
        needed = base | third_party_imports(SUBCOMMANDS[m.group(1)][0])
        if m.group(1) in ("sft", "dpo", "grpo"):
            needed |= {"accelerate", "deepspeed"}  # compass.launch's multi-GPU path
        for mod in sorted(needed):
            assert provided(mod, pins), f"rule {rule.name} ({image} image) imports {mod}, which the image lacks"
        checked += 1
    assert checked >= 15

"""Shared fixtures. Real data fixtures live in ../shared/data beside the repository (never copied
in); tests that need them skip cleanly when it is absent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


def demo_traces(n: int, seed: int = 0) -> list[dict]:
    """n of the project's own synthetic problems (compass.data.demo, English and Japanese) as teacher
    traces: the worked solution as the thinking, in the trace format."""
    from compass.data import demo
    from compass.trace_format import format_response

    train, _ = demo.generate(n, 0, seed=seed)
    return [{"id": r["id"], "source": r["source"], "lang": r["lang"], "problem": r["problem"], "answer": r["answer"],
             "response": format_response(r["problem"], r["solution"], r["answer"])} for r in train]


def real_traces() -> list[dict]:
    """GSM8K test and MATH-500 from ../shared/data as teacher traces (their worked solutions as the
    thinking), or skip the calling test when they are missing."""
    from compass.trace_format import format_response

    rows = []
    for name in ("gsm8k", "math500"):
        with open(shared_file(name, "test.jsonl"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                r = json.loads(line)
                if name == "gsm8k":
                    rid, problem, (solution, answer) = f"gsm8k-test-{i:05d}", r["question"], r["answer"].rsplit("####", 1)
                else:
                    rid, problem, solution, answer = f"math500-{i:03d}", r["problem"], r["solution"], r["answer"]
                rows.append({"id": rid, "source": name, "lang": "en", "problem": problem, "answer": answer.strip(),
                             "response": format_response(problem, solution, answer)})
    return rows


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
    from compass.models.extract_llm import extract_llm

    out = tmp_path_factory.mktemp("phase1_llm") / "llm"
    extract_llm(phase1_dir, out)
    return out


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The repository's Snakefile run in `workdir`, with this environment's tools on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """`snakemake --cores 2 all` on the embedded default, once per session (about 10 min on 2
    cores): the working directory. tests/test_workflow.py checks it; tests/test_slurm.py compares
    the SLURM run with it. Tests only read it (dry runs at most)."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--configfile", str(REPO / "config" / "config.yaml"), "--cores", "2", "all")
    return workdir


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table of a dry run."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        jobs[m.group(1)] = int(m.group(2))
    jobs.pop("total", None)
    return jobs


def load_workflow(tmp_path, deployment=frozenset(), apptainer_args="", config=None):
    """The parsed workflow (its rules), in this process. Parsing changes the working directory and
    Snakemake's shell prefix (the Hub cache variables of cluster.smk): both are put back, and the
    environment too."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DeploymentSettings, OutputSettings, ResourceSettings,
                                          StorageSettings)
    from snakemake.shell import shell

    cwd, environ, prefix = os.getcwd(), dict(os.environ), shell._process_prefix  # noqa: SLF001
    try:
        with SnakemakeApi(OutputSettings()) as api:
            wapi = api.workflow(
                resource_settings=ResourceSettings(),
                config_settings=ConfigSettings(configfiles=[REPO / "config" / "config.yaml"], config=config or {}),
                storage_settings=StorageSettings(),
                deployment_settings=DeploymentSettings(deployment_method=set(deployment), apptainer_args=apptainer_args),
                snakefile=REPO / "Snakefile",
                workdir=tmp_path,
            )
            workflow = wapi._workflow  # noqa: SLF001 - the parsed rules
            workflow.rules  # noqa: B018 - parse now
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        shell._process_prefix = prefix  # noqa: SLF001
        # Workflow() writes its storage registry into snakemake.workflow's module globals; its catch-all
        # attribute lookup breaks vLLM's scan of sys.modules when a later test starts an engine in this
        # process. (The product never parses a workflow in-process: only these tests do.)
        import snakemake.workflow

        snakemake.workflow.__dict__.pop("storage", None)
    return workflow

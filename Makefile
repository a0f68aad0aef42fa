# Two commands do all the set-up (a virtualenv in .venv with the pinned stack, then the job):
#   make demo   # run the whole pipeline on the embedded default config (CPU, no network) + report
#   make test   # run the test suite (includes the embedded end-to-end run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2

.PHONY: setup demo final_vlm rehearsal vision test test-fast clean images slurm-up test-slurm

# One environment: the pinned stack, then vLLM's CPU build beside it (requirements-vllm.lock, --no-deps:
# its metadata pins another torch; docs/vllm.md says why one environment and what was checked).
$(BIN)/compass: requirements.lock requirements-vllm.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -r requirements-vllm.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(BIN)/compass

demo: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) all

final_vlm: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) final_vlm

# The production rehearsal (README): config/phase2.yaml's stages, backends and features at CPU sizes, with
# the real llm-jp-4 tokenizer and the real vLLM engine. Its teacher is the demo's SFT model, built first.
rehearsal: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) results/demo/sft/merged
	$(BIN)/python -m tests.upstream_fixtures results/rehearsal-data
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) all --configfile config/rehearsal.yaml

# The vision demo (docs/vision.md): the tiny VLM trained through the whole VLM on the synthetic bar charts and
# evaluated with each chart and with a blank image (the grounding check). Outputs in results/vision/.
vision: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) all --configfile config/vision.yaml

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -ra tests

test-fast: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -ra -m "not e2e" tests

# Cluster (README "Running on a cluster"):
#   make images       # build containers/*.sif from containers/*.def (needs apptainer)
#   make slurm-up     # install + start a single-node SLURM (root; what .ci/run does)
#   make test-slurm   # only the tests that run the workflow through SLURM
images:
	cluster/build-images.sh

slurm-up:
	cluster/slurm-setup.sh

test-slurm: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -ra -m slurm tests

clean:
	rm -rf results .snakemake

# From a fresh clone, one command each (they make .venv and install into it when needed):
#   make quickstart                 train, sample and judge the quickstart recipe
#   make test                       the whole test suite; extra pytest arguments: ARGS='-m "not slow"'
#   make install                    only set up .venv
# CPU-only machines: add TORCH_INDEX=https://download.pytorch.org/whl/cpu to any of them once, so
# that torch, torchvision and torchaudio come from that index (no CUDA libraries) before the rest.
# Installing is skipped while .venv/.installed is newer than requirements.txt and every
# pyproject.toml, so a second run starts at once.

PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?=
ARGS =

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := requirements.txt $(wildcard pyproject.toml plugins/*/pyproject.toml)

.PHONY: quickstart test install FORCE

quickstart: $(STAMP)
	$(BIN)/diffvq run recipes/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Changes when a new TORCH_INDEX is given (and only then), so that torch is installed from it.
$(VENV)/.torch-index: FORCE | $(BIN)/python
	@if [ -n "$(TORCH_INDEX)" ] && [ "$$(cat $@ 2>/dev/null)" != "$(TORCH_INDEX)" ]; then \
		echo "$(TORCH_INDEX)" > $@; fi
	@[ -f $@ ] || touch $@

$(STAMP): $(SOURCES) $(VENV)/.torch-index | $(BIN)/python
ifneq ($(TORCH_INDEX),)
	$(BIN)/python -m pip install --index-url $(TORCH_INDEX) torch torchvision torchaudio
endif
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

FORCE:

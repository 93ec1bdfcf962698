# The two commands of the README:
#   make book   builds the website into _build/html, executing every chapter
#   make test   runs every test (library, book build, grading pipeline, instructor CLI)
# Each creates the virtual environment .venv and installs into it when missing.
#
# TORCH_SPEC picks the torch build: the default is the CPU wheel; override it for a GPU build, e.g.
#   make book TORCH_SPEC="torch>=2.3,<3"
# An empty TORCH_SPEC keeps whatever torch the environment already has.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed

.PHONY: book test venv lab clean clean-book

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e ".[book,course,test]"
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) release submitted autograded feedback .grading gradebook.db grades.csv

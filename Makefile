# The two commands of the README:
#   make book   builds the website into _build/html, executing every chapter
#   make test   runs every test (library, book build, the site and JupyterLab in a browser, grading, CLI)
# Each creates the virtual environment .venv and installs into it when missing. `make test` also installs the
# browser its browser tests need (Debian's chromium) and the PostgreSQL server that the gradebook tests start
# (Debian's postgresql) when they are missing and it runs as root with apt-get.
#
# TORCH_SPEC picks the torch build: the default is the CPU wheel; override it for a GPU build, e.g.
#   make book TORCH_SPEC="torch>=2.3,<3"
# An empty TORCH_SPEC keeps whatever torch the environment already has.
#
# More:
#   make book JUPYTERHUB_URL=https://hub.example.edu   launch buttons that open chapters on the course's JupyterHub
#   make serve [PORT=8000]                             serve _build/html on http://127.0.0.1:8000/
#   make lab [LAB_DIR=folder]                          JupyterLab for students (assignment list, Validate)
#   make lab-instructor                                JupyterLab for instructors (formgrader, create assignment)
#   make system-packages                               install Chromium and PostgreSQL for the tests (root, apt-get)

PYTHON         ?= python3
VENV           ?= .venv
TORCH_SPEC     ?= torch==2.13.0
JUPYTERHUB_URL ?=
PORT           ?= 8000
LAB_DIR        ?= .
LAB_ARGS       ?=
BIN            := $(VENV)/bin
STAMP          := $(VENV)/.installed
# what the browser tests need from the system (Debian package names)
BROWSER_PACKAGES := chromium chromium-driver
# the PostgreSQL server that the gradebook tests start on loopback (tests/postgres_server.py)
POSTGRES_PACKAGES := postgresql

.PHONY: book test venv system-packages serve lab lab-instructor clean clean-book

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e ".[book,course,cluster,test]"
	@touch $(STAMP)

book: $(STAMP)
	$(if $(JUPYTERHUB_URL),BOOK_JUPYTERHUB_URL="$(JUPYTERHUB_URL)" )$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

# Chromium for the browser tests (tests/browser): installed with apt-get when it is missing and this runs as root.
# Elsewhere the browser tests are skipped with a note saying why (under CI they fail instead).
# PostgreSQL for the gradebook tests (tests/test_gradebook_postgres.py), the same way: only the server's binaries
# are needed (the tests start a server of their own), so no service is started while it is installed (a
# policy-rc.d that refuses, unless the system has one already).
system-packages:
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	   || command -v google-chrome >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing $(BROWSER_PACKAGES) for the browser tests (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; } \
	    || echo "warning: apt-get could not install $(BROWSER_PACKAGES): the browser tests cannot run" >&2; \
	else \
	  echo "note: Chromium is not installed, and installing it needs root and apt-get" \
	       "(apt-get install $(BROWSER_PACKAGES)): the browser tests will be skipped" >&2; \
	fi
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	   || { command -v pg_config >/dev/null 2>&1 && [ -x "$$(pg_config --bindir)/initdb" ]; }; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing $(POSTGRES_PACKAGES) for the gradebook tests (apt-get; no service is started)"; \
	  policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1; fi; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(POSTGRES_PACKAGES) >/dev/null; } \
	    || echo "warning: apt-get could not install $(POSTGRES_PACKAGES): the PostgreSQL gradebook tests cannot run" >&2; \
	  if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	else \
	  echo "note: PostgreSQL is not installed, and installing it needs root and apt-get" \
	       "(apt-get install $(POSTGRES_PACKAGES)): the PostgreSQL gradebook tests will be skipped" >&2; \
	fi

# the built site, on this machine only
serve:
	@test -f _build/html/index.html || { echo "no site in _build/html yet: run make book first" >&2; exit 1; }
	@echo "Serving the book on http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# JupyterLab with the course environment (lab/start; lab/student, lab/instructor hold the two modes' settings)
lab: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" lab/start student --ServerApp.root_dir="$(LAB_DIR)" $(LAB_ARGS)

lab-instructor: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" lab/start instructor $(LAB_ARGS)

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) release submitted autograded feedback .grading gradebook.db grades.csv

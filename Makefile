# Two commands do all the set-up (see README.md):
#   make lab    create/refresh .venv, then open JupyterLab on notebooks/
#   make test   create/refresh .venv, then run unit + interop tests and nbval over the notebooks
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test bench venv clean student

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lablib needs Python >= 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lablib)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	$(PY) -m labs.make_student --check
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks

student: $(STAMP)
	$(PY) -m labs.make_student

clean:
	rm -rf $(VENV) build *.egg-info

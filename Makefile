# Build tictactoe for a server.
#   make dist     dist/tictactoe: one executable file (PyInstaller), no Python needed on the target
#   make zipapp   dist/tictactoe.pyz: one zipapp (shiv) for a machine that has Python 3.11+
#   make clean    remove build/ and dist/
# Both need the test extra installed: .venv/bin/pip install -e '.[test]'.

PYTHON ?= .venv/bin/python
# Rebuild only when something that goes into the file changed.
SOURCES := run.py pyproject.toml $(shell find tictactoe migrations -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: dist zipapp clean FORCE

# A source file removed (a migration dropped) must make the builds stale too, which its absence
# from $(SOURCES) alone does not: the list itself is a dependency, rewritten only when it changes.
build/sources.list: FORCE
	@mkdir -p build
	@echo '$(SOURCES)' | cmp -s - $@ || echo '$(SOURCES)' > $@

dist: dist/tictactoe

# --collect-data takes every non-Python file of the package (the web client, when it is there);
# the top-level migrations/ go in as tictactoe/migrations, where store.py looks first.
dist/tictactoe: $(SOURCES) build/sources.list
	$(PYTHON) -m PyInstaller --onefile --noconfirm --log-level WARN \
		--name tictactoe --distpath dist --workpath build/pyinstaller --specpath build \
		--collect-data tictactoe --add-data "$(CURDIR)/migrations:tictactoe/migrations" \
		run.py
	@touch $@  # PyInstaller leaves an unchanged build's file as it was: mark it up to date

zipapp: dist/tictactoe.pyz

# shiv installs the package as a wheel would (migrations as package data) with its dependencies.
dist/tictactoe.pyz: $(SOURCES) build/sources.list
	@mkdir -p dist
	@rm -rf build/lib  # setuptools builds the wheel in here and never removes what left the sources
	$(PYTHON) -m shiv --quiet --reproducible --compressed -c tictactoe -o dist/tictactoe.pyz \
		-p '/usr/bin/env python3' .

clean:
	rm -rf build dist

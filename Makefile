# Build tictactoe for a server.
#   make dist     dist/tictactoe: one executable file (PyInstaller), no Python needed on the target
#   make zipapp   dist/tictactoe.pyz: one zipapp (shiv) for a machine that has Python 3.11+
#   make clean    remove build/ and dist/
# Both need the test extra installed: .venv/bin/pip install -e '.[test]'.

PYTHON ?= .venv/bin/python
# Rebuild only when something that goes into the file changed.
SOURCES := run.py pyproject.toml $(shell find tictactoe migrations -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: dist zipapp clean

dist: dist/tictactoe

# --collect-data takes every non-Python file of the package (the web client, when it is there);
# the top-level migrations/ go in as tictactoe/migrations, where store.py looks first.
dist/tictactoe: $(SOURCES)
	$(PYTHON) -m PyInstaller --onefile --noconfirm --log-level WARN \
		--name tictactoe --distpath dist --workpath build/pyinstaller --specpath build \
		--collect-data tictactoe --add-data "$(CURDIR)/migrations:tictactoe/migrations" \
		run.py

zipapp: dist/tictactoe.pyz

# shiv installs the package as a wheel would (migrations as package data) with its dependencies.
dist/tictactoe.pyz: $(SOURCES)
	@mkdir -p dist
	$(PYTHON) -m shiv --quiet --reproducible --compressed -c tictactoe -o dist/tictactoe.pyz \
		-p '/usr/bin/env python3' .

clean:
	rm -rf build dist

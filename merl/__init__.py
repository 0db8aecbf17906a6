"""merl-ray: MERL (zero-shot ECG classification from ECG-report pretraining) on Ray.

``merl.load(BUNDLE)`` returns a :class:`merl.api.MERL` (see docs/python_api.md). The API is
imported on first use, so ``import merl.core.config`` and the CLI's ``--help`` stay light;
``merl.KnowledgeClient(url)`` (a client of `merl knowledge serve`) does not import torch at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["MERL", "KnowledgeClient", "ZeroShotResult", "load", "read_ecgs"]

if TYPE_CHECKING:
    from merl.api import MERL, KnowledgeClient, ZeroShotResult, load, read_ecgs


def __getattr__(name: str) -> Any:
    if name == "KnowledgeClient":  # light: the client needs neither torch nor Ray
        from merl.knowledge.client import KnowledgeClient

        return KnowledgeClient
    if name in __all__:
        from merl import api

        return getattr(api, name)
    raise AttributeError(f"module 'merl' has no attribute {name!r}")

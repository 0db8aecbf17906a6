"""One writer per published dataset layout (see shared formats: MIMIC-IV-ECG, PTB-XL, CPSC2018, CSN)."""

from __future__ import annotations

from .base import LayoutWriter
from .cpsc2018 import Cpsc2018Writer
from .csn import CsnWriter
from .mimic import MimicWriter
from .ptbxl import PtbxlWriter

WRITERS: dict[str, type[LayoutWriter]] = {
    w.name: w for w in (MimicWriter, PtbxlWriter, Cpsc2018Writer, CsnWriter)
}

__all__ = ["WRITERS", "LayoutWriter"]

"""Synthetic ECG-report corpus in the published dataset layouts (see docs/synthetic.md).

``generate_record`` makes one record in memory (signal, machine report, labels in every
ontology); ``synthesize`` writes a whole corpus as MIMIC-IV-ECG, PTB-XL, CPSC2018 or CSN.
"""

from .build import LAYOUTS, SynthSummary, record_at, synthesize
from .generate import SynthRecord, generate_record

__all__ = ["LAYOUTS", "SynthRecord", "SynthSummary", "generate_record", "record_at", "synthesize"]

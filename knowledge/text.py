"""Word-level normalisation shared by the lexical retrieval channel and the grounding filter.

Deterministic and small on purpose: lower-case, British -> American spelling, a handful of
clinical near-synonyms collapsed to one word ("wide"/"broad"), light suffix stemming. Numbers
are kept verbatim so "120 ms" never matches "140 ms".
"""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    "a an the and or of in on at to for with without by from as is are be been being this that these those "
    "it its than then there their which who whom whose what when where while into onto over under per "
    "may can usually often typically also more less most least very any all each both either neither not no "
    "nor but if so such".split()
)

# Spelling variants and near-synonyms, mapped to one canonical word.
CANONICAL = {
    "wide": "broad", "widened": "broad", "widening": "broad", "broadened": "broad",
    "ischaemia": "ischemia", "ischaemic": "ischemic", "oedema": "edema", "haemodynamic": "hemodynamic",
    "repolarisation": "repolarization", "depolarisation": "depolarization", "anaemia": "anemia",
    "elevated": "elevation", "depressed": "depression", "inverted": "inversion", "prolonged": "prolongation",
    "tachy": "tachycardia", "brady": "bradycardia", "ecg": "ecg", "ekg": "ecg",
}

_TOKEN = re.compile(r"[a-z]+[0-9]*|\d+(?:\.\d+)?")


def stem(word: str) -> str:
    """Strip one of -ing/-ed/-es/-s when at least three letters remain."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    """Normalised content tokens: 'Broad, notched R waves in V6' -> ['broad', 'notch', 'r', 'wave', 'v6']."""
    out = []
    for t in _TOKEN.findall(text.lower()):
        if t in STOPWORDS:
            continue
        t = CANONICAL.get(t, t)
        out.append(t if t[0].isdigit() else stem(t))
    return out

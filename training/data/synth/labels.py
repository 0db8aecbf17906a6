"""Ground-truth labels of a synthetic record in every ontology the six tasks use.

Each condition maps to PTB-XL SCP statements, CPSC2018 classes and CSN acronyms (SNOMED CT
ids from the published CSN table). ``COVERAGE`` in ``docs/synthetic.md`` is derived from
these tables, so what the docs claim is what the generator emits.
"""

from __future__ import annotations

import numpy as np

from .conditions import SINUS
from .tables import csn_snomed, scp_statements

SCP: dict[str, tuple[str, ...]] = {
    "sinus_normal": ("SR",), "sinus_brady": ("SBRAD",), "sinus_tachy": ("STACH",),
    "sinus_arrhythmia": ("SARRH",), "afib": ("AFIB",), "aflutter": ("AFLT",), "svt": ("PSVT",),
    "atrial_tachy": ("SVTAC",), "avb3": ("3AVB",), "paced": ("PACE",),
    "avb1": ("1AVB", "LPR"), "pr_borderline": ("LPR",), "mobitz1": ("2AVB",), "mobitz2": ("2AVB",),
    "pac": ("PAC", "SVARR"), "pvc": ("PVC",), "bigeminy": ("PVC", "BIGU"), "trigeminy": ("PVC", "TRIGU"),
    "lbbb": ("CLBBB",), "ilbbb": ("ILBBB",), "rbbb": ("CRBBB",), "irbbb": ("IRBBB",),
    "ivcd": ("IVCD",), "wpw": ("WPW",), "lafb": ("LAFB",), "lpfb": ("LPFB",), "septal_hypertrophy": ("SEHYP",),
    "lvh": ("LVH", "VCLVH"), "rvh": ("RVH",), "lae": ("LAO/LAE",), "rae": ("RAO/RAE",),
    "low_voltage": ("LVOLT",), "high_voltage": ("HVOLT",), "lad": (), "rad": (), "ccw_rotation": (), "cw_rotation": (),
    "mi_inferior": ("IMI", "QWAVE", "ABQRS"), "mi_anterior": ("AMI", "QWAVE", "ABQRS"),
    "mi_anteroseptal": ("ASMI", "QWAVE", "ABQRS"), "mi_lateral": ("LMI", "QWAVE", "ABQRS"),
    "mi_posterior": ("PMI", "ABQRS"), "acute_mi": ("STE_",),
    "st_elevation": ("STE_",), "st_depression_lateral": ("STD_", "ISCLA"),
    "st_depression_inferior": ("STD_", "ISCIN"), "st_depression_inferolateral": ("STD_", "ISCIL"),
    "st_depression_anterolateral": ("STD_", "ISCAL"), "st_depression_diffuse": ("STD_", "ISC_"),
    "t_inversion_anterior": ("INVT", "ISCAN"), "t_inversion_lateral": ("INVT", "ISCLA"),
    "t_inversion_inferior": ("INVT", "ISCIN"), "t_inversion_anteroseptal": ("INVT", "ISCAS"),
    "t_inversion_nonspecific": ("NT_", "TAB_"), "low_t": ("LOWT", "NDT"), "long_qt": ("LNGQT",),
    "dig": ("DIG", "STD_", "NST_"), "u_wave": (), "early_repol": (),
}

CPSC: dict[str, tuple[str, ...]] = {
    "afib": ("AFIB",), "avb1": ("1AVB",), "lbbb": ("CLBBB",), "rbbb": ("CRBBB",), "pac": ("PAC",),
    "pvc": ("VPC",), "bigeminy": ("VPC",), "trigeminy": ("VPC",), "dig": ("STD",),
    "st_depression_lateral": ("STD",), "st_depression_inferior": ("STD",),
    "st_depression_inferolateral": ("STD",), "st_depression_anterolateral": ("STD",),
    "st_depression_diffuse": ("STD",), "st_elevation": ("STE",), "acute_mi": ("STE",),
}

CSN: dict[str, tuple[str, ...]] = {
    "sinus_normal": ("SR",), "sinus_brady": ("SB",), "sinus_tachy": ("ST",), "sinus_arrhythmia": ("SA",),
    "afib": ("AFIB",), "aflutter": ("AF",), "svt": ("SVT",), "atrial_tachy": ("AT",),
    "avb1": ("1AVB",), "pr_borderline": ("PRIE",), "mobitz1": ("2AVB", "2AVB1"), "mobitz2": ("2AVB", "2AVB2"),
    "pac": ("APB",), "pvc": ("VPB",), "bigeminy": ("VPB", "VB"), "trigeminy": ("VPB",),
    "lbbb": ("LBBB",), "rbbb": ("RBBB",), "ivcd": ("IVB",), "wpw": ("WPW",),
    "lafb": ("ALS",), "lpfb": ("ARS",), "lad": ("ALS",), "rad": ("ARS",),
    "lvh": ("LVH",), "rvh": ("RVH", "ARS"), "lae": ("PWC",), "rae": ("RAH",),
    "low_voltage": ("LVQRSAL",), "ccw_rotation": ("CCR",), "cw_rotation": ("CR",),
    "mi_inferior": ("MI", "AQW"), "mi_anterior": ("MI", "AQW"), "mi_anteroseptal": ("MI", "AQW"),
    "mi_lateral": ("MI", "AQW"), "mi_posterior": ("MI",), "acute_mi": ("STE",),
    "st_elevation": ("STE",), "st_depression_lateral": ("STDD",), "st_depression_inferior": ("STDD",),
    "st_depression_inferolateral": ("STDD",), "st_depression_anterolateral": ("STDD",),
    "st_depression_diffuse": ("STTC",), "t_inversion_anterior": ("TWO",), "t_inversion_lateral": ("TWO",),
    "t_inversion_inferior": ("TWO",), "t_inversion_anteroseptal": ("TWO",),
    "t_inversion_nonspecific": ("TWC",), "low_t": ("TWC",), "long_qt": ("QTIE",), "dig": ("STDD",),
    "u_wave": ("UW",), "early_repol": ("ERV",),
}
# Escape rhythm of complete heart block: CSN names the escape beats.
CSN_AVB3 = {"junctional": ("3AVB", "AVB", "JEB"), "ventricular": ("3AVB", "AVB", "VEB")}

_LIKELIHOODS = np.array([100.0, 80.0, 50.0, 35.0, 15.0])
_LIKELIHOOD_P = np.array([0.7, 0.12, 0.1, 0.05, 0.03])


def _unique(seq) -> list[str]:
    return list(dict.fromkeys(seq))


def is_normal(conds: list[str]) -> bool:
    """Normal ECG apart from the sinus rate (PTB-XL keeps NORM with SBRAD/STACH/SARRH)."""
    return set(conds) <= SINUS | {"ccw_rotation", "cw_rotation"}


def scp_codes(conds: list[str], rng: np.random.Generator) -> dict[str, float]:
    """PTB-XL ``scp_codes``: diagnostic likelihoods 15..100, form/rhythm statements 0."""
    table = scp_statements()
    codes = (["NORM"] if is_normal(conds) else []) + [c for k in conds for c in SCP[k]]
    out: dict[str, float] = {}
    for code in _unique(codes):
        if table[code]["diagnostic"] == "1.0" or table[code]["diagnostic"] == "1":
            out[code] = float(rng.choice(_LIKELIHOODS, p=_LIKELIHOOD_P))
        else:
            out[code] = 0.0
    return out


def cpsc_labels(conds: list[str]) -> list[str]:
    """CPSC2018 classes (at most three, as in REFERENCE.csv); [] if none applies."""
    if set(conds) == {"sinus_normal"}:
        return ["NORM"]
    return _unique(c for k in conds for c in CPSC.get(k, ()))[:3]


def csn_labels(conds: list[str], escape: str | None = None) -> list[str]:
    out = [c for k in conds for c in CSN.get(k, ())]
    if "avb3" in conds:
        out += CSN_AVB3[escape or "junctional"]
    return _unique(out)


def snomed_codes(acronyms: list[str]) -> list[str]:
    table = csn_snomed()
    return _unique(table[a] for a in acronyms)


def heart_axis(qrs_axis: float) -> str:
    """PTB-XL ``heart_axis`` category of a frontal QRS axis in degrees."""
    a = (qrs_axis + 180.0) % 360.0 - 180.0
    if -30 <= a <= 90:
        return "MID"
    if -45 <= a < -30:
        return "LAD"
    if -90 <= a < -45:
        return "ALAD"
    if 90 < a <= 120:
        return "RAD"
    if 120 < a <= 180:
        return "ARAD"
    return "SUP"


def _ptbxl_views(code: str) -> dict[str, str]:
    """The labels one SCP code contributes to the PTB-XL tasks (benchmark aggregation)."""
    row = scp_statements()[code]
    out = {"scp": code.strip("_")}
    if row["diagnostic_class"]:
        out["ptbxl_superclass"] = row["diagnostic_class"]
        out["ptbxl_subclass"] = row["diagnostic_subclass"].strip("_")
    return out


def producible() -> dict[str, set[str]]:
    """ontology -> every label the generator can emit (derived from the tables above)."""
    out: dict[str, set[str]] = {"ptbxl_superclass": set(), "ptbxl_subclass": set(), "scp": set(),
                                "cpsc": {"NORM"}, "csn": set()}
    for code in {c for codes in SCP.values() for c in codes} | {"NORM"}:
        for onto, label in _ptbxl_views(code).items():
            out[onto].add(label)
    out["cpsc"] |= {c for v in CPSC.values() for c in v}
    out["csn"] |= {c for v in CSN.values() for c in v} | {c for v in CSN_AVB3.values() for c in v}
    return out


def task_coverage() -> dict[str, tuple[list[str], list[str]]]:
    """task -> (labels the generator produces, labels it never produces), in task order."""
    from merl.core.tasks import TASKS

    can = producible()
    return {name: ([lb for lb in t.labels if lb in can[t.ontology]], [lb for lb in t.labels if lb not in can[t.ontology]])
            for name, t in TASKS.items()}

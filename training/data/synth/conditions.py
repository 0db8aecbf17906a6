"""Condition catalogue, clinical compatibility rules and the prior over conditions.

A record has exactly one rhythm and any compatible set of other conditions. The prior is
shaped like a hospital ECG archive: about 40% normal ECGs, sinus rhythm in most of the
rest, conduction and ST-T abnormalities common, rare rhythms rare.
"""

from __future__ import annotations

import numpy as np

RHYTHMS = {  # name: weight among abnormal records
    "sinus_normal": 0.52, "sinus_brady": 0.10, "sinus_tachy": 0.10, "sinus_arrhythmia": 0.05,
    "afib": 0.11, "aflutter": 0.03, "svt": 0.015, "atrial_tachy": 0.015, "avb3": 0.01, "paced": 0.035,
}
SINUS = {"sinus_normal", "sinus_brady", "sinus_tachy", "sinus_arrhythmia"}

# Optional conditions with their probability in an abnormal record.
OPTIONAL = {
    "avb1": 0.08, "pr_borderline": 0.02, "mobitz1": 0.012, "mobitz2": 0.01,
    "pac": 0.06, "pvc": 0.07, "bigeminy": 0.015, "trigeminy": 0.012,
    "lbbb": 0.05, "ilbbb": 0.01, "rbbb": 0.07, "irbbb": 0.045, "ivcd": 0.03, "wpw": 0.008,
    "lafb": 0.06, "lpfb": 0.01, "septal_hypertrophy": 0.01,
    "lvh": 0.08, "rvh": 0.015, "high_voltage": 0.015, "lae": 0.04, "rae": 0.015, "low_voltage": 0.04,
    "lad": 0.05, "rad": 0.03, "ccw_rotation": 0.015, "cw_rotation": 0.015,
    "mi_inferior": 0.07, "mi_anterior": 0.025, "mi_anteroseptal": 0.04, "mi_lateral": 0.02,
    "mi_posterior": 0.01, "acute_mi": 0.0,  # acute_mi is drawn conditionally on an MI
    "st_elevation": 0.03, "st_depression_lateral": 0.03, "st_depression_inferior": 0.015,
    "st_depression_inferolateral": 0.015, "st_depression_anterolateral": 0.015,
    "st_depression_diffuse": 0.015,
    "t_inversion_anterior": 0.02, "t_inversion_lateral": 0.02, "t_inversion_inferior": 0.015,
    "t_inversion_anteroseptal": 0.01, "t_inversion_nonspecific": 0.02,
    "low_t": 0.05, "long_qt": 0.04, "dig": 0.008, "u_wave": 0.01, "early_repol": 0.02,
}
ALL_CONDITIONS = tuple(RHYTHMS) + tuple(OPTIONAL)
P_ACUTE_MI = 0.3

AV = {"avb1", "pr_borderline", "mobitz1", "mobitz2"}
ECTOPY = {"pac", "pvc", "bigeminy", "trigeminy"}
VCOND = {"lbbb", "ilbbb", "rbbb", "irbbb", "ivcd", "wpw"}
FASCICLE = {"lafb", "lpfb"}
MI = {"mi_inferior", "mi_anterior", "mi_anteroseptal", "mi_lateral", "mi_posterior"}
ST_DEP = {c for c in OPTIONAL if c.startswith("st_depression_")}
T_INV = {c for c in OPTIONAL if c.startswith("t_inversion_")}
PRIMARY_STT = ST_DEP | T_INV | {"st_elevation", "low_t", "dig", "early_repol"}
AXIS_LEFT = {"lad", "lafb"}
AXIS_RIGHT = {"rad", "lpfb", "rvh"}

_EXCLUSIVE_GROUPS = [AV, ECTOPY, VCOND, FASCICLE, MI, ST_DEP, T_INV | {"low_t"},
                     {"lvh", "rvh", "low_voltage", "high_voltage"}, {"ccw_rotation", "cw_rotation"},
                     {"st_elevation"} | ST_DEP, {"dig", "long_qt"}]
_PAIRS_FORBIDDEN = [  # (a, b): never together (clinically impossible or mutually masking)
    ("lbbb", "lafb"), ("lbbb", "lpfb"), ("ilbbb", "lafb"), ("ilbbb", "lpfb"), ("ivcd", "lafb"),
    ("ivcd", "lpfb"), ("wpw", "lafb"), ("wpw", "lpfb"),
    ("acute_mi", "st_elevation"), ("acute_mi", "early_repol"), ("acute_mi", "mi_posterior"),
    ("early_repol", "st_elevation"), ("lbbb", "ccw_rotation"), ("lbbb", "cw_rotation"),
    ("rbbb", "ccw_rotation"), ("rvh", "ccw_rotation"), ("rvh", "cw_rotation"),
    *[("septal_hypertrophy", c) for c in ("lbbb", "ilbbb", "lafb", "lpfb", "wpw", "rvh", *sorted(MI))],
]


def compatible(conds: set[str]) -> bool:
    """True if the set is clinically possible (and each finding stays recognisable)."""
    rhythms = conds & set(RHYTHMS)
    if len(rhythms) != 1:
        return False
    (rhythm,) = rhythms
    if any(len(conds & g) > 1 for g in _EXCLUSIVE_GROUPS):
        return False
    if any(a in conds and b in conds for a, b in _PAIRS_FORBIDDEN):
        return False
    if conds & AXIS_LEFT and conds & AXIS_RIGHT:
        return False
    if "acute_mi" in conds and not conds & MI:
        return False
    if rhythm == "paced" and len(conds) > 1:
        return False  # pacing masks conduction and morphology findings
    if conds & AV:
        if rhythm not in SINUS:
            return False  # no AV block in AF / flutter / SVT / complete block
        if rhythm == "sinus_tachy" and conds & {"mobitz1", "mobitz2"}:
            return False
        if conds & {"mobitz1", "mobitz2"} and conds & ECTOPY:
            return False
    if "wpw" in conds and (rhythm not in SINUS or conds & (AV | MI | PRIMARY_STT | {"lvh", "rvh"})):
        return False
    if conds & {"pac", "bigeminy", "trigeminy"} and rhythm not in SINUS:
        return False
    if conds & {"bigeminy", "trigeminy"} and rhythm == "sinus_tachy":
        return False  # no room for a premature beat in every cycle
    if "pvc" in conds and rhythm not in SINUS | {"afib"}:
        return False
    if conds & MI and conds & {"lbbb", "ilbbb"}:
        return False
    if conds & PRIMARY_STT and conds & {"lbbb", "wpw"}:
        return False
    return True


def sample_conditions(rng: np.random.Generator, p_normal: float = 0.4) -> list[str]:
    """Draw one record's conditions from the prior (rejecting incompatible additions)."""
    if rng.random() < p_normal:
        return ["sinus_normal"]
    names = list(RHYTHMS)
    w = np.array([RHYTHMS[n] for n in names])
    conds = {names[int(rng.choice(len(names), p=w / w.sum()))]}
    opt = list(OPTIONAL)
    draws = rng.random(len(opt))
    for name, r in zip(opt, draws):
        if r < OPTIONAL[name] and compatible(conds | {name}):
            conds.add(name)
    if conds & MI and rng.random() < P_ACUTE_MI and compatible(conds | {"acute_mi"}):
        conds.add("acute_mi")
    if conds == {"sinus_normal"}:  # an abnormal record needs at least one finding
        probs = np.array([OPTIONAL[n] for n in opt])
        nz = int((probs > 0).sum())
        for i in rng.choice(len(opt), size=nz, replace=False, p=probs / probs.sum()):
            if compatible(conds | {opt[i]}):
                conds.add(opt[i])
                break
    return order(conds)


def order(conds: set[str] | list[str]) -> list[str]:
    """Catalogue order (rhythm first): stable reports, labels and test ids."""
    s = set(conds)
    unknown = s - set(ALL_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown synthetic condition(s) {sorted(unknown)}; known: {list(ALL_CONDITIONS)}")
    return [c for c in ALL_CONDITIONS if c in s]

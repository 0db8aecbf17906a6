"""Machine-statement vocabulary and report composition (MIMIC-IV-ECG style, PTB-XL style).

A report is a list of short statements, rhythm first, then conduction, axis, chambers,
infarction, ST-T, technical remarks and a summary line ("normal ecg", "borderline ecg",
"abnormal ecg"), with synonyms, abbreviations and occasional omissions varied per record.
"""

from __future__ import annotations

import re

import numpy as np

from .conditions import SINUS

RHYTHM = {
    "sinus_normal": ["sinus rhythm", "normal sinus rhythm", "sinus rhythm"],
    "sinus_brady": ["sinus bradycardia"],
    "sinus_tachy": ["sinus tachycardia"],
    "sinus_arrhythmia": ["sinus arrhythmia", "sinus rhythm with marked sinus arrhythmia"],
    "afib": ["atrial fibrillation", "atrial fibrillation", "afib"],
    "aflutter": ["atrial flutter"],
    "svt": ["supraventricular tachycardia", "paroxysmal supraventricular tachycardia", "svt"],
    "atrial_tachy": ["ectopic atrial tachycardia", "atrial tachycardia"],
    "avb3": ["complete heart block", "third degree a-v block", "sinus rhythm with complete a-v block"],
    "paced": ["ventricular-paced rhythm", "electronic ventricular pacemaker", "paced rhythm"],
}
WITH = {  # suffixes joined to the rhythm ("sinus rhythm with 1st degree a-v block")
    "avb1": ["1st degree a-v block", "first degree av block", "prolonged pr interval"],
    "pr_borderline": ["borderline prolonged pr interval", "borderline pr prolongation"],
    "mobitz1": ["2nd degree a-v block, mobitz i (wenckebach)", "second degree av block, mobitz type i",
                "wenckebach"],
    "mobitz2": ["2nd degree a-v block, mobitz ii", "second degree av block, mobitz type ii"],
    "pac": ["pacs", "premature atrial complexes", "occasional premature supraventricular complexes"],
    "pvc": ["pvcs", "occasional premature ventricular complexes", "premature ventricular contractions"],
    "bigeminy": ["ventricular bigeminy", "pvcs in a bigeminal pattern"],
    "trigeminy": ["ventricular trigeminy", "pvcs in a trigeminal pattern"],
}
STATEMENT = {
    "lbbb": ["left bundle branch block", "lbbb", "left bundle branch block"],
    "ilbbb": ["incomplete left bundle branch block", "incomplete lbbb"],
    "rbbb": ["right bundle branch block", "rbbb", "right bundle branch block"],
    "irbbb": ["incomplete right bundle branch block", "incomplete rbbb"],
    "ivcd": ["nonspecific intraventricular conduction delay", "intraventricular conduction defect",
             "iv conduction defect", "nonspecific ivcd"],
    "wpw": ["ventricular pre-excitation, wpw pattern", "wolff-parkinson-white pattern", "wpw"],
    "lafb": ["left anterior fascicular block", "left anterior hemiblock", "lafb"],
    "lpfb": ["left posterior fascicular block", "left posterior hemiblock"],
    "septal_hypertrophy": ["septal hypertrophy", "prominent septal forces, consider septal hypertrophy"],
    "lad": ["left axis deviation", "leftward axis"],
    "rad": ["right axis deviation", "rightward axis"],
    "ccw_rotation": ["counterclockwise rotation", "early precordial r wave transition", "early transition"],
    "cw_rotation": ["clockwise rotation", "late precordial r wave transition", "delayed r wave transition"],
    "lvh": ["left ventricular hypertrophy", "lvh", "voltage criteria for left ventricular hypertrophy",
            "lvh by voltage"],
    "_lvh_strain": ["left ventricular hypertrophy with secondary repolarization abnormality",
                    "lvh with repolarization abnormality", "lvh with strain pattern"],
    "rvh": ["right ventricular hypertrophy", "rvh", "probable right ventricular hypertrophy"],
    "lae": ["left atrial enlargement", "left atrial abnormality", "possible left atrial abnormality"],
    "rae": ["right atrial enlargement", "right atrial abnormality", "p pulmonale"],
    "high_voltage": ["high qrs voltage", "prominent qrs voltage, may be normal for age"],
    "low_voltage": ["low qrs voltages", "low voltage qrs", "generalized low qrs voltages"],
    "st_elevation": ["st elevation", "nonspecific st elevation", "diffuse st elevation",
                     "st elevation, consider pericarditis or early repolarization"],
    "st_depression_lateral": ["lateral st depression", "st depression in lateral leads",
                              "lateral st-t changes may be due to myocardial ischemia"],
    "st_depression_inferior": ["inferior st depression", "st depression in inferior leads",
                               "inferior st-t changes may be due to myocardial ischemia"],
    "st_depression_inferolateral": ["inferior/lateral st depression",
                                    "inferolateral st-t changes may be due to myocardial ischemia"],
    "st_depression_anterolateral": ["anterolateral st depression",
                                    "anterolateral st-t changes may be due to myocardial ischemia"],
    "st_depression_diffuse": ["nonspecific st depression", "diffuse st depression", "nonspecific st abnormality"],
    "t_inversion_anterior": ["anterior t wave inversion", "t wave inversion in anterior leads",
                             "anterior t wave changes may be due to myocardial ischemia"],
    "t_inversion_lateral": ["lateral t wave inversion", "t wave inversion in lateral leads",
                            "lateral t wave changes may be due to myocardial ischemia"],
    "t_inversion_inferior": ["inferior t wave inversion", "t wave inversion in inferior leads",
                             "inferior t wave changes may be due to myocardial ischemia"],
    "t_inversion_anteroseptal": ["anteroseptal t wave inversion", "t wave inversion v1-v3"],
    "t_inversion_nonspecific": ["nonspecific t wave abnormality", "nonspecific t wave changes",
                                "t wave abnormality"],
    "low_t": ["low amplitude t waves", "flat t waves", "low t waves, nonspecific"],
    "long_qt": ["prolonged qt interval", "long qt", "qt prolonged"],
    "dig": ["st-t changes consistent with digitalis effect", "digitalis effect"],
    "u_wave": ["prominent u waves", "u waves present"],
    "early_repol": ["early repolarization", "st elevation, probable early repolarization"],
}
MI_SITE = {"mi_inferior": "inferior", "mi_anterior": "anterior", "mi_anteroseptal": "anteroseptal",
           "mi_lateral": "lateral", "mi_posterior": "posterior"}
MI_OLD = ["{s} infarct - age undetermined", "possible {s} infarct - age undetermined",
          "{s} infarct, old", "{s} q waves, consider old infarct"]
MI_ACUTE = ["{s} infarct - acute", "acute {s} infarct", "{s} st elevation mi",
            "st elevation consider {s} injury or acute infarct"]
MINOR = {"high_voltage", "lad", "rad", "irbbb", "lafb", "lae", "rae", "low_t", "ccw_rotation", "cw_rotation", "u_wave",
         "early_repol", "avb1", "pr_borderline", "pac", "sinus_arrhythmia", "sinus_brady", "sinus_tachy"}
GERMAN = {
    "sinus_normal": "sinusrhythmus", "sinus_brady": "sinusbradykardie", "sinus_tachy": "sinustachykardie",
    "sinus_arrhythmia": "sinusarrhythmie", "afib": "vorhofflimmern", "aflutter": "vorhofflattern",
    "avb1": "av-block i. grades", "lbbb": "linksschenkelblock", "rbbb": "rechtsschenkelblock",
    "irbbb": "inkompletter rechtsschenkelblock", "lafb": "linksanteriorer hemiblock",
    "lvh": "linksventrikulaere hypertrophie", "pvc": "ventrikulaere extrasystole(n)",
    "pac": "supraventrikulaere extrasystole(n)", "low_voltage": "periphere niederspannung",
    "mi_inferior": "inferiorer infarkt alter unbestimmt",
    "mi_anteroseptal": "anteroseptaler infarkt alter unbestimmt", "lad": "linkstyp", "rad": "rechtstyp",
    "long_qt": "qt-verlaengerung", "paced": "schrittmacher-rhythmus",
}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def summary(conds: list[str]) -> str:
    s = set(conds)
    if s == {"sinus_normal"}:
        return "normal ecg"
    if s <= MINOR | SINUS:
        return "borderline ecg"
    return "abnormal ecg"


def statements(conds: list[str], rng: np.random.Generator, hr: float, flags: dict) -> list[str]:
    """Lower-case machine statements for a record (technical remarks from ``flags``)."""
    s = set(conds)
    rhythm = next(c for c in conds if c in RHYTHM)
    head = _pick(rng, RHYTHM[rhythm])
    if rhythm == "afib":
        head += " with rapid ventricular response" if hr > 100 else (
            " with slow ventricular response" if hr < 60 else _pick(rng, ["", " with controlled ventricular response"]))
    if rhythm == "aflutter" and flags.get("flutter_ratio"):
        head += f" with {flags['flutter_ratio']}"
    if rhythm == "avb3" and flags.get("escape"):
        head += " with junctional escape" if flags["escape"] == "junctional" else " with idioventricular escape"
    if rhythm == "sinus_brady" and hr < 45 and rng.random() < 0.5:
        head = "marked sinus bradycardia"
    out = [head]
    joined = False
    for c in WITH:
        if c in s:
            phrase = _pick(rng, WITH[c])
            if not joined and rhythm in SINUS | {"afib"} and rng.random() < 0.6:
                out[0] = f"{out[0]} with {phrase}"
                joined = True
            else:
                out.append(phrase)
    body: list[str] = []
    if {"rbbb", "lafb"} <= s and rng.random() < 0.5:
        body.append(_pick(rng, ["rbbb with left anterior fascicular block", "bifascicular block (rbbb + lafb)"]))
        s = s - {"rbbb", "lafb"}
    for c in conds:
        if c not in s or c in RHYTHM or c in WITH or c == "acute_mi":
            continue
        if c in MI_SITE:
            tmpl = MI_ACUTE if "acute_mi" in s else MI_OLD
            body.append(_pick(rng, tmpl).format(s=MI_SITE[c]))
            continue
        key = "_lvh_strain" if c == "lvh" and flags.get("lvh_strain") else c
        body.append(_pick(rng, STATEMENT[key]))
    body = [b for b in body if rng.random() > 0.04]  # the machine occasionally omits a finding
    if flags.get("arm_reversal"):
        body.append(_pick(rng, ["arm leads reversed", "possible arm lead reversal"]))
    if flags.get("dead_lead"):
        body.append(_pick(rng, ["lead {} off", "poor quality in lead {}"]).format(flags["dead_lead"].lower()))
    if flags.get("noisy"):
        body.append(_pick(rng, ["baseline wander", "artifact", "technically suboptimal study"]))
    out += body
    if rng.random() > 0.08:
        out.append(summary(conds))
    return out


def raw_mimic(stmts: list[str], rng: np.random.Generator, acute: bool) -> list[str]:
    """Statements as a cart prints them: capitalised, EKG spelling, *** critical flags."""
    out = []
    caps = rng.random() < 0.1
    ekg = rng.random() < 0.25
    for st in stmts:
        r = st.upper() if caps else st[:1].upper() + st[1:]
        r = re.sub(r"\bRbbb\b|\brbbb\b", "RBBB", r)
        r = re.sub(r"\bLbbb\b|\blbbb\b", "LBBB", r)
        r = re.sub(r"\bpvcs\b", "PVCs", r)
        r = re.sub(r"\bpacs\b", "PACs", r)
        if ekg:
            r = re.sub(r"\bECG\b|\bEcg\b|\becg\b", "EKG", r)
        out.append(r)
    if acute and rng.random() < 0.7:
        out.insert(len(out) - 1 if len(out) > 1 else len(out), "*** ACUTE MI ***")
    return out


def ptbxl_report(conds: list[str], stmts: list[str], rng: np.random.Generator) -> str:
    """PTB-XL ``report``: short lower-case free text, a third of them German-like."""
    if rng.random() < 0.33:
        words = [GERMAN[c] for c in conds if c in GERMAN]
        if words:
            verdict = {"normal ecg": "normales ekg", "borderline ecg": "grenzwertiges ekg"}.get(
                summary(conds), "pathologisches ekg")
            return " ".join(words + [verdict])
    return " ".join(s.replace(",", "") for s in stmts if not s.startswith("***"))

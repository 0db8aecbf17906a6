"""Machine-statement reports in several cart styles (MIMIC-IV-ECG fields, PTB-XL free text).

A model pretrained on one template learns the template. Real archives mix carts (GE/Marquette,
Philips, Mortara ...) whose statements differ in wording, abbreviations, order, summary lines
and quality remarks, plus archive noise (duplicated or truncated statements, "Unconfirmed"
stamps, "--- Abnormal ECG ---"). Each record draws a style and its variations.

Faithfulness: the generator decides every label and the report follows it. No finding is
omitted or invented; truncation only cuts a statement's qualifier (after the ``|`` marks in
the vocabulary); quality remarks name only nuisances the recording chain really added;
rate and interval criteria ("V-rate 50- 99", "QRSd >120") are printed only where the
record's measurements meet them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    "septal_hypertrophy": ["septal hypertrophy", "prominent septal forces|, consider septal hypertrophy"],
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
    "high_voltage": ["high qrs voltage", "prominent qrs voltage|, may be normal for age"],
    "low_voltage": ["low qrs voltages", "low voltage qrs", "generalized low qrs voltages"],
    "st_elevation": ["st elevation", "nonspecific st elevation", "diffuse st elevation",
                     "st elevation|, consider pericarditis or early repolarization"],
    "st_depression_lateral": ["lateral st depression", "st depression in lateral leads",
                              "lateral st-t changes| may be due to myocardial ischemia"],
    "st_depression_inferior": ["inferior st depression", "st depression in inferior leads",
                               "inferior st-t changes| may be due to myocardial ischemia"],
    "st_depression_inferolateral": ["inferior/lateral st depression",
                                    "inferolateral st-t changes| may be due to myocardial ischemia"],
    "st_depression_anterolateral": ["anterolateral st depression",
                                    "anterolateral st-t changes| may be due to myocardial ischemia"],
    "st_depression_diffuse": ["nonspecific st depression", "diffuse st depression", "nonspecific st abnormality"],
    "t_inversion_anterior": ["anterior t wave inversion", "t wave inversion in anterior leads",
                             "anterior t wave changes| may be due to myocardial ischemia"],
    "t_inversion_lateral": ["lateral t wave inversion", "t wave inversion in lateral leads",
                            "lateral t wave changes| may be due to myocardial ischemia"],
    "t_inversion_inferior": ["inferior t wave inversion", "t wave inversion in inferior leads",
                             "inferior t wave changes| may be due to myocardial ischemia"],
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
MI_OLD = ["{s} infarct| - age undetermined", "possible {s} infarct| - age undetermined",
          "{s} infarct|, old", "{s} q waves|, consider old infarct"]
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


GERMAN.update({
    "svt": "supraventrikulaere tachykardie", "atrial_tachy": "ektope atriale tachykardie",
    "avb3": "av-block iii. grades", "pr_borderline": "grenzwertige pq-zeit",
    "mobitz1": "av-block ii. grades typ wenckebach", "mobitz2": "av-block ii. grades typ mobitz",
    "bigeminy": "ventrikulaere extrasystole(n), bigeminus", "trigeminy": "ventrikulaere extrasystole(n), trigeminus",
    "ilbbb": "inkompletter linksschenkelblock", "ivcd": "unspezifische intraventrikulaere leitungsstoerung",
    "wpw": "wpw-syndrom", "lpfb": "linksposteriorer hemiblock", "septal_hypertrophy": "septumhypertrophie",
    "rvh": "rechtshypertrophie", "lae": "p-sinistrocardiale", "rae": "p-dextrocardiale",
    "high_voltage": "hohe qrs-amplituden", "ccw_rotation": "r-s uebergang in v ableitungen nach rechts verschoben",
    "cw_rotation": "r-s uebergang in v ableitungen nach links verschoben",
    "mi_anterior": "anteriorer infarkt alter unbestimmt", "mi_lateral": "lateraler infarkt alter unbestimmt",
    "mi_posterior": "posteriorer infarkt alter unbestimmt", "acute_mi": "infarkt wahrscheinlich frisch",
    "st_elevation": "st-hebung", "st_depression_lateral": "st-senkung lateral",
    "st_depression_inferior": "st-senkung inferior", "st_depression_inferolateral": "st-senkung inferolateral",
    "st_depression_anterolateral": "st-senkung anterolateral", "st_depression_diffuse": "unspezifische st-senkung",
    "t_inversion_anterior": "t negativ anterior", "t_inversion_lateral": "t negativ lateral",
    "t_inversion_inferior": "t negativ inferior", "t_inversion_anteroseptal": "t negativ anteroseptal",
    "t_inversion_nonspecific": "unspezifisches abnormales t", "low_t": "flaches t",
    "dig": "digitaliswirkung", "u_wave": "u-welle", "early_repol": "fruehe repolarisation",
})
SWEDISH = {  # PTB-XL's third language; a record uses it only if every finding has an entry
    "sinus_normal": "sinusrytm", "sinus_brady": "sinusbradykardi", "sinus_tachy": "sinustakykardi",
    "sinus_arrhythmia": "sinusarytmi", "afib": "fÖrmaksflimmer", "aflutter": "fÖrmaksfladder",
    "avb1": "a-v block i", "lbbb": "vÄnstersidigt skÄnkelblock", "rbbb": "hÖgersidigt skÄnkelblock",
    "irbbb": "inkomplett hÖgersidigt skÄnkelblock", "lafb": "vÄnster frÄmre hemiblock",
    "lvh": "vÄnster kammarhypertrofi", "pvc": "ventrikulÄr(a) extrasystoli(er)",
    "pac": "supraventrikulÄr(a) extrasystoli(er)", "low_voltage": "lÅga qrs amplituder i extremitetsavledningarna",
    "mi_inferior": "avvikande qrs(t) fÖrlopp    inferior infarkt     Ålder ej bestÄmmbar",
    "mi_anteroseptal": "avvikande qrs(t) fÖrlopp    anteroseptal infarkt     Ålder ej bestÄmmbar",
    "lad": "vÄnster el-axel", "rad": "hÖger el-axel", "long_qt": "qt fÖrlÄngd",
    "t_inversion_nonspecific": "ospecifik t-fÖrÄndring", "st_depression_diffuse": "ospecifik st-fÖrÄndring",
    "st_depression_anterolateral": "st-t sÄnkning, sÅsom vid    anterolateral ischemi eller vÄnster belastning",
    "low_t": "flacka t-vÅgor",
}
ENGLISH_PTBXL = {  # PTB-XL's narrative English (the machine statements are used otherwise)
    "lbbb": "left bundle branch block, this is most commonly due to    ischaemic heart disease",
    "lvh": "voltages are high in chest leads suggesting lvh",
    "_lvh_strain": "left ventricular hypertrophy with repolarisation abnormality, this may be due to lv strain",
    "st_depression_lateral": "st segments are depressed in i, avl, v5,6. this may be due to lv strain or ischaemia",
    "st_depression_inferolateral": "st segment depression in inferolateral leads suggests ischaemia or left"
                                   " ventricular strain",
    "mi_inferior": "q waves in ii, iii, avf consistent with old inferior    myocardial infarction",
    "mi_anteroseptal": "qs complexes in v2 suggesting old anteroseptal infarct",
    "t_inversion_nonspecific": "non-specific t wave flattening or slight inversion",
    "low_t": "minor non-specific t wave flattening",
    "low_voltage": "low limb lead voltage",
    "long_qt": "prolonged qt, this may be due to a drug effect or an    electrolyte disturbance",
    "irbbb": "incomplete right bundle branch block, this is probably    a normal variant",
    "pvc": "premature ventricular contraction(s)", "pac": "premature atrial contraction(s)",
}

STYLES = {"ge": 0.35, "philips": 0.25, "mortara": 0.2, "plain": 0.2}  # cart-like styles and their shares
# Style-specific phrasings, drawn with probability 0.7 where a style has them.
STYLE_STATEMENT: dict[str, dict[str, list[str]]] = {
    "ge": {
        "sinus_normal": ["normal sinus rhythm"], "sinus_arrhythmia": ["sinus rhythm with marked sinus arrhythmia"],
        "avb3": ["sinus rhythm with complete heart block"], "paced": ["electronic ventricular pacemaker"],
        "ivcd": ["nonspecific intraventricular conduction delay"], "lae": ["possible left atrial enlargement"],
        "lvh": ["voltage criteria for left ventricular hypertrophy"],
        "_lvh_strain": ["left ventricular hypertrophy with repolarization abnormality"],
        "st_depression_diffuse": ["nonspecific st abnormality"], "t_inversion_nonspecific": ["nonspecific t wave abnormality"],
        "low_voltage": ["low voltage qrs"], "ccw_rotation": ["early r wave progression"],
        "cw_rotation": ["poor r wave progression|, probable normal variant"],
        "long_qt": ["prolonged qt"], "pvc": ["premature ventricular complexes"], "pac": ["premature atrial complexes"],
    },
    "philips": {
        "sinus_normal": ["sinus rhythm"], "svt": ["supraventricular tachycardia"], "paced": ["ventricular-paced rhythm"],
        "avb1": ["prolonged pr interval"], "lae": ["probable left atrial enlargement"],
        "ivcd": ["intraventricular conduction delay"], "lvh": ["left ventricular hypertrophy"],
        "_lvh_strain": ["lvh with secondary repolarization abnormality"],
        "low_voltage": ["low voltage, extremity and precordial leads"],
        "t_inversion_lateral": ["abnormal t, consider ischemia, lateral leads"],
        "t_inversion_anterior": ["abnormal t, consider ischemia, anterior leads"],
        "t_inversion_inferior": ["abnormal t, consider ischemia, inferior leads"],
        "t_inversion_nonspecific": ["nonspecific t abnormalities, diffuse leads"],
        "st_depression_lateral": ["st depression, lateral leads"], "st_depression_inferior": ["st depression, inferior leads"],
        "st_depression_diffuse": ["nonspecific st depression, diffuse leads"], "long_qt": ["prolonged qt interval"],
        "pvc": ["multiple ventricular premature complexes"], "pac": ["atrial premature complexes"],
        "lafb": ["left anterior fascicular block"], "rad": ["right axis deviation"], "lad": ["left axis deviation"],
    },
    "mortara": {
        "avb1": ["first degree av block", "1st degree av block"], "pvc": ["ventricular premature complex(es)"],
        "pac": ["atrial premature complex(es)"], "lvh": ["lvh by voltage criteria"],
        "t_inversion_nonspecific": ["t wave abnormalities, nonspecific"], "st_depression_diffuse": ["st depression, nonspecific"],
        "lad": ["leftward axis", "left axis deviation"], "low_t": ["flat t waves"],
    },
}
STYLE_MI_OLD = {"ge": ["{s} infarct| , age undetermined", "cannot rule out {s} infarct| , age undetermined"],
                "philips": ["{s} infarct|, old", "{s} infarct|, age indeterminate"],
                "mortara": ["{s} myocardial infarction|, age undetermined", "possible {s} myocardial infarction"]}
SUMMARY = {
    "normal": {"ge": ["normal ecg"], "philips": ["- normal ecg -", "normal ecg"],
               "mortara": ["normal ecg", "within normal limits"], "plain": ["normal ecg"]},
    "borderline": {"ge": ["borderline ecg", "otherwise normal ecg"], "philips": ["- borderline ecg -", "borderline ecg"],
                   "mortara": ["borderline ecg"], "plain": ["borderline ecg"]},
    "abnormal": {"ge": ["abnormal ecg"], "philips": ["- abnormal ecg -", "abnormal ecg"], "mortara": ["abnormal ecg"],
                 "plain": ["abnormal ecg"]},
}
# Section order of the findings after the rhythm, per style (vendors print them differently).
SECTION = {**dict.fromkeys(("lad", "rad", "ccw_rotation", "cw_rotation"), "axis"),
           **dict.fromkeys(("lbbb", "ilbbb", "rbbb", "irbbb", "ivcd", "wpw", "lafb", "lpfb"), "conduction"),
           **dict.fromkeys(("lvh", "rvh", "lae", "rae", "high_voltage", "low_voltage", "septal_hypertrophy"), "chamber"),
           **dict.fromkeys(MI_SITE, "infarct")}
SECTION_ORDER = {"ge": ("conduction", "axis", "chamber", "infarct", "stt"),
                 "philips": ("axis", "conduction", "chamber", "infarct", "stt"),
                 "mortara": ("conduction", "chamber", "axis", "stt", "infarct"),
                 "plain": ("conduction", "axis", "chamber", "infarct", "stt")}
TECHNICAL = {
    "arm_reversal": ["--- suspect arm lead reversal|, interpretation assumes no reversal", "arm leads reversed",
                     "possible arm lead reversal"],
    "precordial_swap": ["possible precordial lead reversal|, check electrode placement",
                        "suspect {a}/{b} lead reversal"],
    "dead_lead": ["lead {} off", "poor quality in lead {}", "--- no further analysis of lead {} ---"],
    "wander": ["baseline wander", "baseline drift"],
    "artifact": ["artifact", "motion artifact", "--- warning: data quality| may affect interpretation ---",
                 "technically suboptimal study"],
    "muscle": ["muscle tremor artifact", "somatic tremor"],
    "mains": ["{hz} hz interference", "ac noise"],
}
UNCONFIRMED = ["unconfirmed", "unconfirmed report", "unconfirmed diagnosis"]
P_UNCONFIRMED = {"ge": 0.1, "philips": 0.2, "mortara": 0.5, "plain": 0.0}
P_UPPER = {"ge": 0.05, "philips": 0.05, "mortara": 0.4, "plain": 0.1}
ABBREVIATIONS = [  # applied together to a quarter of the records
    ("left bundle branch block", "lbbb"), ("right bundle branch block", "rbbb"),
    ("left anterior fascicular block", "lafb"), ("left posterior fascicular block", "lpfb"),
    ("left ventricular hypertrophy", "lvh"), ("right ventricular hypertrophy", "rvh"),
    ("intraventricular conduction delay", "ivcd"), ("premature ventricular complexes", "pvcs"),
    ("premature atrial complexes", "pacs"), ("left atrial enlargement", "lae"), ("right atrial enlargement", "rae"),
    ("1st degree a-v block", "1st deg avb"), ("first degree av block", "1st degree avb"), (" with ", " w/ "),
    ("atrial fibrillation", "afib"), ("supraventricular tachycardia", "svt"), ("abnormality", "abnl"),
    ("infarct", "mi"), ("ventricular response", "vr"),
]
_ABBREV_RE = [(re.compile(rf"(?<![a-z]){re.escape(a.strip())}(?![a-z])" if a.strip() == a else re.escape(a)),
               b) for a, b in ABBREVIATIONS]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def summary(conds: list[str]) -> str:
    s = set(conds)
    if s == {"sinus_normal"}:
        return "normal ecg"
    if s <= MINOR | SINUS:
        return "borderline ecg"
    return "abnormal ecg"


def _phrase(rng, style: str, key: str, base: list[str]) -> str:
    own = STYLE_STATEMENT.get(style, {}).get(key)
    return _pick(rng, own if own and rng.random() < 0.7 else base)


def _criteria(c: str, m: dict) -> str | None:
    """Philips-style criteria text for a finding, only where the measurements meet it."""
    hr, qrs, axis, p_axis = m.get("hr") or 0, m.get("qrs_ms") or 0, m.get("qrs_axis"), m.get("p_axis")
    if c == "sinus_normal" and 50 <= hr < 100 and p_axis is not None and 0 <= p_axis <= 75:
        return "normal p axis, v-rate 50- 99"
    if c == "sinus_brady" and hr < 60:
        return "v-rate < 60"
    if c == "sinus_tachy" and hr > 100:
        return "v-rate > 99"
    if c in ("lbbb", "rbbb") and qrs >= 120:
        return f"qrsd >120, terminal qrs directed to {'left' if c == 'lbbb' else 'right'}"
    if c == "avb1" and (m.get("pr_ms") or 0) > 210:
        return "pr >210"
    if c in ("lad", "lafb") and axis is not None and axis < (-45 if c == "lafb" else -30):
        return f"qrs axis < {-45 if c == 'lafb' else -30}"
    if c == "rad" and axis is not None and axis > 90:
        return "qrs axis > 90"
    return None


def _with_criteria(text: str, c: str, m: dict, rng) -> str:
    crit = _criteria(c, m)
    if crit is None:
        return text
    return f"{text}|{'.' * int(rng.integers(3, 16))}{crit}"


def _rhythm_head(rhythm: str, style: str, rng: np.random.Generator, m: dict, flags: dict) -> str:
    hr = m.get("hr") or 0
    head = _phrase(rng, style, rhythm, RHYTHM[rhythm])
    if rhythm == "afib":
        head += " with rapid ventricular response" if hr > 100 else (
            " with slow ventricular response" if hr < 60 else _pick(rng, ["", " with controlled ventricular response"]))
    if rhythm == "aflutter" and flags.get("flutter_ratio"):
        head += f" with {flags['flutter_ratio']}"
    if rhythm == "avb3" and flags.get("escape"):
        head += " with junctional escape" if flags["escape"] == "junctional" else " with idioventricular escape"
    if rhythm == "sinus_brady" and hr < 45 and rng.random() < 0.5:
        head = "marked sinus bradycardia"
    return head


def _technical(flags: dict, style: str, rng) -> list[str]:
    out = []
    if flags.get("arm_reversal") and rng.random() < 0.85:
        out.append(_pick(rng, TECHNICAL["arm_reversal"]))
    if flags.get("precordial_swap") and rng.random() < 0.3:
        a, b = flags["precordial_swap"].lower().split("-")
        out.append(_pick(rng, TECHNICAL["precordial_swap"]).format(a=a, b=b))
    if flags.get("dead_lead"):
        out.append(_pick(rng, TECHNICAL["dead_lead"]).format(flags["dead_lead"].lower()))
    for kind in ("wander", "artifact", "muscle", "mains"):
        if kind in flags.get("noise", ()) and rng.random() < 0.5:
            out.append(_pick(rng, TECHNICAL[kind]).format(hz=flags.get("mains_hz", 60)))
    return out


def _summary_line(conds: list[str], style: str, rng) -> str:
    kind = summary(conds).split()[0]
    line = _pick(rng, SUMMARY[kind][style])
    if set(conds) in ({"sinus_brady"}, {"sinus_tachy"}) and style == "ge" and rng.random() < 0.5:
        line = "normal ecg except for rate"
    if kind == "abnormal" and rng.random() < 0.1:
        line = "--- abnormal ecg ---"
    return line


@dataclass
class Report:
    """A record's machine statements (lower case, ``|`` marks stripped) and their style."""

    statements: list[str]
    style: str


def compose(conds: list[str], rng: np.random.Generator, measurements: dict, flags: dict) -> Report:
    """Statements of one record in a drawn cart style, every finding stated once or twice."""
    names = list(STYLES)
    style = names[int(rng.choice(len(names), p=list(STYLES.values())))]
    s = set(conds)
    rhythm = next(c for c in conds if c in RHYTHM)
    out = [_rhythm_head(rhythm, style, rng, measurements, flags)]
    joined = False
    for c in WITH:
        if c in s:
            phrase = _phrase(rng, style, c, WITH[c])
            if not joined and rhythm in SINUS | {"afib"} and rng.random() < 0.6:
                out[0] = f"{out[0]} with {phrase}"
                joined = True
            else:
                out.append(_with_criteria(phrase, c, measurements, rng) if style == "philips" else phrase)
    if style == "philips" and " with " not in out[0] and rng.random() < 0.6:
        out[0] = _with_criteria(out[0], rhythm, measurements, rng)
    sections: dict[str, list[str]] = {k: [] for k in SECTION_ORDER[style]}
    if {"rbbb", "lafb"} <= s and rng.random() < 0.5:
        sections["conduction"].append(_pick(rng, ["rbbb with left anterior fascicular block",
                                                  "bifascicular block (rbbb + lafb)", "rbbb and lafb"]))
        s = s - {"rbbb", "lafb"}
    for c in conds:
        if c not in s or c in RHYTHM or c in WITH or c == "acute_mi":
            continue
        if c in MI_SITE:
            tmpl = MI_ACUTE if "acute_mi" in s else STYLE_MI_OLD.get(style, MI_OLD) if rng.random() < 0.6 else MI_OLD
            text = _pick(rng, tmpl).format(s=MI_SITE[c])
        else:
            key = "_lvh_strain" if c == "lvh" and flags.get("lvh_strain") else c
            text = _phrase(rng, style, key, STATEMENT[key])
            if style == "philips":
                text = _with_criteria(text, c, measurements, rng)
        sections[SECTION.get(c, "stt")].append(text)
    body = [x for k in SECTION_ORDER[style] for x in sections[k]]
    if rng.random() < 0.1:  # archives re-order statements (edited reports, merged fields)
        body = [body[i] for i in rng.permutation(len(body))]
    tech = _technical(flags, style, rng)
    tech_first = style == "ge" and rng.random() < 0.5
    out = (tech if tech_first else []) + out + body + ([] if tech_first else tech)
    if rng.random() > 0.08:
        out.append(_summary_line(conds, style, rng))
    if rng.random() < P_UNCONFIRMED[style]:
        out.insert(0 if rng.random() < 0.3 else len(out), _pick(rng, UNCONFIRMED))
    if len(out) > 1 and rng.random() < 0.04:  # a statement printed twice
        k = int(rng.integers(len(out)))
        out.insert(k + 1, out[k])
    cut = [k for k, x in enumerate(out) if "|" in x]
    if cut and rng.random() < 0.08:  # a field cut off mid-qualifier
        k = cut[int(rng.integers(len(cut)))]
        keep, tail = out[k].split("|", 1)
        out[k] = (keep + tail[: int(rng.integers(0, len(tail)))]).rstrip(" ,-.")
    out = [x.replace("|", "") for x in out]
    if style != "philips" and rng.random() < 0.25:
        out = [_abbreviate(x) for x in out]
    return Report(out, style)


def _abbreviate(x: str) -> str:
    for long, short in _ABBREV_RE:
        x = long.sub(short, x)
    return x


def raw_mimic(stmts: list[str], rng: np.random.Generator, acute: bool, style: str = "plain") -> list[str]:
    """Statements as a cart prints them: capitalised, EKG spelling, *** critical flags."""
    out = []
    caps = rng.random() < P_UPPER[style]
    ekg = rng.random() < 0.25
    for st in stmts:
        r = st.upper() if caps else st[:1].upper() + st[1:]
        if r.startswith("--- ") or r.startswith("- "):
            lead = r.index(" ") + 1
            r = r[:lead] + r[lead:lead + 1].upper() + r[lead + 1:]
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


def ptbxl_report(conds: list[str], stmts: list[str], rng: np.random.Generator, flags: dict | None = None) -> str:
    """PTB-XL ``report``: German (most), Swedish or English free text as in the real table,
    with its whitespace runs, "unbestaetigter bericht" stamps and 250-character cut."""
    flags = flags or {}
    verdict = summary(conds)
    r = rng.random()
    if r < 0.45:
        words = [GERMAN[c] for c in conds if c in GERMAN]
        v = {"normal ecg": "normales ekg", "borderline ecg": "sonst normales ekg"}.get(verdict, "pathologisches ekg")
        text = " ".join(words + [v] + (["unbestaetigter bericht"] if rng.random() < 0.15 else []))
    elif r < 0.6 and all(c in SWEDISH for c in conds):
        words = [SWEDISH[c] for c in conds]
        v = {"normal ecg": "normalt ekg", "borderline ecg": "eljest normalt ekg"}.get(verdict, "")
        text = " ".join(words + ([v] if v else []))
    else:
        text = _english_ptbxl(conds, rng, flags)
        if len(text) > 250 and rng.random() < 0.5:
            text = text[:250]
    return text


def _english_ptbxl(conds: list[str], rng: np.random.Generator, flags: dict) -> str:
    """PTB-XL's English: one sentence per finding, some in its narrative phrasing."""
    parts = []
    for c in conds:
        if c == "acute_mi":
            continue
        key = "_lvh_strain" if c == "lvh" and flags.get("lvh_strain") else c
        if key in ENGLISH_PTBXL and rng.random() < 0.6 and not (c in MI_SITE and "acute_mi" in conds):  # "old"
            parts.append(ENGLISH_PTBXL[key])
        elif c in MI_SITE:
            parts.append(_pick(rng, MI_ACUTE if "acute_mi" in conds else MI_OLD).format(s=MI_SITE[c]))
        else:
            parts.append(_pick(rng, RHYTHM.get(key) or WITH.get(key) or STATEMENT[key]))
    verdict = summary(conds)
    if verdict == "normal ecg":
        parts.append(_pick(rng, ["normal ecg", "no definite pathology"]))
    elif verdict == "borderline ecg" and rng.random() < 0.5:
        parts.append("otherwise normal ecg")
    return ". ".join(x.replace("|", "") for x in parts) + "."

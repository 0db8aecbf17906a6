"""One synthetic ECG-report record in memory: conditions -> beats -> signal -> report, labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from merl.training.data.reports import clean_mimic_report

from . import labels as L
from .acquisition import (
    PRECORDIAL,
    apply_faults,
    chain_events,
    digitize_chain,
    draw_faults,
    misplace_high_v1v2,
    record_chain,
    technical_remarks,
)
from .conditions import order, sample_conditions
from .morphology import Person, Template, ectopic_template, p_wave, ventricular_template
from .noise import atrial_baseline
from .reports import compose, ptbxl_report, raw_mimic
from .rhythm import CONDUCTED, ESCAPE_J, ESCAPE_V, PACED, PVC, Timeline, simulate
from .waves import FS, QRS, T, U, Waves, limb_leads, render_waves

# Class mix of the CPSC2018 training set (records per class, of 6,877): the CPSC layout
# draws a class with these weights, then conditions from the general prior that carry it.
CPSC_CLASS_COUNTS = {"NORM": 918, "AFIB": 1221, "1AVB": 722, "CLBBB": 236, "CRBBB": 1857, "PAC": 616,
                     "VPC": 700, "STD": 869, "STE": 220}
PRIORS = ("general", "cpsc", "csn")


def draw_conditions(rng: np.random.Generator, prior: str = "general") -> list[str]:
    """Conditions of one record under a dataset's prior (rejection from the general prior,
    so co-occurrence stays clinically consistent)."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {list(PRIORS)}")
    if prior == "cpsc":
        names = list(CPSC_CLASS_COUNTS)
        w = np.array([CPSC_CLASS_COUNTS[k] for k in names], dtype=float)
        target = names[int(rng.choice(len(names), p=w / w.sum()))]
        while target not in L.cpsc_labels(conds := sample_conditions(rng)):
            pass
        return conds
    conds = sample_conditions(rng)
    while prior == "csn" and not L.csn_labels(conds):  # CSN has no record without a label
        conds = sample_conditions(rng)
    return conds


@dataclass
class SynthRecord:
    """A generated record: canonical-order 12-lead signal in mV plus report and labels."""

    signal_mv: np.ndarray  # (12, n) float32, I, II, III, aVR, aVL, aVF, V1..V6
    fs: int
    conditions: list[str]
    report: str  # raw statements cleaned by the ingest's MIMIC cleaning (reference rules)
    statements: list[str]  # raw machine statements (MIMIC report_0..report_17)
    ptbxl_report: str
    scp: dict[str, float]
    cpsc: list[str]
    csn: list[str]
    snomed: list[str]
    age: float
    sex: str  # "M" | "F"
    patient_id: str
    measurements: dict[str, float | None]
    heart_axis: str
    nuisances: list[str] = field(default_factory=list)
    report_style: str = ""  # cart-like statement style (reports.STYLES)
    acquisition: dict = field(default_factory=dict)  # the recording chain (Acquisition.to_dict); {} if clean


def _frontal_axis(w: Waves, groups: tuple[int, ...]) -> float | None:
    """Frontal-plane axis (deg) of the net area of the waves in ``groups``."""
    m = np.isin(w.group, groups)
    if not m.any():
        return None
    area = (w.vec[m] * w.sigma[m, None]).sum(axis=0)
    return float(np.degrees(np.arctan2(area[1], area[0])))


def _tile(tmpl: Waves, onsets: np.ndarray, qt_shift: np.ndarray | None = None):
    """Place a template at each onset; T/U waves move with each beat's QT."""
    t = onsets[:, None] + tmpl.t[None, :]
    if qt_shift is not None:
        t = t + qt_shift[:, None] * np.isin(tmpl.group, (T, U))[None, :]
    return (t.ravel(), np.tile(tmpl.sigma, len(onsets)), np.tile(tmpl.vec, (len(onsets), 1)),
            np.tile(tmpl.group, len(onsets)))


def _beats(tl: Timeline, normal: Template, p_waves: tuple[Waves, Waves], person: Person, rng) -> Waves:
    parts = []
    v, kind = tl.v_on, tl.v_kind
    rr_prev = np.diff(v, prepend=v[0] - (np.mean(np.diff(v)) if len(v) > 1 else 1.0))
    rr_prev = np.clip(rr_prev, 0.3, 2.5)
    by_kind: dict[int, Template] = {CONDUCTED: normal, ESCAPE_J: normal}
    if np.isin(kind, (PVC, ESCAPE_V)).any():
        by_kind[PVC] = by_kind[ESCAPE_V] = ectopic_template(person, rng, "pvc")
    if (kind == PACED).any():
        by_kind[PACED] = ectopic_template(person, rng, "paced")
    for k in np.unique(kind):
        tmpl = by_kind[int(k)]
        m = kind == k
        qt = tmpl.qt_ms / 1000.0
        parts.append(_tile(tmpl.waves, v[m], qt * rr_prev[m] ** (1 / 3) - qt))
    if len(tl.p_on):
        for ect in (False, True):
            m = tl.p_ectopic == ect
            if m.any():
                parts.append(_tile(p_waves[int(ect)], tl.p_on[m]))
    t, s, vec, g = (np.concatenate(x) for x in zip(*parts))
    return Waves(t, s, vec, g)


def generate_record(
    rng: np.random.Generator,
    conditions: list[str] | None = None,
    duration_s: float = 10.0,
    noise: bool = True,
    age: float | None = None,
    sex: str | None = None,
    patient_id: str = "",
    prior: str = "general",
    nuisance_rate: float = 0.01,
    fs: int = FS,
    realism: float = 1.0,
) -> SynthRecord:
    """Generate one record (pure: everything random comes from ``rng``).

    ``conditions`` fixes the findings (else drawn from ``prior``: ``general``, ``cpsc`` for
    the CPSC2018 class mix, ``csn`` for labelled records only). ``noise=False`` gives the
    clean signal (for measuring morphology: no recording chain at all); ``nuisance_rate`` is
    the chance of each electrode fault (arm or LA/LL reversal, swapped chest electrodes, V1-V2
    placed high, a detached chest electrode); ``realism`` scales the rates of the occasional
    recording nuisances (:data:`.acquisition.RATES`; 0: none of them); ``fs`` is the sampling
    rate the record is rendered and acquired at.
    """
    if conditions is None:
        conds = draw_conditions(rng, prior)
    else:
        conds = order(conditions)
    cset = set(conds)
    flags: dict = {"lvh_strain": "lvh" in cset and rng.random() < 0.6}
    mset = cset | ({"_lvh_strain"} if flags["lvh_strain"] else set())
    age = float(age if age is not None else int(np.clip(rng.normal(62, 16), 18, 95)))
    sex = sex if sex is not None else ("M" if rng.random() < 0.52 else "F")
    person = Person.sample(rng, age, sex)
    normal = ventricular_template(mset, person, rng)
    tl = simulate(cset, person.pr_ms, duration_s, rng)
    n = int(round(duration_s * fs))
    p_tmpl = p_wave(person, cset, rng)
    waves = _beats(tl, normal, (p_tmpl, p_wave(person, cset, rng, ectopic=True)), person, rng)
    keep = (waves.t > -1.0) & (waves.t < duration_s + 1.0)
    # electrode faults and the recording chain draw from their own streams: switching
    # them off or on never changes the heart (tests compare the two)
    faults = draw_faults(rng, nuisance_rate)
    chain_seed = int(rng.integers(2**62))
    leads = person.leads
    if "high_v1v2" in faults:
        leads = misplace_high_v1v2(leads, np.random.default_rng([chain_seed, 9]))
    sig8 = render_waves(waves.select(keep), leads, n, fs)
    if tl.atrial in ("af", "flutter"):
        d, wave = atrial_baseline(tl.atrial, tl.atrial_rate, n, rng, fs)
        sig8 += np.outer(leads @ d, wave)

    acq = record_chain(sig8, fs, chain_seed, realism) if noise else None
    nuisances = apply_faults(sig8, faults, np.random.default_rng([chain_seed, 10]))
    if acq is not None:
        sig8 = digitize_chain(sig8, acq)
        nuisances += chain_events(acq)
        flags["noise"] = technical_remarks(acq)
        flags["mains_hz"] = acq.mains_hz
    flags["arm_reversal"] = "arm_reversal" in faults
    flags["precordial_swap"] = next((x.split(":")[1] for x in nuisances if x.startswith("precordial_swap")), None)
    if "lead_off" in faults:
        flags["dead_lead"] = PRECORDIAL[faults["lead_off"]]
    signal = limb_leads(sig8.astype(np.float32))

    in_rec = tl.v_on[(tl.v_on >= 0) & (tl.v_on < duration_s)]
    rr = float(np.mean(np.diff(in_rec))) if len(in_rec) > 1 else 60.0 / 50
    hr = 60.0 / rr
    if tl.atrial == "flutter":
        per = 60.0 / tl.atrial_rate
        cv = np.std(np.diff(in_rec)) / rr if len(in_rec) > 2 else 0.0
        flags["flutter_ratio"] = "variable a-v block" if cv > 0.08 else f"{int(round(rr / per))}:1 a-v conduction"
    flags["escape"] = tl.escape
    qt = normal.qt_ms * rr ** (1 / 3)
    has_p = tl.atrial == "sinus"
    measurements = {
        "hr": hr, "rr_ms": rr * 1000.0, "pr_ms": tl.pr_ms if has_p and tl.pr_ms else None,
        "p_ms": float(p_tmpl.t.max() * 1000 + 2.5 * p_tmpl.sigma.max() * 1000) if has_p else None,
        "qrs_ms": normal.qrs_ms, "qt_ms": qt,
        "p_axis": _frontal_axis(p_tmpl, (QRS,)) if has_p else None,
        "qrs_axis": _frontal_axis(normal.waves, (QRS,)), "t_axis": _frontal_axis(normal.waves, (T,)),
    }
    if "paced" in cset:
        measurements["qrs_axis"] = None
    rep = compose(conds, rng, measurements, flags)
    raw = raw_mimic(rep.statements, rng, acute="acute_mi" in cset, style=rep.style)
    csn = L.csn_labels(conds, tl.escape)
    return SynthRecord(
        signal_mv=signal,
        fs=fs,
        conditions=conds,
        report=clean_mimic_report(raw),
        statements=raw,
        ptbxl_report=ptbxl_report(conds, rep.statements, rng, flags),
        report_style=rep.style,
        scp=L.scp_codes(conds, rng),
        cpsc=L.cpsc_labels(conds),
        csn=csn,
        snomed=L.snomed_codes(csn),
        age=age,
        sex=sex,
        patient_id=patient_id,
        measurements=measurements,
        heart_axis=L.heart_axis(measurements["qrs_axis"] if measurements["qrs_axis"] is not None else 60.0),
        nuisances=nuisances,
        acquisition=acq.to_dict() if acq is not None else {},
    )

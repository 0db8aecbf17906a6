"""Beat templates (P, QRS, ST, T, U as dipole waves) for a person and their conditions.

The ventricular template of a record is built once: a normal activation sequence (septal,
main left-ventricular and terminal basal forces) modified by each condition where the
physiology says so (bundle-branch blocks reorder and slow activation, infarcts remove the
forces facing the scar, hypertrophy enlarges them, ischaemia adds an injury current...).
Clinical criteria that are defined on the signal (QRS >= 120 ms for complete BBB,
Sokolow-Lyon voltage for LVH, low limb voltage) are *enforced by measuring the rendered
template*, not assumed from the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .waves import FS, QRS, SPIKE, ST, T, U, Waves, direction, lead_matrix, limb_leads, render_waves

# Leads in the rendered 12-lead template (canonical order).
_I, _II, _III, _AVR, _AVL, _AVF, _V1, _V2, _V3, _V4, _V5, _V6 = range(12)

# Outward normal of each myocardial territory (the direction a lead must face to see it).
TERRITORY = {
    "inferior": direction(90, 0.0),
    "anterior": direction(20, 0.85),
    "anteroseptal": direction(60, 0.9),
    "lateral": direction(-15, -0.2),
    "posterior": direction(40, -0.95),
    "anterolateral": direction(0, 0.6),
    "inferolateral": direction(45, -0.1),
}


@dataclass
class Person:
    """Per-person physiology: axis, amplitudes, intervals, electrode geometry."""

    axis: float  # frontal QRS axis, deg
    qrs_amp: float
    qrs_z: float  # posterior tilt of the main LV force
    qrs_ms: float
    qtc_ms: float
    t_amp: float
    p_amp: float
    pr_ms: float
    leads: np.ndarray  # (8, 3)
    apex: float = 0.5  # early antero-apical LV force relative to the main force (R-wave progression)

    @staticmethod
    def sample(rng: np.random.Generator, age: float = 55.0, sex: str = "M") -> Person:
        """A person of that age and sex: the population differences real ECGs show (men:
        wider QRS, taller voltages; women: longer QTc, lower T; age: leftward axis, longer
        PR, lower voltage) plus body habitus scaling every amplitude (chest wall, obesity)."""
        male = sex == "M"
        a = float(np.clip(age, 18, 95)) - 55.0
        habitus = float(np.clip(rng.lognormal(0.0, 0.22), 0.6, 1.6))
        volt = habitus * (1.1 if male else 0.94) * (1.0 - 0.004 * a)
        return Person(
            axis=float(np.clip(rng.normal(45 - 0.35 * a, 16), -10, 75)),
            qrs_amp=float(rng.uniform(0.8, 1.4) * volt),
            qrs_z=float(rng.uniform(-0.55, -0.3)),
            qrs_ms=float(rng.uniform(80, 97) + (5.0 if male else 0.0)),
            qtc_ms=float(np.clip(rng.uniform(380, 428) + (0.0 if male else 12.0) + 0.15 * a, 375, 450)),
            t_amp=float(rng.uniform(0.25, 0.5) * habitus * (1.0 if male else 0.85) * (1.0 - 0.003 * a)),
            p_amp=float(rng.uniform(0.1, 0.19) * min(habitus, 1.2)),
            pr_ms=float(np.clip(rng.uniform(125, 180) + 0.3 * a, 120, 195)),
            leads=lead_matrix(rng),
            apex=float(rng.uniform(0.35, 0.75)),
        )


@dataclass
class Template:
    """Waves of one beat with times relative to the measured QRS onset (s)."""

    waves: Waves
    qrs_ms: float
    qt_ms: float  # QRS onset to T end at RR = 1 s


def measure_qrs(waves: Waves, leads: np.ndarray, frac: float = 0.1) -> tuple[float, float]:
    """(onset, offset) in s of the QRS: where the spatial magnitude over the eight
    independent leads exceeds ``frac`` of its peak (as a measuring cart would see it)."""
    q = waves.select(np.isin(waves.group, (QRS,)))
    grid = np.arange(-0.3, 0.4, 1.0 / FS)
    g = np.exp(-0.5 * ((grid[None, :] - q.t[:, None]) / q.sigma[:, None]) ** 2)
    mag = np.linalg.norm(leads @ (q.vec.T @ g), axis=0)
    above = np.flatnonzero(mag > frac * mag.max())
    return float(grid[above[0]]), float(grid[above[-1]])


def render_template(waves: Waves, leads: np.ndarray, pre: float = 0.3, n: int = 500) -> np.ndarray:
    """12-lead rendering of a template on its own (onset at ``pre`` s)."""
    shifted = Waves(waves.t + pre, waves.sigma, waves.vec, waves.group)
    return limb_leads(render_waves(shifted, leads, n))


def _t_waves(qt: float, amp: float, vec: np.ndarray) -> list:
    """Asymmetric T: slow upstroke, faster downstroke ending at ``qt`` (ms)."""
    s2 = 38.0
    c2 = qt - 2.4 * s2
    return [(c2 - 40.0, 48.0, 0.55 * amp * vec, T), (c2, s2, 0.6 * amp * vec, T)]


def _st_waves(j: float, vec: np.ndarray) -> list:
    """A plateau-like ST shift starting at the J point (ms)."""
    return [(j + 35.0, 30.0, 0.8 * vec, ST), (j + 95.0, 38.0, 0.7 * vec, ST)]


def _normal_qrs(main: np.ndarray, amp: float, axis: float, apex: float) -> list:
    """Normal activation: septum left-to-right, LV free wall along the axis, basal forces,
    and an early antero-apical force: the loop opens anteriorly before swinging posterior,
    so V2-V4 see a tall R *and* a deep S (the large transition-lead swings of real ECGs)."""
    return [
        (14.0, 6.0, 0.22 * direction(165, 0.6), QRS),  # septal, left-to-right
        (46.0, 11.0, amp * main, QRS),  # left-ventricular free wall
        (72.0, 8.0, 0.33 * direction(-120, -0.5), QRS),  # basal terminal forces
        (32.0, 9.0, apex * amp * direction(axis - 10, 0.55), QRS),  # antero-apical (index _APEX)
    ]


_APEX = 3  # index of the antero-apical force in _normal_qrs


def ventricular_template(conds: set[str], p: Person, rng: np.random.Generator) -> Template:
    """Conducted (supraventricular) beat of a person with the given conditions."""
    u = rng.uniform
    axis = p.axis
    if "lad" in conds:
        axis = u(-60, -32)
    if "rad" in conds:
        axis = u(95, 140)
    if "lafb" in conds:
        axis = u(-80, -47)
    if "lpfb" in conds:
        axis = u(100, 150)
    if "rvh" in conds:
        axis = u(100, 150)
    z = p.qrs_z
    if "ccw_rotation" in conds:
        z = u(-0.15, 0.0)
    if "cw_rotation" in conds:
        z = u(-0.8, -0.65)
    main = direction(axis, z)
    amp = p.qrs_amp
    items = _normal_qrs(main, amp, axis, p.apex)
    target_qrs = p.qrs_ms
    t_vec = direction(axis - 10 + u(-15, 15), 0.35)
    t_amp = p.t_amp
    st_items: list = []
    extra_t: list = []

    if "septal_hypertrophy" in conds:  # thick septum: tall r in V1-V2, deep narrow q in I, aVL, V5-V6
        items[0] = (16.0, 7.0, u(0.6, 0.85) * direction(170, 0.6), QRS)
    if "lafb" in conds:
        items[0] = (14.0, 7.0, 0.25 * direction(110, 0.2), QRS)  # initial inferior-rightward: q in I/aVL
        target_qrs = u(95, 112)
    if "lpfb" in conds:
        items[0] = (14.0, 7.0, 0.25 * direction(-60, 0.2), QRS)  # initial superior: q in III/aVF
        target_qrs = u(95, 112)
    if "lbbb" in conds or "ilbbb" in conds:
        ax = min(axis, u(-20, 50))
        lb = direction(ax, -0.6)
        items = [
            (18.0, 9.0, 0.35 * direction(15, -0.2), QRS),  # septum from the left: no septal q
            (60.0, 20.0, amp * 1.05 * lb, QRS),
            (108.0, 16.0, amp * 0.6 * direction(ax - 15, -0.5), QRS),  # notched broad R
        ]
        target_qrs = u(130, 170) if "lbbb" in conds else u(110, 119)
        t_vec, t_amp = -lb, u(0.3, 0.55)  # discordant repolarisation
        st_items.append(-0.12 * lb)
    if "rbbb" in conds or "irbbb" in conds:
        full = "rbbb" in conds
        items[2] = (95.0 if full else 80.0, 17.0 if full else 10.0,
                    (u(0.55, 0.8) if full else u(0.3, 0.45)) * direction(170, 0.65), QRS)
        # the loop swings through inferior-anterior on its way right: no dead gap mid-QRS
        term = items[2][2] / np.linalg.norm(items[2][2])
        bridge = main + term + np.array([0.0, 0.0, 1.0])
        items.append((70.0 if full else 62.0, 13.0,
                      (0.5 if full else 0.3) * amp * bridge / np.linalg.norm(bridge), QRS))
        target_qrs = u(136, 160) if full else u(100, 116)
        if full:
            extra_t.append(0.22 * direction(0, -0.75))  # T inversion V1-V3
    if "ivcd" in conds:
        target_qrs = u(112, 130)
    if "wpw" in conds:
        pathway = [direction(60, 0.5), direction(-30, 0.4), direction(100, -0.3), direction(20, 0.6)]
        items.append((-22.0, 16.0, u(0.35, 0.55) * pathway[int(rng.integers(len(pathway)))], QRS))
        target_qrs = None  # the delta wave widens it by itself
    if "rvh" in conds:
        items[1] = (46.0, 11.0, 0.6 * amp * main, QRS)
        if len(items) > _APEX:
            items[_APEX] = (32.0, 9.0, 0.3 * p.apex * amp * direction(axis - 10, 0.55), QRS)
        items.append((40.0, 12.0, u(0.9, 1.3) * direction(150, 0.75), QRS))  # tall R in V1
        if rng.random() < 0.6:
            extra_t.append(0.3 * direction(0, -0.85))  # right-ventricular strain
    mi = next((c for c in conds if c.startswith("mi_")), None)
    if mi is not None:
        terr = TERRITORY[mi[3:]]
        if mi == "mi_posterior":
            items.append((36.0, 12.0, u(0.6, 0.9) * direction(40, 0.95), QRS))  # tall R V1-V2
            extra_t.append(0.25 * direction(30, 0.9))
        else:
            # necrosis: initial forces point away from the scar -> Q waves in the facing leads
            items[0] = (20.0, 11.0, u(0.35, 0.55) * (-terr), QRS)
            if mi in ("mi_anterior", "mi_anteroseptal") and len(items) > _APEX:
                items[_APEX] = (32.0, 9.0, 0.15 * p.apex * amp * direction(axis - 10, 0.55), QRS)  # lost R
                items.append((30.0, 10.0, 0.35 * (-terr), QRS))
            if "acute_mi" in conds:
                inj = float(np.clip(amp / 1.1, 0.6, 1.2))  # ST deviation scales with the voltage (ST/R)
                st_items.append(inj * u(0.2, 0.45) * terr)  # injury current towards the territory
                extra_t.append(inj * 0.2 * terr)  # hyperacute T
            else:
                extra_t.append(-u(0.2, 0.35) * terr)  # evolved: T inversion over the scar
    if "lvh" in conds:
        target_qrs = max(target_qrs, u(96, 112))  # a thick wall conducts a little longer
        if "_lvh_strain" in conds:  # strain pattern
            t_vec, t_amp = -main, u(0.25, 0.45)
            st_items.append(-0.12 * main)

    loc_st = next((c for c in conds if c.startswith("st_depression_")), None)
    if loc_st is not None:
        loc = loc_st.split("_", 2)[2]
        vec = TERRITORY.get(loc, direction(45, 0.4))
        st_items.append(-u(0.12, 0.25) * vec)
    if "st_elevation" in conds:
        st_items.append(u(0.15, 0.3) * direction(55, 0.55))
    if "early_repol" in conds:
        st_items.append(u(0.1, 0.18) * direction(40, 0.6))
    loc_t = next((c for c in conds if c.startswith("t_inversion_")), None)
    if loc_t is not None:
        loc = loc_t.split("_", 2)[2]
        if loc == "nonspecific":
            t_vec = direction(u(-180, 180), u(-0.5, 0.5))
            t_amp = u(0.12, 0.25)
        else:
            t_vec, t_amp = -TERRITORY[loc], u(0.25, 0.5)
    if "low_t" in conds:
        t_amp = u(0.04, 0.1)
        extra_t = [0.3 * v for v in extra_t]
    if "dig" in conds:
        st_items.append(-u(0.1, 0.18) * main)
        t_amp = u(0.05, 0.12)

    waves = Waves.of(items)
    if target_qrs is not None:
        on, off = measure_qrs(waves, p.leads)
        for _ in range(4):
            k = target_qrs / 1000.0 / (off - on)
            waves = waves.scaled((QRS,), time=k)
            on, off = measure_qrs(waves, p.leads)
    on, off = measure_qrs(waves, p.leads)
    waves = Waves(waves.t - on, waves.sigma, waves.vec, waves.group)
    qrs_ms = (off - on) * 1000.0

    # Voltage criteria are checked on the rendered leads, then enforced by scaling.
    def leads12(w: Waves) -> np.ndarray:
        return render_template(w.select(w.group == QRS), p.leads)

    if "lvh" in conds:
        sig = leads12(waves)
        sokolow = -sig[_V1].min() + max(sig[_V5].max(), sig[_V6].max())
        waves = waves.scaled((QRS,), amp=u(3.7, 5.0) / max(sokolow, 1e-3))
    if "high_voltage" in conds:  # tall QRS short of the LVH criteria (young, thin chest)
        sig = leads12(waves)
        peak = max(np.abs(sig[:6]).max(), np.abs(sig[6:]).max())
        waves = waves.scaled((QRS,), amp=u(2.6, 3.2) / max(peak, 1e-3))
    if "low_voltage" in conds:
        sig = leads12(waves)
        limb = np.ptp(sig[:6], axis=1).max()
        prec = np.ptp(sig[6:], axis=1).max()
        waves = waves.scaled((QRS,), amp=min(u(0.3, 0.46) / limb, 0.9 / prec))
        t_amp *= 0.5
    if not conds & {"lvh", "rvh", "high_voltage", "low_voltage"}:
        # habitus, age and sex scale voltages: a record without a voltage finding stays
        # inside the normal range (no unlabelled Sokolow-Lyon LVH, high or low voltage)
        sig = leads12(waves)
        sokolow = -sig[_V1].min() + max(sig[_V5].max(), sig[_V6].max())
        k = min(1.0, 3.3 / max(sokolow, 1e-3), 2.8 / max(np.abs(sig).max(), 1e-3))
        k = max(k, 0.6 / max(np.ptp(sig[:6], axis=1).max(), 1e-3), 1.05 / max(np.ptp(sig[6:], axis=1).max(), 1e-3))
        if k != 1.0:
            waves = waves.scaled((QRS,), amp=k)

    qtc = p.qtc_ms
    if "long_qt" in conds:
        qtc = u(485, 560)
    if "dig" in conds:
        qtc = u(340, 370)
    qt = max(qtc, qrs_ms + 220.0)
    t_list = _t_waves(qt, t_amp, t_vec)
    for v in extra_t:
        t_list += _t_waves(qt, 1.0, v)
    st_list = [w for v in st_items for w in _st_waves(qrs_ms, v)]
    if "early_repol" in conds:
        st_list.append((qrs_ms - 2.0, 5.0, 0.12 * direction(40, 0.6), ST))  # J-point notch
    if "u_wave" in conds:
        t_list.append((qt + 80.0, 28.0, u(0.06, 0.12) * t_vec, U))
    waves = waves + Waves.of(t_list + st_list)
    return Template(waves, qrs_ms, qt)


def ectopic_template(p: Person, rng: np.random.Generator, kind: str) -> Template:
    """Wide ventricular beat: PVC / ventricular escape (unifocal per record) or paced."""
    u = rng.uniform
    if kind == "paced":  # right-ventricular apical pacing: LBBB-like with superior axis
        d1, d2 = direction(u(-80, -50), -0.65), direction(u(-40, -10), -0.5)
        spike = [(-3.0, 1.0, u(1.0, 2.5) * direction(u(-30, 120), u(-0.5, 0.5)), SPIKE)]
    else:
        rv = rng.random() < 0.6
        d1 = direction(u(50, 100), -0.6) if rv else direction(u(-120, -60), 0.7)
        d2 = direction(u(-20, 20), -0.4) if rv else direction(u(150, 200), 0.4)
        spike = []
    amp = u(1.5, 2.4) * p.qrs_amp / 1.1  # wide ectopic beats swing more than conducted ones
    items = [(40.0, 22.0, amp * d1, QRS), (100.0, 20.0, 0.45 * amp * d2, QRS)]
    waves = Waves.of(items)
    on, off = measure_qrs(waves, p.leads)
    k = u(140, 180) / 1000.0 / (off - on)
    waves = waves.scaled((QRS,), time=k)
    on, off = measure_qrs(waves, p.leads)
    qrs_ms = (off - on) * 1000.0
    qt = qrs_ms + u(260, 320)
    waves = Waves(waves.t - on, waves.sigma, waves.vec, waves.group)
    waves = waves + Waves.of(_t_waves(qt, u(0.4, 0.7), -d1) + spike)
    return Template(waves, qrs_ms, qt)


def p_wave(p: Person, conds: set[str], rng: np.random.Generator, ectopic: bool = False) -> Waves:
    """P wave with times relative to P onset."""
    u = rng.uniform
    if ectopic:
        return Waves.of([(40.0, 17.0, u(0.08, 0.15) * direction(u(-90, -40) if rng.random() < 0.6
                                                                else u(100, 140), 0.3), QRS)])
    amp = p.p_amp
    items = [(45.0, 18.0, amp * direction(u(35, 70), 0.25), QRS)]
    if "rae" in conds:
        items = [(42.0, 16.0, u(0.27, 0.38) * direction(u(70, 85), 0.35), QRS)]  # tall peaked P
    if "lae" in conds:  # broad notched P, deep terminal negativity in V1
        items = [(38.0, 17.0, amp * direction(50, 0.3), QRS),
                 (88.0, 19.0, u(0.11, 0.16) * direction(20, -0.7), QRS)]
    return Waves.of(items)

"""Beat timing: atrial and ventricular activation times from a rhythm process.

Atria and ventricles are timed separately so that AV conduction (PR, Wenckebach,
Mobitz II drops, complete dissociation) and ectopy (non-compensatory PACs, compensatory
PVCs, bigeminy/trigeminy) come out of the process, not from a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ventricular beat kinds.
CONDUCTED, PVC, PACED, ESCAPE_V, ESCAPE_J = 0, 1, 2, 3, 4
PRE_S = 2.0  # beats are simulated from -PRE_S so that the record starts mid-rhythm


@dataclass
class Timeline:
    p_on: np.ndarray  # P-wave onsets (s)
    p_ectopic: np.ndarray  # bool per P
    v_on: np.ndarray  # QRS onsets (s)
    v_kind: np.ndarray  # int per QRS
    atrial: str  # sinus | af | flutter | none
    atrial_rate: float  # bpm of the atrial process (flutter/sinus) or mean f-wave rate (AF)
    pr_ms: float | None  # PR of conducted beats (first of a Wenckebach cycle)
    escape: str | None = None  # complete block: junctional | ventricular


def _sinus_train(rng, hr: float, t0: float, t1: float, sa: float, jitter: float) -> np.ndarray:
    rr0 = 60.0 / hr
    f_resp, phase = rng.uniform(0.15, 0.3), rng.uniform(0, 2 * np.pi)
    n = int((t1 - t0) / (rr0 * (1 - sa)) + 3)
    t = t0 + rng.uniform(0, rr0)
    out = np.empty(n)
    noise = rng.normal(0.0, jitter, n)
    for i in range(n):  # n ~ 20 beats: cheap
        out[i] = t
        t += rr0 * (1 + sa * np.sin(2 * np.pi * f_resp * t + phase)) * (1 + noise[i])
    return out[out < t1]


def simulate(conds: set[str], pr_ms: float, duration: float, rng: np.random.Generator) -> Timeline:
    """Atrial and ventricular activation times on [-PRE_S, duration + 1)."""
    u = rng.uniform
    t0, t1 = -PRE_S, duration + 1.0
    empty = np.zeros(0)
    pr = pr_ms / 1000.0
    if "avb1" in conds:
        pr = u(0.23, 0.36)
    if "pr_borderline" in conds:
        pr = u(0.205, 0.225)
    if "wpw" in conds:
        pr = u(0.085, 0.115)

    if "afib" in conds:
        hr = u(55, 150) if rng.random() < 0.8 else u(40, 55)
        mean, cv = 60.0 / hr, u(0.15, 0.3)
        rr = np.maximum(mean * rng.lognormal(-0.5 * cv * cv, cv, int((t1 - t0) / 0.3) + 2), 0.32)
        v = t0 + u(0, mean) + np.concatenate([[0.0], np.cumsum(rr)])
        v = v[v < t1]
        tl = Timeline(empty, empty.astype(bool), v, np.zeros(len(v), int), "af", u(350, 500), None)
    elif "aflutter" in conds:
        rate = u(250, 340)
        f = t0 + u(0, 60 / rate) + np.arange(int((t1 - t0) * rate / 60) + 2) * 60 / rate
        if rng.random() < 0.6:
            ratios = np.full(len(f), int(rng.choice([2, 3, 4], p=[0.6, 0.1, 0.3])))
        else:
            ratios = rng.choice([2, 3, 4], size=len(f), p=[0.5, 0.2, 0.3])
        idx, i = [], int(rng.integers(0, 2))
        while i < len(f):
            idx.append(i)
            i += int(ratios[i])
        v = f[idx] + u(0.2, 0.28)
        v = v[v < t1]
        tl = Timeline(f, np.zeros(len(f), bool), v, np.zeros(len(v), int), "flutter", rate, None)
    elif "svt" in conds:
        v = _sinus_train(rng, u(150, 220), t0, t1, 0.0, 0.004)
        tl = Timeline(empty, empty.astype(bool), v, np.zeros(len(v), int), "none", 0.0, None)
    elif "paced" in conds:
        if rng.random() < 0.6:  # atrial-sensed ventricular pacing
            rate = u(60, 85)
            p = _sinus_train(rng, rate, t0, t1, 0.0, 0.01)
            av = u(0.13, 0.18)
            v = p + av
            tl = Timeline(p, np.zeros(len(p), bool), v, np.full(len(v), PACED), "sinus", rate, av * 1000)
        else:  # VVI at the lower rate
            v = _sinus_train(rng, u(60, 72), t0, t1, 0.0, 0.0)
            tl = Timeline(empty, empty.astype(bool), v, np.full(len(v), PACED), "none", 0.0, None)
    elif "avb3" in conds:
        rate = u(60, 100)
        p = _sinus_train(rng, rate, t0, t1, 0.0, 0.01)
        junctional = rng.random() < 0.5
        v = _sinus_train(rng, u(40, 55) if junctional else u(25, 40), t0, t1, 0.0, 0.005)
        kind = ESCAPE_J if junctional else ESCAPE_V
        tl = Timeline(p, np.zeros(len(p), bool), v, np.full(len(v), kind), "sinus", rate, None,
                      "junctional" if junctional else "ventricular")
    else:
        tl = _sinus_family(conds, pr, t0, t1, rng)
    if conds & {"pvc", "bigeminy", "trigeminy"}:
        tl = _add_pvcs(tl, conds, rng)
    return tl


def _sinus_family(conds: set[str], pr: float, t0: float, t1: float, rng) -> Timeline:
    u = rng.uniform
    if "sinus_brady" in conds:
        hr = u(38, 57)
    elif "sinus_tachy" in conds:
        hr = u(104, 150)
    elif "atrial_tachy" in conds:
        hr = u(110, 180)
    else:
        hr = u(60, 98)
    sa = u(0.1, 0.2) if "sinus_arrhythmia" in conds else u(0.0, 0.02)
    if "bigeminy" in conds or "trigeminy" in conds:
        hr = min(hr, 85.0)  # room for premature beats without overlapping T waves
    p = _sinus_train(rng, hr, t0, t1, sa, u(0.005, 0.015))
    ectopic = np.full(len(p), "atrial_tachy" in conds)
    if "pac" in conds and len(p) > 4:
        rr0 = 60.0 / hr
        k = int(rng.integers(1, 4))
        for i in sorted(rng.choice(np.arange(2, len(p)), size=min(k, len(p) - 2), replace=False)):
            t_pac = p[i - 1] + u(0.55, 0.75) * rr0
            if i + 1 < len(p):  # the sinus node is reset: non-compensatory pause
                p[i + 1:] += t_pac + rr0 - p[i + 1]
            p[i] = t_pac
            ectopic[i] = True
        keep = p < t1
        p, ectopic = p[keep], ectopic[keep]
    conducted = np.ones(len(p), bool)
    prs = np.full(len(p), pr)
    if "mobitz1" in conds:
        m = int(rng.integers(3, 6))
        inc = u(0.1, 0.2)
        pos = (np.arange(len(p)) + int(rng.integers(0, m))) % m
        prs = pr + inc * (1 - 0.55 ** pos)
        conducted = pos != m - 1
    elif "mobitz2" in conds:
        m = int(rng.integers(3, 5))
        conducted = (np.arange(len(p)) + int(rng.integers(0, m))) % m != m - 1
    v = (p + prs)[conducted]
    return Timeline(p, ectopic, v, np.zeros(len(v), int), "sinus", hr, pr * 1000)


def _add_pvcs(tl: Timeline, conds: set[str], rng) -> Timeline:
    """Replace beats by PVCs; the hidden sinus beat is not conducted (compensatory pause)."""
    v, kind = tl.v_on.copy(), tl.v_kind.copy()
    n = len(v)
    if n < 4:
        return tl
    if "bigeminy" in conds:
        idx = np.arange(1 + int(rng.integers(0, 2)), n, 2)
    elif "trigeminy" in conds:
        idx = np.arange(1 + int(rng.integers(0, 3)), n, 3)
    else:
        idx = np.sort(rng.choice(np.arange(1, n), size=min(int(rng.integers(1, 4)), n - 1), replace=False))
    coupling = rng.uniform(0.5, 0.65)
    for i in idx:
        rr = v[i] - v[i - 1]
        v[i] = v[i - 1] + max(coupling * rr, min(0.36, 0.8 * rr))  # not on the preceding T wave
        kind[i] = PVC
    return Timeline(tl.p_on, tl.p_ectopic, v, kind, tl.atrial, tl.atrial_rate, tl.pr_ms, tl.escape)

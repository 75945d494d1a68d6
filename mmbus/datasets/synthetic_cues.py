"""The latent model of the synthetic breast-ultrasound images (:mod:`mmbus.datasets.synthetic` renders it):
the BI-RADS cues of a nodule, their class overlap, the nodule's shape, and the hospitals' scanner styles.

Class overlap: every cue ``t`` in [0, 1] (0 = benign-looking, 1 = malignant-looking) is
``sigmoid(1.6 * z)`` with ``z ~ N(+-D / (2 sqrt(K)), 1)`` for malignant/benign, K = 7 cues.
An ideal observer of the K latent cues reaches AUC = Phi(D / sqrt 2); ``difficulty`` sets
``D = 4 (1 - difficulty)^1.15``: difficulty 0 -> AUC ~0.998, 0.5 (default) -> ~0.90,
1 -> 0.5. Real classifiers see the cues through speckle and stay below that bound.

Hospital styles: ``'a'`` (internal) and ``'b'`` (external test: other resolution, gain,
dynamic range, depth, speckle grain, trapezoid field of view, overlay layout).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

CUE_NAMES = ('orientation', 'irregularity', 'spiculation', 'posterior', 'heterogeneity',
             'calcification', 'margin_blur')


@dataclass(frozen=True)
class HospitalStyle:
    """Scanner/hospital appearance. Lengths in pixels unless noted."""
    name: str
    width: int
    height_range: Tuple[int, int]
    gain: float                 # multiplies the log-compressed image (brightness)
    dynamic_range: float        # log-compression constant C in log(1 + C*I)
    gamma: float
    attenuation: float          # exp(-attenuation * depth/fov_height) before TGC
    tgc: float                  # linear time-gain compensation over depth
    speckle_sigma: Tuple[float, float]  # (lateral, axial) correlation of the speckle, px
    margins: Tuple[float, float, float, float]  # FOV margins (top, bottom, left, right), frac
    trapezoid: float            # extra half-width at the bottom of the FOV, fraction of width
    depth_cm: Tuple[float, float]
    text_side: str              # 'left' or 'right': where the text block sits
    label: str


STYLES: Dict[str, HospitalStyle] = {
    'a': HospitalStyle('a', 256, (200, 256), gain=1.0, dynamic_range=10.0, gamma=1.5,
                       attenuation=1.2, tgc=0.8, speckle_sigma=(1.1, 0.6),
                       margins=(0.10, 0.03, 0.05, 0.09), trapezoid=0.0, depth_cm=(3.0, 4.5),
                       text_side='left', label='HOSP-A L12-5'),
    'b': HospitalStyle('b', 320, (240, 288), gain=0.92, dynamic_range=20.0, gamma=1.8,
                       attenuation=1.8, tgc=1.0, speckle_sigma=(1.6, 0.9),
                       margins=(0.13, 0.02, 0.10, 0.06), trapezoid=0.05, depth_cm=(4.0, 6.0),
                       text_side='right', label='HB LOGIQ 9L'),
}


@dataclass
class NoduleCues:
    """BI-RADS cue strengths in [0, 1]: 0 looks benign, 1 looks malignant.

    orientation: 0 = parallel (width/height 2.0), 1 = not parallel (taller than wide, 0.6);
    irregularity: shape harmonics (oval/gently lobulated -> irregular);
    spiculation: number/length of spicules and angular (polygonal) margins;
    posterior: <0.5 enhancement, ~0.5 none, >0.5 shadowing;
    heterogeneity: darker and more heterogeneous interior;
    calcification: microcalcification count (3 x 3 px flecks; none below 0.5);
    margin_blur: circumscribed (sharp, thin capsule) -> indistinct with echogenic halo.
    """
    orientation: float = 0.5
    irregularity: float = 0.5
    spiculation: float = 0.5
    posterior: float = 0.5
    heterogeneity: float = 0.5
    calcification: float = 0.5
    margin_blur: float = 0.5


def cue_separation(difficulty: float) -> float:
    """Combined ideal-observer separation D (in SDs) for a difficulty in [0, 1]."""
    d = float(np.clip(difficulty, 0.0, 1.0))
    return 4.0 * (1.0 - d) ** 1.15


def sample_cues(rng: np.random.Generator, malignant: bool, difficulty: float) -> NoduleCues:
    """Draw the cues of one nodule (see module doc for the class-conditional model)."""
    k = len(CUE_NAMES)
    shift = cue_separation(difficulty) / (2.0 * math.sqrt(k)) * (1.0 if malignant else -1.0)
    z = rng.normal(shift, 1.0, size=k)
    t = 1.0 / (1.0 + np.exp(-1.6 * z))
    return NoduleCues(**{n: float(v) for n, v in zip(CUE_NAMES, t)})


@dataclass
class NoduleShape:
    """Geometry of one nodule, shared by the two views of a patient."""
    radius_frac: float          # mean radius / FOV width
    harmonics: np.ndarray       # (K, 2): amplitude, phase for k = 2..K+1
    spikes: np.ndarray          # (S, 3): angle, amplitude, angular width
    polygon_n: int
    polygon_phase: float
    tilt: float                 # radians, long axis vs the skin line


def sample_shape(rng: np.random.Generator, cues: NoduleCues) -> NoduleShape:
    kmax = 8
    ks = np.arange(2, kmax + 2)
    amp = rng.uniform(0.3, 1.0, kmax) / ks ** 0.6
    # oval (benign) -> irregular (malignant); the low orders (2-5 lobes) carry most of it, so that the
    # irregularity survives the recogniser's ~2.5x downscaled crop, where finer ripples vanish
    amp *= 0.03 + 0.30 * cues.irregularity
    amp[:2] *= 1.0 + 0.5 * (1 - cues.irregularity)   # gentle macrolobulation of benign nodules
    harm = np.stack([amp, rng.uniform(0, 2 * np.pi, kmax)], axis=1)
    n_spk = int(rng.poisson(18 * max(0.0, cues.spiculation - 0.5)))
    spikes = np.stack([rng.uniform(0, 2 * np.pi, n_spk),
                       rng.uniform(0.25, 0.75, n_spk) * cues.spiculation,
                       rng.uniform(0.05, 0.12, n_spk)], axis=1) if n_spk else np.zeros((0, 3))
    size = rng.uniform(0.07, 0.15) * (0.9 + 0.25 * cues.heterogeneity)
    tilt = rng.normal(0.0, math.radians(6 + 20 * cues.orientation))
    return NoduleShape(size, harm, spikes, int(rng.integers(5, 8)), rng.uniform(0, 2 * np.pi),
                       tilt)

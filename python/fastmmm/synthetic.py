"""Realistic synthetic MMM data with known truth, for demos and recovery tests.

The generating process is the model's own family, written in original units:
spend with flighting (bursty TV-like channels, always-on search-like ones),
carry-over, diminishing returns, a trend, yearly seasonality, an event control
and Gaussian noise. The true contribution and ROAS of every channel are
returned alongside the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fastmmm import kernels as K

__all__ = ["SyntheticTruth", "make_dataset", "CHANNEL_NAMES"]

CHANNEL_NAMES = ("tv", "search", "social", "display", "radio", "ooh", "video", "affiliate", "email", "print", "podcast", "cinema")


@dataclass
class SyntheticTruth:
    """What generated the data. Arrays are per channel (C,) unless stated."""

    channels: tuple[str, ...]
    adstock: str
    saturation: str
    l_max: int
    adstock_params: dict[str, np.ndarray]
    saturation_params: dict[str, np.ndarray]  # kernel values (absolute, on scaled spend)
    beta: np.ndarray  # on the target scale
    target_scale: float
    contribution: np.ndarray  # (T, C), original units
    roas: np.ndarray
    extra: dict = field(default_factory=dict)

    def roas_table(self) -> pd.Series:
        return pd.Series(self.roas, index=list(self.channels), name="true_roas")


def _spend(rng: np.random.Generator, t: int, c: int) -> np.ndarray:
    """Weekly spend with realistic patterns: bursts with dark weeks and always-on."""
    out = np.empty((t, c))
    weeks = np.arange(t)
    for j in range(c):
        level = rng.uniform(2e3, 2e4)
        if j % 3 == 0:  # bursty: flights of 3-8 weeks on, 2-6 off
            on = np.zeros(t, bool)
            i = int(rng.integers(0, 4))
            while i < t:
                n_on = int(rng.integers(3, 9))
                on[i : i + n_on] = True
                i += n_on + int(rng.integers(2, 7))
            x = level * rng.gamma(4.0, 0.25, t) * on
        elif j % 3 == 1:  # always on, seasonal, with quarterly budget shifts and a yearly pause
            budget = np.repeat(rng.uniform(0.3, 1.5, t // 13 + 1), 13)[:t]
            x = level * budget * (1 + 0.3 * np.sin(2 * np.pi * weeks / 52 + rng.uniform(0, 6)))
            x = x * rng.gamma(20.0, 0.05, t)
            for y0 in range(int(rng.integers(0, 40)), t, 52):
                x[y0 : y0 + int(rng.integers(3, 7))] = 0.0
        else:  # on most weeks, some gaps
            x = level * rng.gamma(3.0, 1 / 3, t) * (rng.random(t) > 0.25)
        out[:, j] = x
    return out


def make_dataset(
    weeks: int = 156,
    n_channels: int = 6,
    *,
    adstock: str = "geometric",
    saturation: str = "hill",
    l_max: int = 8,
    noise: float = 0.04,
    media_share: float = 0.3,
    seed: int = 0,
    start: str = "2022-01-03",
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """Generate a weekly dataset and its truth.

    Parameters
    ----------
    weeks, n_channels : size of the data (T, C); at most 12 channels.
    adstock : "geometric" or "weibull_pdf" / "weibull_cdf" / "delayed"
    saturation : "hill" or "logistic" / "michaelis_menten" / "tanh"
    noise : noise sd as a fraction of the mean target.
    media_share : approximate share of sales driven by media.

    Returns
    -------
    df : DataFrame with columns date, sales, one spend column per channel, event.
    truth : SyntheticTruth
    """
    if not 1 <= n_channels <= len(CHANNEL_NAMES):
        raise ValueError(f"n_channels: must be in 1..{len(CHANNEL_NAMES)}, got {n_channels}")
    rng = np.random.default_rng(seed)
    t, c = int(weeks), int(n_channels)
    channels = CHANNEL_NAMES[:c]
    dates = pd.date_range(start, periods=t, freq="W-MON")
    spend = _spend(rng, t, c)
    xs = spend / spend.max(axis=0)

    if adstock == "geometric":
        a_params = {"alpha": rng.uniform(0.2, 0.7, c)}
    elif adstock == "delayed":
        a_params = {"alpha": rng.uniform(0.3, 0.7, c), "theta": rng.uniform(0.5, 3.0, c)}
    elif adstock in ("weibull_pdf", "weibull_cdf"):
        a_params = {"lam": rng.uniform(1.0, 3.0, c), "k": rng.uniform(1.0, 3.0, c)}
    else:
        raise ValueError(f"adstock: unknown kind {adstock!r}")
    nz = np.where(xs > 0, xs, np.nan)
    kscale = np.nanmean(nz, axis=0)
    if saturation == "hill":
        s_params = {"kappa": kscale * rng.uniform(0.6, 1.5, c), "slope": rng.uniform(1.0, 2.5, c)}
    elif saturation == "logistic":
        s_params = {"lam": rng.uniform(1.5, 5.0, c)}
    elif saturation == "michaelis_menten":
        s_params = {"alpha": np.ones(c), "lam": kscale * rng.uniform(0.6, 1.5, c)}
    elif saturation == "tanh":
        s_params = {"b": np.ones(c), "c": kscale * rng.uniform(0.6, 1.5, c)}
    else:
        raise ValueError(f"saturation: unknown kind {saturation!r}")
    sat, _ = K.media_transform(
        xs,
        adstock,
        saturation,
        tuple(a_params.values()),
        tuple(s_params.values()),
        l_max=l_max,
        normalize=True,
    )
    # Baseline on the scale of 1: intercept, gentle trend, yearly seasonality, an event.
    tt = np.arange(t) / max(t - 1, 1)
    doy = dates.day_of_year.to_numpy()
    season = 0.06 * np.sin(2 * np.pi * doy / 365.25) + 0.03 * np.cos(4 * np.pi * doy / 365.25)
    event = np.zeros(t)
    event[rng.choice(t, size=max(1, t // 40), replace=False)] = 1.0
    baseline = 1.0 + 0.15 * tt + season + 0.12 * event
    # Channel amplitudes: media drives about `media_share` of sales in total.
    w = rng.uniform(0.5, 1.5, c)
    mean_sat = sat.mean(axis=0)
    beta = w / w.sum() * media_share * baseline.mean() / (1 - media_share) / np.maximum(mean_sat, 1e-9)
    media = sat * beta
    target_scale = 1e5
    mu = baseline + media.sum(axis=1)
    y = (mu + noise * mu.mean() * rng.standard_normal(t)) * target_scale
    contribution = media * target_scale
    roas = contribution.sum(axis=0) / spend.sum(axis=0)
    df = pd.DataFrame({"date": dates, "sales": y})
    for j, ch in enumerate(channels):
        df[ch] = spend[:, j]
    df["event"] = event
    truth = SyntheticTruth(
        channels=tuple(channels),
        adstock=adstock,
        saturation=saturation,
        l_max=l_max,
        adstock_params=a_params,
        saturation_params=s_params,
        beta=beta,
        target_scale=target_scale,
        contribution=contribution,
        roas=roas,
    )
    return df, truth

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

__all__ = [
    "SyntheticTruth",
    "make_dataset",
    "make_multiplicative_dataset",
    "make_confounded_dataset",
    "true_lift",
    "make_lift_tests",
    "make_panel",
    "panel_true_lift",
    "CHANNEL_NAMES",
]

CHANNEL_NAMES = (
    "tv",
    "search",
    "social",
    "display",
    "radio",
    "ooh",
    "video",
    "affiliate",
    "email",
    "print",
    "podcast",
    "cinema",
)


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


def _media_and_baseline(weeks, n_channels, adstock, saturation, l_max, seed, start):
    """The random parts every generator shares, in one fixed order of draws (a seed keeps its
    dataset): dates, spend, the true media transform and its parameters, and the baseline's
    trend / seasonality / event shapes."""
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
    return rng, dates, channels, spend, a_params, s_params, sat, tt, season, event


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
    rng, dates, channels, spend, a_params, s_params, sat, tt, season, event = _media_and_baseline(
        weeks, n_channels, adstock, saturation, l_max, seed, start
    )
    t, c = spend.shape
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
        roas=contribution.sum(axis=0) / spend.sum(axis=0),
    )
    return _frame(dates, y, channels, spend, event), truth


def _frame(dates, y, channels, spend, event) -> pd.DataFrame:
    """The generators' DataFrame: date, sales, one spend column per channel, event."""
    df = pd.DataFrame({"date": dates, "sales": y})
    for j, ch in enumerate(channels):
        df[ch] = spend[:, j]
    df["event"] = event
    return df


def make_multiplicative_dataset(
    weeks: int = 156,
    n_channels: int = 5,
    *,
    adstock: str = "geometric",
    saturation: str = "hill",
    l_max: int = 8,
    noise: float = 0.04,
    media_share: float = 0.3,
    seed: int = 0,
    start: str = "2022-01-03",
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """A weekly dataset from the multiplicative (log-target) model, and its truth.

    ``log(sales_t) = log(1e5) + b_t + sum_c beta_c * sat_c(adstock_c(x_c))_t + noise * e_t``,
    ``e_t ~ N(0, 1)``, with the same spend, media transforms and baseline shapes as
    :func:`make_dataset` (``b_t`` its trend, seasonality and event on the log scale). Media
    drive about ``media_share`` of expected sales: ``sum_c beta_c mean_t(sat_c) = -log(1 -
    media_share)``.

    The truth's contributions and ROAS are counterfactual, as fastmmm reports them for this
    model: ``E[y_t] - E[y_t | channel c's term removed] = E[y_t] * (1 - exp(-m_ct))`` with
    ``E[y_t] = 1e5 * exp(mu_t + noise^2 / 2)``, over the dates of the data.
    """
    rng, dates, channels, spend, a_params, s_params, sat, tt, season, event = _media_and_baseline(
        weeks, n_channels, adstock, saturation, l_max, seed, start
    )
    t, c = spend.shape
    baseline = 0.15 * tt + season + 0.12 * event
    w = rng.uniform(0.5, 1.5, c)
    beta = w / w.sum() * -np.log1p(-media_share) / np.maximum(sat.mean(axis=0), 1e-9)
    media = sat * beta  # (T, C) log-scale terms
    target_scale = 1e5
    mu = baseline + media.sum(axis=1)
    y = target_scale * np.exp(mu + noise * rng.standard_normal(t))
    level = target_scale * np.exp(mu + 0.5 * noise**2)
    contribution = level[:, None] * -np.expm1(-media)
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
        roas=contribution.sum(axis=0) / spend.sum(axis=0),
        extra={
            "log_target": True,
            "noise_sd_log": noise,
            "spend_scale": spend.max(axis=0),  # the kernel parameters' spend unit
            "mu": mu,  # (T,) log-scale mean relative to target_scale
            "media": media,  # (T, C) log-scale media terms
        },
    )
    return _frame(dates, y, channels, spend, event), truth


def true_lift(
    truth: SyntheticTruth,
    channel: str,
    spend_before: float,
    spend_after: float,
    periods: float,
    start: int | None = None,
) -> float:
    """The true incremental target of a lift test on ``truth``'s process.

    Spend held at ``spend_before`` vs ``spend_after`` per period (original
    units) for ``periods`` periods, at the steady state of the adstock (the
    definition of :mod:`fastmmm.lift`): ``periods * beta_c * (f_c(x1) -
    f_c(x0)) * target_scale`` with ``f_c`` the true media transform. On a
    :func:`make_multiplicative_dataset` truth the test runs over rows ``start ..
    start + periods - 1`` (required): ``sum_t E[y_t | without c] * (exp(beta_c
    f_c(x1)) - exp(beta_c f_c(x0)))``.
    """
    c = list(truth.channels).index(channel)
    log_truth = bool(truth.extra.get("log_target"))
    if log_truth and start is None:
        raise ValueError("true_lift: a multiplicative truth needs the test's first row (start=)")
    spend_scale = np.asarray(truth.extra["spend_scale"], dtype=float)
    steady = truth.l_max + 1
    ys = []
    for x in (spend_before, spend_after):
        xs = np.full((steady, 1), float(x) / spend_scale[c])
        y, _ = K.media_transform(
            xs,
            truth.adstock,
            truth.saturation,
            tuple(np.asarray(v)[[c]] for v in truth.adstock_params.values()),
            tuple(np.asarray(v)[[c]] for v in truth.saturation_params.values()),
            l_max=truth.l_max,
            normalize=True,
        )
        ys.append(y[-1, 0])
    if log_truth:
        rows = slice(int(start), int(start) + int(periods))
        mu, media, sd = truth.extra["mu"][rows], truth.extra["media"][rows, c], truth.extra["noise_sd_log"]
        level = truth.target_scale * np.exp(mu - media + 0.5 * sd**2)
        gain = np.exp(truth.beta[c] * ys[1]) - np.exp(truth.beta[c] * ys[0])
        return float(np.sum(level * gain))
    return float(periods * truth.beta[c] * (ys[1] - ys[0]) * truth.target_scale)


def make_lift_tests(
    truth: SyntheticTruth, tests, *, se_frac: float = 0.1, seed: int | None = None
) -> pd.DataFrame:
    """Lift-test results on ``truth``'s process (see :mod:`fastmmm.lift` for the columns).

    Parameters
    ----------
    tests : sequence of (channel, spend_before, spend_after, weeks)
        Per-period spends in original units.
    se_frac : float
        Standard error of each measurement as a fraction of its true |lift|.
    seed : int, optional
        With a seed, the measured lift is the true lift plus Normal(0, se)
        noise; without, it is exact.

    Returns
    -------
    DataFrame with columns channel, spend_before, spend_after, weeks, lift,
    lift_se and true_lift (ignored by the model).
    """
    rng = None if seed is None else np.random.default_rng(seed)
    rows = []
    for channel, x0, x1, weeks in tests:
        tl = true_lift(truth, channel, x0, x1, weeks)
        se = se_frac * abs(tl)
        obs = tl if rng is None else tl + se * rng.standard_normal()
        rows.append(
            {
                "channel": channel,
                "spend_before": float(x0),
                "spend_after": float(x1),
                "weeks": weeks,
                "lift": obs,
                "lift_se": se,
                "true_lift": tl,
            }
        )
    return pd.DataFrame(rows)


def make_confounded_dataset(
    weeks: int = 104,
    *,
    confounding: float = 0.6,
    demand_effect: float = 0.08,
    noise: float = 0.04,
    seed: int = 0,
    start: str = "2022-01-03",
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """Weekly data where an unobserved demand driver biases one channel's ROAS.

    Two always-on channels, ``tv`` and ``search``, geometric adstock (l_max 8,
    normalised) and Hill saturation. A latent demand series ``d`` (AR(1),
    standardised) raises sales by ``demand_effect * d`` (as a fraction of the
    baseline) and also drives search spend: ``search ~ exp(confounding * d)``
    (advertisers spend more when demand is high). ``d`` is not in the data,
    so a model without it credits demand to search and overstates its ROAS;
    a lift test on search (:func:`true_lift`) can correct it.

    Returns
    -------
    df : DataFrame with columns date, sales, tv, search.
    truth : SyntheticTruth; ``truth.extra`` holds ``demand`` (T,),
        ``spend_scale`` (C,) (the spend unit of the kernel parameters) and
        ``confounded_channel`` ("search").
    """
    rng = np.random.default_rng(seed)
    t = int(weeks)
    channels = ("tv", "search")
    dates = pd.date_range(start, periods=t, freq="W-MON")
    d = np.empty(t)
    d[0] = rng.standard_normal()
    for i in range(1, t):
        d[i] = 0.85 * d[i - 1] + np.sqrt(1 - 0.85**2) * rng.standard_normal()
    d = (d - d.mean()) / d.std()
    tv = 1.2e4 * rng.gamma(6.0, 1 / 6.0, t)
    search = 8e3 * np.exp(confounding * d) * rng.gamma(25.0, 1 / 25.0, t)
    spend = np.column_stack([tv, search])
    spend_scale = spend.max(axis=0)
    xs = spend / spend_scale
    kscale = xs.mean(axis=0)
    a_params = {"alpha": np.array([0.5, 0.3])}
    s_params = {"kappa": kscale * np.array([1.2, 1.0]), "slope": np.array([1.5, 1.2])}
    sat, _ = K.media_transform(
        xs, "geometric", "hill", (a_params["alpha"],), tuple(s_params.values()), l_max=8, normalize=True
    )
    tt = np.arange(t) / max(t - 1, 1)
    doy = dates.day_of_year.to_numpy()
    baseline = 1.0 + 0.08 * tt + 0.05 * np.sin(2 * np.pi * doy / 365.25) + demand_effect * d
    # On average tv adds 15% and search 10% of the baseline level.
    beta = np.array([0.15, 0.10]) / np.maximum(sat.mean(axis=0), 1e-9)
    media = sat * beta
    target_scale = 1e5
    mu = baseline + media.sum(axis=1)
    y = (mu + noise * mu.mean() * rng.standard_normal(t)) * target_scale
    contribution = media * target_scale
    roas = contribution.sum(axis=0) / spend.sum(axis=0)
    df = pd.DataFrame({"date": dates, "sales": y, "tv": tv, "search": search})
    truth = SyntheticTruth(
        channels=channels,
        adstock="geometric",
        saturation="hill",
        l_max=8,
        adstock_params=a_params,
        saturation_params=s_params,
        beta=beta,
        target_scale=target_scale,
        contribution=contribution,
        roas=roas,
        extra={"demand": d, "spend_scale": spend_scale, "confounded_channel": "search"},
    )
    return df, truth


def make_panel(
    n_groups: int = 10,
    weeks: int = 104,
    n_channels: int = 3,
    *,
    group: str = "geo",
    l_max: int = 8,
    noise: float = 0.04,
    media_share: float = 0.3,
    spread: float = 0.25,
    seed: int = 0,
    start: str = "2022-01-03",
    drift: float = 0.0,
) -> tuple[pd.DataFrame, dict]:
    """A multi-geo panel (geometric adstock + Hill) whose media parameters vary
    by geo around global values, as the hierarchical model assumes.

    Each geo has its own size, spend patterns, baseline and noise; its decay
    rates are logit-normal and its half-saturation points, slopes and
    channel shares log-normal around global values, with scale ``spread``.

    ``drift`` > 0: every geo's baseline also drifts smoothly (its own random sum of slow
    sines, periods 35-150 weeks, root-mean-square ``drift`` x the mean baseline), and its
    spend follows the drift (x ``exp(0.3 d(t))``, budgets that track sales): what a static
    baseline would attribute to always-on media. ``truth["drift"]`` (G, T) is the drift in
    sales units.

    Returns
    -------
    df : DataFrame with columns ``group``, date, sales, one spend column per channel, event.
    truth : dict with ``roas`` (G, C), ``contribution`` (G, T, C), ``alpha``, ``kappa``
        (absolute, on each geo's scaled spend), ``slope``, ``share``, ``beta`` (G, C; target-scale
        units), ``target_scale`` (G,), ``channel_scale`` (G, C; spend = scaled * channel_scale),
        ``groups``, ``channels``.
    """
    if not 1 <= n_channels <= len(CHANNEL_NAMES):
        raise ValueError(f"n_channels: must be in 1..{len(CHANNEL_NAMES)}, got {n_channels}")
    if n_groups < 1:
        raise ValueError(f"n_groups: must be >= 1, got {n_groups}")
    rng = np.random.default_rng(seed)
    g_n, t, c = int(n_groups), int(weeks), int(n_channels)
    channels = CHANNEL_NAMES[:c]
    groups = [f"{group}_{i:02d}" for i in range(g_n)]
    dates = pd.date_range(start, periods=t, freq="W-MON")
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    alpha_c = rng.uniform(0.25, 0.65, c)
    kappa_c = rng.uniform(0.7, 1.4, c)  # relative to mean non-zero scaled spend
    slope_c = rng.uniform(1.2, 2.2, c)
    w = rng.uniform(0.5, 1.5, c)
    share_c = w / w.sum() * media_share
    frames, out = (
        [],
        {
            k: []
            for k in (
                "roas",
                "contribution",
                "alpha",
                "kappa",
                "slope",
                "share",
                "beta",
                "target_scale",
                "channel_scale",
                "drift",
            )
        },
    )
    tt = np.arange(t) / max(t - 1, 1)
    doy = dates.day_of_year.to_numpy()
    for name in groups:
        z = rng.standard_normal((4, c))
        alpha = 1 / (1 + np.exp(-(logit(alpha_c) + spread * z[0])))
        kappa_rel = kappa_c * np.exp(spread * z[1])
        slope = slope_c * np.exp(0.5 * spread * z[2])
        share = share_c * np.exp(spread * z[3])
        spend = _spend(rng, t, c) * rng.uniform(0.3, 3.0)
        shape = np.zeros(t)
        if drift > 0:
            shape = _smooth_drift(rng, t)
            spend = spend * np.exp(0.3 * shape)[:, None]
        xs = spend / spend.max(axis=0)
        kscale = np.nanmean(np.where(xs > 0, xs, np.nan), axis=0)
        kappa = kappa_rel * kscale
        sat, _ = K.media_transform(
            xs, "geometric", "hill", (alpha,), (kappa, slope), l_max=l_max, normalize=True
        )
        season = rng.uniform(0.03, 0.08) * np.sin(
            2 * np.pi * doy / 365.25 + rng.uniform(0, 1)
        ) + 0.03 * np.cos(4 * np.pi * doy / 365.25)
        event = np.zeros(t)
        event[rng.choice(t, size=max(1, t // 40), replace=False)] = 1.0
        baseline = 1.0 + rng.uniform(-0.1, 0.25) * tt + season + 0.12 * event
        baseline = baseline + drift * shape
        # share: mean contribution as a fraction of mean sales (the model's channel_share).
        mean_y = baseline.mean() / (1 - share.sum())
        beta = share * mean_y / np.maximum(sat.mean(axis=0), 1e-9)
        media = sat * beta
        target_scale = 1e5 * rng.uniform(0.3, 3.0)
        mu = baseline + media.sum(axis=1)
        y = (mu + noise * mu.mean() * rng.standard_normal(t)) * target_scale
        contribution = media * target_scale
        df = pd.DataFrame({group: name, "date": dates, "sales": y})
        for j, ch in enumerate(channels):
            df[ch] = spend[:, j]
        df["event"] = event
        frames.append(df)
        out["roas"].append(contribution.sum(axis=0) / spend.sum(axis=0))
        out["contribution"].append(contribution)
        out["alpha"].append(alpha)
        out["kappa"].append(kappa)
        out["slope"].append(slope)
        out["share"].append(share)
        out["beta"].append(beta)
        out["target_scale"].append(target_scale)
        out["channel_scale"].append(spend.max(axis=0))
        out["drift"].append(drift * shape * target_scale)
    truth = {k: np.asarray(v) for k, v in out.items()}
    truth.update(groups=groups, channels=tuple(channels))
    return pd.concat(frames, ignore_index=True), truth


def _smooth_drift(rng, t: int) -> np.ndarray:
    """(t,) a smooth random curve with mean 0 and root-mean-square 1: three sines with periods
    of 35-150 weeks, random phases and weights."""
    x = np.arange(t, dtype=float)
    f = sum(
        rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * x / rng.uniform(35.0, 150.0) + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    f = f - f.mean()
    return f / max(float(np.sqrt(np.mean(f**2))), 1e-12)


def panel_true_lift(
    truth: dict, g: int, channel: str, spend_before: float, spend_after: float, periods: float
) -> float:
    """The true incremental sales of a sustained spend change in group ``g`` of a
    :func:`make_panel` panel (geometric adstock normalised, so the steady state is the
    saturation of the spend itself), over ``periods`` periods."""
    c = list(truth["channels"]).index(channel)
    cs = float(truth["channel_scale"][g, c])
    k, s = float(truth["kappa"][g, c]), float(truth["slope"][g, c])
    hill = lambda x: x**s / (k**s + x**s)  # noqa: E731
    d = hill(spend_after / cs) - hill(spend_before / cs)
    return float(periods * truth["beta"][g, c] * d * truth["target_scale"][g])

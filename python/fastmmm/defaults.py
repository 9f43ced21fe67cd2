"""Sampler defaults shared by every fit path: ``MMM.fit``, ``HierarchicalMMM.fit``,
``fit_many`` and every CLI command. One place, so the API and the commands agree.

Two chains: a 156-week national fit samples in about a second on two cores, and
R-hat over four split half-chains catches the failures we see in recovery
studies; pass more chains for a final model.
"""

DRAWS = 1000
TUNE = 1000
CHAINS = 2

#: A fit whose draws fail the R-hat or ESS checks goes on sampling the same chains, in
#: rounds of half its draws, up to this many times its draws (the Rust sampler; the
#: pytensor backend samples exactly ``draws``). In the recovery study (benches/
#: bench_recovery.py) a quarter of the fits need more than 1000 draws for R-hat < 1.01 with
#: two chains; most of them pass at 1500-2000, a collinear pair at 3000-4000.
EXTEND_UP_TO = 4


#: Raised whenever a default changes what a fit gives (priors, sampler policy), so that a
#: resumed ``fit_many`` refits the brands fitted under other defaults. 2: ROAS prior spread
#: 1.2, extension until converged, resampling after divergences.
FIT_DEFAULTS_VERSION = 2


def max_draws(draws: int) -> int:
    """The default most posterior draws per chain a fit of ``draws`` draws may extend to."""
    return EXTEND_UP_TO * int(draws)

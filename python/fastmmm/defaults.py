"""Sampler defaults shared by every fit path: ``MMM.fit``, ``HierarchicalMMM.fit``,
``fit_many`` and every CLI command. One place, so the API and the commands agree.

Two chains: a 156-week national fit samples in about a second on two cores, and
R-hat over four split half-chains catches the failures we see in recovery
studies; pass more chains for a final model.
"""

DRAWS = 1000
TUNE = 1000
CHAINS = 2

"""Saved models of earlier versions load and give the summary they gave when saved.

``tests/fixtures/saved_v1_*`` were written by fastmmm before the move to the in-core
sampler and today's stack (PyMC 6, PyTensor 3, ArviZ 1); ``expected_summary.json`` is the
``summary()`` of each as it was then. Every value there must come back (keys added since,
such as ``media_prior``, may be new)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastmmm.results import load

FIXTURES = Path(__file__).parent / "fixtures"


def _same(want, got, path="summary"):
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        for k, v in want.items():
            assert k in got, f"{path}.{k} is missing"
            _same(v, got[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (a, b) in enumerate(zip(want, got)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), path
    else:
        assert got == want, path


@pytest.mark.parametrize("name", ["saved_v1_national", "saved_v1_hierarchical"])
def test_saved_model_of_an_earlier_version_gives_the_same_summary(name):
    d = FIXTURES / name
    want = json.loads((d / "expected_summary.json").read_text())
    result = load(d)
    got = json.loads(json.dumps(result.summary(), default=float))
    _same(want, got)
    # the check is not vacuous: ROAS figures are compared
    assert "roas" in json.dumps(want)

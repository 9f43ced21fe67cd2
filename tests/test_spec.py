"""Tests of fastmmm.priors (Prior) and fastmmm.spec (ModelSpec)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from fastmmm.priors import DISTRIBUTIONS, Prior, as_prior, parse_prior
from fastmmm.spec import ADSTOCK_KINDS, SATURATION_KINDS, ModelSpec, PriorMap


# ============================================================================ Prior
class TestPrior:
    def test_values_are_floats_and_compare_by_value(self):
        p = Prior("Beta", alpha=2, beta=2)
        assert p.kwargs == {"alpha": 2.0, "beta": 2.0}
        assert p == Prior("Beta", beta=2.0, alpha=2.0)
        assert hash(p) == hash(Prior("Beta", alpha=2.0, beta=2.0))
        assert p != Prior("Beta", alpha=2, beta=3)
        assert p["alpha"] == 2.0
        assert p.size is None

    def test_canonical_parameter_order_and_str(self):
        p = Prior("Normal", sigma=1, mu=-0.5)
        assert [k for k, _ in p.params] == ["mu", "sigma"]
        assert str(p) == "Normal(mu=-0.5, sigma=1.0)"
        assert repr(p) == "Prior('Normal', mu=-0.5, sigma=1.0)"

    @pytest.mark.parametrize(
        "prior",
        [
            Prior("Normal", sigma=2.5),
            Prior("HalfNormal", sigma=2),
            Prior("LogNormal", mu=-1, sigma=0.5),
            Prior("Gamma", alpha=2, beta=1),
            Prior("Gamma", mu=1.5, sigma=0.5),
            Prior("Beta", alpha=1, beta=3),
            Prior("Exponential", lam=1),
            Prior("Exponential", scale=2),
            Prior("StudentT", nu=3, mu=0, sigma=1),
            Prior("HalfStudentT", nu=4, sigma=1),
            Prior("TruncatedNormal", mu=0, sigma=1, lower=0),
            Prior("Uniform", lower=-1, upper=1),
            Prior("HalfNormal", sigma=[1, 2, 0.5]),
        ],
        ids=str,
    )
    def test_round_trips(self, prior):
        assert Prior.parse(str(prior)) == prior
        assert parse_prior(str(prior)) == prior
        assert Prior.from_dict(prior.to_dict()) == prior
        assert Prior.from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
        assert as_prior(prior) is prior
        assert as_prior(prior.to_dict()) == prior
        assert prior.dist in DISTRIBUTIONS

    def test_from_dict_nested_params(self):
        assert Prior.from_dict({"dist": "HalfNormal", "params": {"sigma": 3}}) == Prior("HalfNormal", sigma=3)

    def test_parse_compact_forms(self):
        assert Prior.parse("  HalfNormal( sigma = 2 ) ") == Prior("HalfNormal", sigma=2)
        assert Prior.parse("Normal(mu=-1e-2, sigma=1)") == Prior("Normal", mu=-0.01, sigma=1)
        assert Prior.parse("Beta(alpha=[1, 2], beta=3)").kwargs == {
            "alpha": (1.0, 2.0),
            "beta": 3.0,
        }

    @pytest.mark.parametrize(
        "args, kwargs, match",
        [
            (
                ("Cauchy",),
                {"beta": 1},
                r"unknown prior distribution 'Cauchy'; valid distributions: Normal, ",
            ),
            (
                ("Normal",),
                {"sd": 1, "sigma": 1},
                r"unknown parameter\(s\) 'sd'; valid parameters: mu, sigma",
            ),
            (("Normal",), {"mu": 1}, r"requires parameters \(sigma\); got mu"),
            (("Beta",), {"alpha": 1}, r"requires parameters \(alpha, beta\)"),
            (("Gamma",), {"alpha": 1, "sigma": 2}, r"\(alpha, beta\) or \(mu, sigma\)"),
            (("Gamma",), {"alpha": 1, "beta": 2, "mu": 1}, r"exactly one parameterisation"),
            (("HalfNormal",), {"sigma": -1}, r"'sigma' must be > 0"),
            (("HalfNormal",), {"sigma": 0}, r"'sigma' must be > 0"),
            (("Beta",), {"alpha": [1, 0], "beta": 1}, r"'alpha' must be > 0"),
            (("Normal",), {"sigma": float("nan")}, r"must be finite"),
            (("Normal",), {"mu": float("inf"), "sigma": 1}, r"must be finite"),
            (("Normal",), {"sigma": True}, r"must be a real number"),
            (("Normal",), {"sigma": "1"}, r"must be a real number"),
            (("Normal",), {"sigma": []}, r"must not be empty"),
            (("Normal",), {"sigma": [[1.0]]}, r"must be a real number"),
            (("Uniform",), {"lower": 1, "upper": 1}, r"'lower' must be < 'upper'"),
            (
                ("TruncatedNormal",),
                {"sigma": 1, "lower": [0, 2], "upper": 1},
                r"'lower' must be < 'upper'",
            ),
            (("Beta",), {"alpha": [1, 2], "beta": [1, 2, 3]}, r"different lengths"),
        ],
    )
    def test_invalid(self, args, kwargs, match):
        with pytest.raises(ValueError, match=match):
            Prior(*args, **kwargs)

    @pytest.mark.parametrize(
        "text, match",
        [
            ("HalfNormal", "expected the form"),
            ("HalfNormal(2, 3)", "at most 1 positional"),
            ("HalfNormal(sigma=2", "expected the form"),
            ("pm.HalfNormal(sigma=2)", "expected the form"),
            ("HalfNormal(**{'sigma': 2})", "expected the form"),
            ("HalfNormal(sigma=x)", "value of 'sigma' must be a number"),
            ("HalfNormal(sigma=__import__('os'))", "value of 'sigma' must be a number"),
            ("HalfNormal(scale=2)", "unknown parameter"),
            ("Halfnormal(sigma=2)", "unknown prior distribution"),
        ],
    )
    def test_parse_errors(self, text, match):
        with pytest.raises(ValueError, match=match):
            Prior.parse(text)

    def test_as_prior_rejects_other_types(self):
        with pytest.raises(ValueError, match="cannot interpret 3"):
            as_prior(3)
        with pytest.raises(ValueError, match="needs a 'dist' key"):
            as_prior({"sigma": 1})

    def test_per_channel_select(self):
        p = Prior("Gamma", alpha=[1, 2, 3], beta=0.5)
        assert p.size == 3
        assert p.select(1) == Prior("Gamma", alpha=2, beta=0.5)
        assert p.select(-1) == Prior("Gamma", alpha=3, beta=0.5)
        assert Prior("HalfNormal", sigma=1).select(5) == Prior("HalfNormal", sigma=1)
        with pytest.raises(IndexError):
            p.select(3)

    def test_frozen(self):
        p = Prior("HalfNormal", sigma=1)
        with pytest.raises(AttributeError):
            p.dist = "Normal"


@pytest.fixture(scope="module")
def pm():
    return pytest.importorskip("pymc")


class TestPriorCreate:
    def test_create_scalar_and_per_channel(self, pm):
        with pm.Model(coords={"channel": ["a", "b", "c"]}) as m:
            Prior("HalfNormal", sigma=2).create("sigma")
            Prior("Beta", alpha=1, beta=3).create("alpha", dims="channel")
            Prior("HalfNormal", sigma=[1.0, 2.0, 3.0]).create("beta", dims="channel")
            Prior("Gamma", alpha=[1.0, 2.0], beta=1).create("kappa")  # shape from the list
            Prior("Normal", mu=[0.0, 1.0, 2.0], sigma=1).create("g", shape=(4, 3))
        ip = m.initial_point()
        assert ip["sigma_log__"].shape == ()
        assert ip["alpha_logodds__"].shape == (3,)
        assert ip["beta_log__"].shape == (3,)
        assert ip["kappa_log__"].shape == (2,)
        assert ip["g"].shape == (4, 3)
        # per-channel values reach PyMC as arrays
        np.testing.assert_allclose(ip["g"][0], [0.0, 1.0, 2.0])
        assert type(m["sigma"].owner.op).__name__ == "HalfNormalRV"

    def test_create_length_mismatch(self, pm):
        with pm.Model(coords={"channel": ["a", "b"]}):
            with pytest.raises(ValueError, match="length 3 but the variable's last dimension has length 2"):
                Prior("HalfNormal", sigma=[1, 2, 3]).create("beta", dims="channel")
            with pytest.raises(ValueError, match="last dimension has length 4"):
                Prior("HalfNormal", sigma=[1, 2, 3]).create("beta2", shape=4)

    def test_create_outside_model(self, pm):
        with pytest.raises(RuntimeError, match="inside a `with pm.Model"):
            Prior("HalfNormal", sigma=1).create("x")


# ============================================================================ ModelSpec
def _spec(**kw):
    base = {"channels": ("tv", "radio"), "controls": ("price",)}
    base.update(kw)
    return ModelSpec(**base)


class TestModelSpecBasics:
    def test_defaults(self):
        s = ModelSpec(channels=["tv"])
        assert s.channels == ("tv",)
        assert s.date_column == "date" and s.target == "y" and s.controls == ()
        assert s.adstock == "geometric" and s.saturation == "logistic"
        assert s.adstock_by_channel == ("geometric",) and s.saturation_by_channel == ("logistic",)
        assert (s.l_max, s.adstock_normalize, s.yearly_seasonality) == (8, True, 2)
        assert (s.trend, s.intercept, s.likelihood, s.log_target) == (True, True, "normal", False)
        assert (s.target_scaling, s.channel_scaling) == ("max", "max")
        assert s.priors == {} and isinstance(s.priors, PriorMap)
        assert (s.n_channels, s.n_controls, s.n_fourier) == (1, 0, 4)

    def test_single_string_channel(self):
        assert ModelSpec(channels="tv").channels == ("tv",)

    def test_kinds_normalised_per_channel(self):
        s = _spec(adstock="delayed", saturation={"radio": "hill", "tv": "Tanh"})
        assert s.adstock == "delayed"  # uniform: one str
        assert s.saturation == ("tanh", "hill")  # mixed: per-channel tuple in channel order
        assert s.adstock_by_channel == ("delayed", "delayed")
        assert s.saturation_by_channel == ("tanh", "hill")
        assert dict(zip(s.channels, s.saturation_by_channel)) == {"tv": "tanh", "radio": "hill"}
        mixed = _spec(adstock=["geometric", "weibull_cdf"])
        assert mixed.adstock == mixed.adstock_by_channel == ("geometric", "weibull_cdf")
        # every way of writing the same kinds gives an equal spec
        assert _spec(adstock={"tv": "geometric", "radio": "geometric"}) == _spec(adstock="GEOMETRIC")
        assert _spec(adstock=("geometric", "geometric")).adstock == "geometric"

    def test_frozen_and_hashable(self):
        s = _spec(priors={"beta": "HalfNormal(sigma=2)"})
        with pytest.raises(AttributeError):
            s.l_max = 3
        assert s == _spec(priors={"beta": Prior("HalfNormal", sigma=2)})
        assert hash(s) == hash(_spec(priors={"beta": {"dist": "HalfNormal", "sigma": 2}}))
        assert {s: 1}[_spec(priors={"beta": "HalfNormal(sigma=2.0)"})] == 1

    def test_replace(self):
        s = _spec(adstock="delayed", l_max=4)
        t = s.replace(channels=("a", "b", "c"))
        assert t.adstock_by_channel == ("delayed",) * 3 and t.l_max == 4
        with pytest.raises(ValueError, match="got 2 kinds for 3 channels"):
            _spec(saturation=("hill", "tanh")).replace(channels=("a", "b", "c"))
        assert s.replace(l_max=10).l_max == 10
        with pytest.raises(ValueError, match="unknown ModelSpec field"):
            s.replace(lmax=3)


class TestModelSpecValidation:
    @pytest.mark.parametrize(
        "kw, match",
        [
            ({"channels": ()}, "at least one channel"),
            ({"channels": ("tv", "tv")}, "channels must be unique; repeated: 'tv'"),
            ({"channels": ("tv", "")}, "non-empty strings"),
            ({"channels": (1, 2)}, "non-empty strings"),
            ({"channels": None}, "list of column names"),
            ({"controls": ("p", "p")}, "controls must be unique"),
            ({"date_column": ""}, "date_column must be a non-empty"),
            ({"target": None}, "target must be a non-empty"),
            (
                {"adstock": "exponential"},
                (
                    "invalid adstock kind 'exponential'; valid: 'geometric', 'delayed', "
                    "'weibull_pdf', 'weibull_cdf'"
                ),
            ),
            (
                {"saturation": "sigmoid"},
                ("invalid saturation kind 'sigmoid'; valid: 'hill', 'logistic', 'michaelis_menten', 'tanh'"),
            ),
            (
                {"saturation": {"tv": "hill", "radio": "nope"}},
                "saturation kind for channel 'radio'",
            ),
            (
                {"adstock": {"tv": "geometric", "print": "geometric"}},
                "unknown channel\\(s\\) 'print'",
            ),
            ({"adstock": {"tv": "geometric"}}, "no kind given for channel\\(s\\) 'radio'"),
            ({"adstock": ["geometric"]}, "got 1 kinds for 2 channels"),
            ({"adstock": 3}, "kind name or a"),
            ({"l_max": 0}, "l_max must be >= 1"),
            ({"l_max": 2.5}, "l_max must be an integer"),
            ({"l_max": True}, "l_max must be an integer"),
            ({"yearly_seasonality": -1}, "yearly_seasonality must be >= 0"),
            ({"trend": "yes"}, "trend must be true or false"),
            ({"adstock_normalize": 1}, "adstock_normalize must be true or false"),
            (
                {"likelihood": "poisson"},
                "invalid likelihood 'poisson'; valid: 'normal', 'studentt'",
            ),
            ({"target_scaling": "median"}, "invalid target_scaling"),
            ({"channel_scaling": "std"}, "invalid channel_scaling 'std'; valid: 'max', 'mean'"),
            ({"controls": ("tv",)}, "'tv' is used as channel and control"),
            ({"target": "radio"}, "'radio' is used as target and channel"),
            ({"date_column": "price"}, "'price' is used as date and control"),
            ({"priors": [("beta", "HalfNormal(sigma=1)")]}, "priors must be a mapping"),
        ],
    )
    def test_invalid_fields(self, kw, match):
        with pytest.raises(ValueError, match=match):
            _spec(**kw)

    @pytest.mark.parametrize(
        "kw, priors, match",
        [
            (
                {},
                {"betta": "HalfNormal(sigma=1)"},
                (
                    r"unknown prior name 'betta'; valid names for this spec: "
                    r"intercept, trend, gamma_control, gamma_fourier, roas, beta, adstock_alpha, saturation_lam, sigma"
                ),
            ),
            (
                {},
                {"nu": "Gamma(alpha=2, beta=0.1)"},
                r"'nu' \(it does not apply.*likelihood='studentt'",
            ),
            ({"intercept": False}, {"intercept": "Normal(sigma=1)"}, r"intercept=False"),
            ({"trend": False}, {"trend": "Normal(sigma=1)"}, r"trend=False"),
            ({"controls": ()}, {"gamma_control": "Normal(sigma=1)"}, r"no controls"),
            (
                {"yearly_seasonality": 0},
                {"gamma_fourier": "Normal(sigma=1)"},
                r"yearly_seasonality=0",
            ),
            ({}, {"adstock_theta": "HalfNormal(sigma=1)"}, r"adstock kinds used: geometric"),
            ({}, {"saturation_kappa": "HalfNormal(sigma=1)"}, r"saturation kinds used: logistic"),
            (
                {},
                {"beta.print": "HalfNormal(sigma=1)"},
                (
                    r"prior 'beta.print': unknown channel 'print'; "
                    r"channels: tv, radio"
                ),
            ),
            ({}, {"sigma.tv": "HalfNormal(sigma=1)"}, r"per-channel overrides are only for"),
            (
                {"saturation": {"tv": "hill", "radio": "logistic"}},
                {"saturation_kappa.radio": "Gamma(alpha=2, beta=1)"},
                r"channel 'radio' \(adstock 'geometric', saturation 'logistic'\) has no parameter 'saturation_kappa'",
            ),
            ({}, {"beta.tv": "HalfNormal(sigma=[1, 2])"}, r"must have scalar parameters"),
            (
                {},
                {"beta": "HalfNormal(sigma=[1, 2, 3])"},
                r"length 3, expected 2 \(one per channel",
            ),
            (
                {},
                {"gamma_control": "Normal(sigma=[1, 2])"},
                r"length 2, expected 1 \(one per control",
            ),
            (
                {},
                {"gamma_fourier": "Normal(sigma=[1, 2])"},
                r"expected 4 \(one per Fourier feature",
            ),
            ({}, {"sigma": "HalfNormal(sigma=[1, 2])"}, r"'sigma' is a scalar parameter"),
            (
                {},
                {"beta": "HalfNormal(sd=1)"},
                r"prior 'beta': Prior\('HalfNormal'\): unknown parameter",
            ),
            ({}, {"beta": 2.0}, r"prior 'beta': cannot interpret 2.0"),
        ],
    )
    def test_invalid_priors(self, kw, priors, match):
        with pytest.raises(ValueError, match=match):
            _spec(priors=priors, **kw)

    def test_valid_prior_names_depend_on_kinds(self):
        s = _spec(
            adstock={"tv": "delayed", "radio": "weibull_pdf"},
            saturation="hill",
            likelihood="studentt",
        )
        assert s.prior_names() == (
            "intercept", "trend", "gamma_control", "gamma_fourier", "roas", "beta",
            "adstock_alpha", "adstock_theta", "adstock_lam", "adstock_k",
            "saturation_kappa", "saturation_slope", "sigma", "nu",
        )  # fmt: skip


class TestModelSpecPriors:
    def test_prior_lookup(self):
        s = _spec(
            saturation="hill",
            priors={
                "beta": "HalfNormal(sigma=[1, 2])",
                "saturation_kappa": "Gamma(alpha=2, beta=1)",
                "saturation_kappa.radio": "Gamma(alpha=3, beta=1)",
                "sigma": "HalfNormal(sigma=0.5)",
            },
        )
        assert s.prior("beta") == Prior("HalfNormal", sigma=[1, 2])
        assert s.prior("beta", "tv") == Prior("HalfNormal", sigma=1)
        assert s.prior("beta", channel="radio") == Prior("HalfNormal", sigma=2)
        assert s.prior("saturation_kappa", "tv") == Prior("Gamma", alpha=2, beta=1)
        assert s.prior("saturation_kappa", "radio") == Prior("Gamma", alpha=3, beta=1)
        assert s.prior("sigma") == Prior("HalfNormal", sigma=0.5)
        # no override: None, the model chooses the default
        assert s.prior("intercept") is None
        assert s.prior("adstock_alpha", "tv") is None
        assert s.prior("nu") is None  # a name of some spec, not of this one
        with pytest.raises(ValueError, match="unknown prior name 'kappa'; valid names: intercept"):
            s.prior("kappa")
        with pytest.raises(ValueError, match="unknown channel 'tvv'; channels: tv, radio"):
            s.prior("beta", "tvv")

    def test_nested_per_channel_form(self):
        s = _spec(priors={"beta": {"tv": "HalfNormal(sigma=1)", "radio": {"dist": "HalfNormal", "sigma": 3}}})
        assert set(s.priors) == {"beta.tv", "beta.radio"}
        assert s.prior("beta", "radio") == Prior("HalfNormal", sigma=3)
        assert s.prior("beta") is None

    def test_no_default_priors_stored(self):
        assert dict(ModelSpec(channels=["tv"]).priors) == {}


# ---------------------------------------------------------------------------- serialisation
def _rich_spec():
    return ModelSpec(
        date_column="week",
        target="sales",
        channels=("tv", "radio", "search"),
        controls=("price", "promo"),
        adstock={"tv": "weibull_cdf", "radio": "geometric", "search": "delayed"},
        saturation="michaelis_menten",
        l_max=12,
        adstock_normalize=False,
        yearly_seasonality=3,
        trend=False,
        intercept=True,
        likelihood="studentt",
        log_target=True,
        target_scaling="mean",
        channel_scaling="mean",
        priors={
            "beta": "HalfNormal(sigma=[0.5, 1.25, 2.0])",
            "beta.search": "HalfNormal(sigma=0.1)",
            "adstock_alpha": "Beta(alpha=1, beta=3)",
            "adstock_lam.tv": "Gamma(mu=2, sigma=1)",
            "saturation_lam": "Gamma(alpha=3, beta=1)",
            "gamma_control": "Normal(mu=0, sigma=[1, 0.3])",
            "nu": "Gamma(alpha=2, beta=0.1)",
            "sigma": "HalfStudentT(nu=4, sigma=0.3333333333333333)",
        },
    )


class TestSerialisation:
    def test_dict_and_json_round_trip(self):
        s = _rich_spec()
        d = s.to_dict()
        assert d["spec_version"] == 2 and d["media_prior"] == "roas"
        assert d["adstock"] == {"tv": "weibull_cdf", "radio": "geometric", "search": "delayed"}
        assert d["saturation"] == "michaelis_menten"
        assert d["priors"]["beta"] == {"dist": "HalfNormal", "sigma": [0.5, 1.25, 2.0]}
        assert ModelSpec.from_dict(d) == s
        text = s.to_json()
        assert json.loads(text) == d
        back = ModelSpec.from_json(text)
        assert back == s and back.structure_key() == s.structure_key()
        assert back.to_json() == text
        assert ModelSpec.from_json(ModelSpec(channels=["x"]).to_json()) == ModelSpec(channels=["x"])

    def test_from_dict_errors(self):
        with pytest.raises(
            ValueError, match=r"unknown model spec key\(s\) 'chanels'; valid keys: channels, "
        ):
            ModelSpec.from_dict({"chanels": ["tv"]})
        with pytest.raises(ValueError, match="needs 'channels'"):
            ModelSpec.from_dict({"target": "y"})
        with pytest.raises(ValueError, match="unsupported spec_version 99"):
            ModelSpec.from_dict({"channels": ["tv"], "spec_version": 99})
        with pytest.raises(ValueError, match="must be a mapping"):
            ModelSpec.from_dict(["tv"])

    def test_toml(self, tmp_path):
        path = tmp_path / "model.toml"
        path.write_text(
            """
date_column = "week"
target = "sales"
channels = ["tv", "radio", "search"]
controls = ["price", "promo"]
saturation = "michaelis_menten"
l_max = 12
adstock_normalize = false
yearly_seasonality = 3
trend = false
likelihood = "studentt"
log_target = true
target_scaling = "mean"
channel_scaling = "mean"

[adstock]
tv = "weibull_cdf"
radio = "geometric"
search = "delayed"

[priors]
beta = "HalfNormal(sigma=[0.5, 1.25, 2.0])"
"beta.search" = "HalfNormal(sigma=0.1)"
adstock_alpha = { dist = "Beta", alpha = 1, beta = 3 }
"adstock_lam.tv" = "Gamma(mu=2, sigma=1)"
saturation_lam = "Gamma(alpha=3, beta=1)"
gamma_control = { dist = "Normal", mu = 0, sigma = [1, 0.3] }
nu = "Gamma(alpha=2, beta=0.1)"
sigma = "HalfStudentT(nu=4, sigma=0.3333333333333333)"
""",
            encoding="utf-8",
        )
        s = ModelSpec.from_toml(path)
        assert s == _rich_spec()
        assert ModelSpec.from_json(s.to_json()) == s

    def test_toml_section_and_errors(self, tmp_path):
        path = tmp_path / "cfg.toml"
        path.write_text('[model]\nchannels = ["tv"]\n[model.priors]\nbeta.tv = "HalfNormal(sigma=2)"\n')
        s = ModelSpec.from_toml(path, section="model")
        assert s.prior("beta", "tv") == Prior("HalfNormal", sigma=2)  # unquoted dotted key: nested form
        with pytest.raises(ValueError, match=r"no \[fastmmm\] table"):
            ModelSpec.from_toml(path, section="fastmmm")
        bad = tmp_path / "bad.toml"
        bad.write_text("channels = [\n")
        with pytest.raises(ValueError, match="invalid TOML"):
            ModelSpec.from_toml(bad)
        badkind = tmp_path / "badkind.toml"
        badkind.write_text('channels = ["tv"]\nadstock = "carryover"\n')
        with pytest.raises(ValueError, match="invalid adstock kind 'carryover'; valid: 'geometric'"):
            ModelSpec.from_toml(badkind)

    def test_yaml(self, tmp_path):
        pytest.importorskip("yaml")
        path = tmp_path / "model.yaml"
        path.write_text(
            "channels: [tv, radio]\nsaturation: {tv: hill, radio: tanh}\n"
            "priors:\n  beta: HalfNormal(sigma=2)\n  saturation_kappa.tv: {dist: Gamma, alpha: 2, beta: 1}\n"
        )
        s = ModelSpec.from_yaml(path)
        assert s == ModelSpec(
            channels=["tv", "radio"],
            saturation=("hill", "tanh"),
            priors={
                "beta": Prior("HalfNormal", sigma=2),
                "saturation_kappa.tv": Prior("Gamma", alpha=2, beta=1),
            },
        )

    def test_yaml_missing_pyyaml(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
        path = tmp_path / "model.yaml"
        path.write_text("channels: [tv]\n")
        with pytest.raises(ImportError, match="needs PyYAML.*ModelSpec.from_toml"):
            ModelSpec.from_yaml(path)


# ---------------------------------------------------------------------------- structure key
class TestStructureKey:
    def test_equal_when_only_names_or_scaling_differ(self):
        a = _spec(priors={"beta.tv": "HalfNormal(sigma=1)"})
        b = ModelSpec(
            date_column="week",
            target="sales",
            channels=("TV", "Radio"),
            controls=("temp",),
            target_scaling="mean",
            channel_scaling="mean",
            priors={"beta.TV": "HalfNormal(sigma=1.0)"},
        )
        assert a.structure_key() == b.structure_key()
        assert hash(a.structure_key()) == hash(b.structure_key())
        assert a != b

    @pytest.mark.parametrize(
        "change",
        [
            {"adstock": "delayed"},
            {"adstock": {"tv": "geometric", "radio": "delayed"}},
            {"saturation": "hill"},
            {"l_max": 9},
            {"adstock_normalize": False},
            {"yearly_seasonality": 3},
            {"trend": False},
            {"intercept": False},
            {"likelihood": "studentt"},
            {"log_target": True},
            {"channels": ("tv", "radio", "search")},
            {"controls": ()},
            {"priors": {"beta": "HalfNormal(sigma=1)"}},
            {"priors": {"beta.tv": "HalfNormal(sigma=1.5)"}},
            {"priors": {"beta.radio": "HalfNormal(sigma=1)"}},
        ],
        ids=lambda d: ",".join(d),
    )
    def test_differs_on_structure(self, change):
        base = _spec(priors={"beta.tv": "HalfNormal(sigma=1)"})
        assert base.replace(**change).structure_key() != base.structure_key()

    def test_kinds_available(self):
        assert set(ADSTOCK_KINDS) == {"geometric", "delayed", "weibull_pdf", "weibull_cdf"}
        assert set(SATURATION_KINDS) == {"hill", "logistic", "michaelis_menten", "tanh"}

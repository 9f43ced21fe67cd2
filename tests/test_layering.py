"""One set of sampler defaults for every fit path, and module layering without cycles."""

import ast
import inspect
from pathlib import Path

import pytest

from fastmmm import defaults

PKG = Path(__file__).resolve().parents[1] / "python" / "fastmmm"


def _imports(module: str) -> set[str]:
    """Every fastmmm module ``module`` imports, at the top or inside functions."""
    tree = ast.parse((PKG / module).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastmmm"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fastmmm"))
    return out


def test_api_and_cli_share_the_sampler_defaults():
    from fastmmm.batch import fit_many
    from fastmmm.cli import build_parser
    from fastmmm.fit import MMM
    from fastmmm.hierarchical import HierarchicalMMM

    want = {"draws": defaults.DRAWS, "tune": defaults.TUNE, "chains": defaults.CHAINS}
    for fn in (MMM.fit, HierarchicalMMM.fit, fit_many):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in want} == want, fn.__qualname__
    parser = build_parser()
    for argv in (
        ["demo"],
        ["fit", "d.csv", "--out", "o"],
        ["fit-many", "d.csv", "--out", "o"],
        ["fit-hierarchical", "d.csv", "--out", "o"],
    ):
        args = vars(parser.parse_args(argv))
        assert {k: args[k] for k in want} == want, argv[0]


@pytest.mark.parametrize(
    "module,forbidden",
    [
        ("batch.py", {"fastmmm.cli"}),
        ("outputs.py", {"fastmmm.cli", "fastmmm.batch"}),
        ("optimize/budget.py", {"fastmmm.layout", "fastmmm.tvp", "fastmmm.model", "fastmmm.results"}),
    ],
)
def test_layering(module, forbidden):
    assert not (_imports(module) & forbidden), _imports(module) & forbidden


def test_optimiser_calls_no_private_method_of_a_result():
    src = (PKG / "optimize" / "budget.py").read_text()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "result":
            assert not node.attr.startswith("_"), f"result.{node.attr}"


def test_no_module_imports_another_modules_private_names():
    """Names used across modules are public: no ``from fastmmm.x import _name`` except from a
    private module (``_core``, ``ops._base``, ``ops._ffi``: a package's internals), and no
    call of PyTensor's private ``_props_dict`` (``ops._base.props_of`` reads the public
    ``__props__``)."""
    offences = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastmmm")):
                continue
            if node.module.rsplit(".", 1)[-1].startswith("_"):
                continue  # a private module's names are its package's
            pkg_dir = PKG.joinpath(*node.module.split(".")[1:])
            for a in node.names:
                private = a.name.startswith("_") and not a.name.startswith("__")
                a_module = a.name == "_core" or (pkg_dir / f"{a.name}.py").exists()
                if private and not a_module:
                    offences.append(f"{path.relative_to(PKG)}: from {node.module} import {a.name}")
        if "._props_dict(" in text:
            offences.append(f"{path.relative_to(PKG)}: PyTensor's private _props_dict")
    assert not offences, offences

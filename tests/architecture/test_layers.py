"""The architecture's rules, checked on the source (issue 15):

- ``crmbridge.core`` imports nothing of crmbridge outside core;
- ``crmbridge.canonical`` imports only core and canonical;
- ``crmbridge.adapters`` imports only core, canonical and adapters (never sync or cli);
- a vendor package (``adapters/zoho``, ``fxiaoke``, ``corebank_soap``, ``corebank_rest``…) imports no other vendor;
- ``crmbridge.sync`` reaches the adapters only through ``crmbridge.adapters.registry`` and ``crmbridge.adapters.base``;
- no ``_``-prefixed name is imported from the engine (``crmbridge.sync.engine``) outside the engine;
- no ``.connection`` is used outside the state store (``sync/state/``).

Every ``import`` counts: at module level, inside functions and under ``if TYPE_CHECKING:``. The product is scanned
(the repository root is the ``crmbridge`` package), not ``tests/`` or ``bench/``. A failure names every violation
as ``file:line``.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "crmbridge"
#: folders of the repository that are not part of the product
NOT_PRODUCT = frozenset({"tests", "bench", "build", "docs", "mappings", "config_examples", "var"})


@dataclass(frozen=True)
class Import:
    target: str          # the module imported (``crmbridge.adapters.base``)
    names: tuple[str, ...]   # names taken from it (``from X import a, b``); empty for ``import X``
    line: int


@dataclass
class Module:
    name: str            # ``crmbridge.sync.engine``
    path: Path           # relative to the scanned root
    imports: list[Import] = field(default_factory=list)
    connection_lines: list[int] = field(default_factory=list)

    def where(self, line: int) -> str:
        return f"{self.path.as_posix()}:{line}"

    def within(self, package: str) -> bool:
        return self.name == package or self.name.startswith(package + ".")


def _module_name(rel: Path, package: str) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _product_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if rel.parts[0] in NOT_PRODUCT or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if rel.parts[0].endswith(".egg-info"):
            continue
        out.append(rel)
    return out


def scan(root: Path = ROOT, package: str = PACKAGE) -> list[Module]:
    """Every product module under ``root`` (the ``package``) with the crmbridge modules it imports."""
    files = _product_files(root)
    known = {_module_name(rel, package) for rel in files}
    modules = []
    for rel in files:
        name = _module_name(rel, package)
        mod = Module(name, rel)
        tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=str(rel))
        is_pkg = rel.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        mod.imports.append(Import(alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                if not (base == package or base.startswith(package + ".")):
                    continue
                names = tuple(a.name for a in node.names)
                # ``from crmbridge.adapters import zoho`` imports the module crmbridge.adapters.zoho
                submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
                for sub in submodules:
                    mod.imports.append(Import(sub, (), node.lineno))
                rest = tuple(n for n in names if f"{base}.{n}" not in known)
                if rest or not submodules:
                    mod.imports.append(Import(base, rest, node.lineno))
        mod.connection_lines = sorted(_connection_uses(tree))
        modules.append(mod)
    return modules


def _connection_uses(tree: ast.AST) -> list[int]:
    """Lines using an attribute ``.connection``, except a request handler's own socket (``self.connection`` in a
    class deriving from ``…RequestHandler``: http.server's, not the state store's)."""
    out: list[int] = []

    def visit(node: ast.AST, in_handler: bool) -> None:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            in_handler = any(b.endswith("RequestHandler") for b in bases)
        if (isinstance(node, ast.Attribute) and node.attr == "connection"
                and not (in_handler and isinstance(node.value, ast.Name) and node.value.id == "self")):
            out.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_handler)

    visit(tree, False)
    return out


def _top(target: str, package: str = PACKAGE) -> str:
    """``crmbridge.sync.engine`` → ``sync``; ``crmbridge`` → ``""``."""
    rest = target[len(package) + 1:] if target.startswith(package + ".") else ""
    return rest.split(".")[0]


def vendor_packages(modules: list[Module], package: str = PACKAGE) -> set[str]:
    """``crmbridge.adapters.<vendor>`` for every sub-package of adapters/."""
    prefix = f"{package}.adapters."
    return {".".join(m.name.split(".")[:3]) for m in modules
            if m.name.startswith(prefix) and m.path.name == "__init__.py" and m.name.count(".") == 2}


# ------------------------------------------------------------------------------------------------------ the rules

def only_layers(modules: list[Module], layer: str, allowed: set[str], package: str = PACKAGE) -> list[str]:
    """Modules of ``layer`` importing a crmbridge module outside ``allowed`` top-level packages."""
    out = []
    for m in modules:
        if not m.within(f"{package}.{layer}"):
            continue
        for imp in m.imports:
            if _top(imp.target, package) not in allowed:
                out.append(f"{m.where(imp.line)}: {m.name} imports {imp.target}")
    return out


def core_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    return only_layers(modules, "core", {"core"}, package)


def canonical_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    return only_layers(modules, "canonical", {"core", "canonical"}, package)


def adapters_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    return only_layers(modules, "adapters", {"core", "canonical", "adapters"}, package)


def vendor_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    vendors = vendor_packages(modules, package)
    out = []
    for m in modules:
        own = next((v for v in vendors if m.within(v)), None)
        if own is None:
            continue
        for imp in m.imports:
            other = next((v for v in vendors if v != own and (imp.target == v or imp.target.startswith(v + "."))),
                         None)
            if other:
                out.append(f"{m.where(imp.line)}: {m.name} imports another vendor's {imp.target}")
    return out


def sync_vendor_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    allowed = {f"{package}.adapters.registry", f"{package}.adapters.base"}
    out = []
    for m in modules:
        if not m.within(f"{package}.sync"):
            continue
        for imp in m.imports:
            if _top(imp.target, package) == "adapters" and imp.target not in allowed:
                out.append(f"{m.where(imp.line)}: {m.name} imports {imp.target} (only adapters.registry and "
                           "adapters.base)")
    return out


def engine_private_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    engine = f"{package}.sync.engine"
    out = []
    for m in modules:
        if m.within(engine):
            continue
        for imp in m.imports:
            if imp.target == engine or imp.target.startswith(engine + "."):
                private = [n for n in imp.names if n.startswith("_")]
                if private:
                    out.append(f"{m.where(imp.line)}: {m.name} imports {', '.join(private)} from {imp.target}")
    return out


def connection_violations(modules: list[Module], package: str = PACKAGE) -> list[str]:
    state = f"{package}.sync.state"
    return [f"{m.where(line)}: {m.name} uses .connection" for m in modules if not m.within(state)
            for line in m.connection_lines]


def _fail_on(violations: list[str], rule: str) -> None:
    violations = sorted(violations, key=lambda v: (v.split(":")[0], int(v.split(":")[1])))
    assert not violations, f"{rule}: {len(violations)} violation(s)\n" + "\n".join(violations)


# ------------------------------------------------------------------------------------------------------ the tests

@pytest.fixture(scope="module")
def modules() -> list[Module]:
    found = scan()
    assert any(m.name == "crmbridge.sync.engine" or m.name.startswith("crmbridge.sync.engine.") for m in found)
    return found


def test_core_imports_nothing_above_it(modules: list[Module]) -> None:
    _fail_on(core_violations(modules), "crmbridge.core imports only crmbridge.core")


def test_canonical_imports_only_core_and_canonical(modules: list[Module]) -> None:
    _fail_on(canonical_violations(modules), "crmbridge.canonical imports only core and canonical")


def test_adapters_import_no_engine_or_cli(modules: list[Module]) -> None:
    _fail_on(adapters_violations(modules), "crmbridge.adapters imports only core, canonical and adapters")


def test_vendor_packages_are_independent(modules: list[Module]) -> None:
    assert {"crmbridge.adapters.zoho", "crmbridge.adapters.fxiaoke"} <= vendor_packages(modules)
    _fail_on(vendor_violations(modules), "a vendor package imports no other vendor package")


def test_sync_reaches_vendors_only_through_registry_and_base(modules: list[Module]) -> None:
    _fail_on(sync_vendor_violations(modules), "crmbridge.sync imports adapters.registry and adapters.base only")


def test_no_private_engine_name_imported_outside_the_engine(modules: list[Module]) -> None:
    _fail_on(engine_private_violations(modules), "no _-prefixed name of crmbridge.sync.engine outside the engine")


def test_no_connection_outside_the_state_store(modules: list[Module]) -> None:
    _fail_on(connection_violations(modules), "no .connection outside sync/state/")


# ------------------------------------------------------------------------------------------ the scanner can fail

PLANTED = {
    "__init__.py": "",
    "core/__init__.py": "",
    "core/clean.py": "from crmbridge.core import errors\n",
    "core/errors.py": "",
    "core/bad.py": """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from crmbridge.adapters.base import FieldInfo


        def late():
            from crmbridge.sync import engine
            return engine
        """,
    "canonical/__init__.py": "",
    "canonical/bad.py": "from ..adapters import registry\n",
    "adapters/__init__.py": "",
    "adapters/base.py": "",
    "adapters/registry.py": "import crmbridge.core.errors\n",
    "adapters/zoho/__init__.py": "from crmbridge.adapters.fxiaoke import client\n",
    "adapters/fxiaoke/__init__.py": "import crmbridge.cli.main\n",
    "adapters/fxiaoke/client.py": "",
    "cli/__init__.py": "",
    "cli/main.py": "from crmbridge.sync.engine import JobRunner, _masked\n",
    "sync/__init__.py": "",
    "sync/engine.py": "from crmbridge.adapters.registry import adapter_class\n_masked = 1\nJobRunner = 2\n",
    "sync/worker.py": "from crmbridge.adapters.zoho import ZohoAdapter\n\n\ndef f(tx):\n    return tx.connection\n",
    "sync/state/__init__.py": "",
    "sync/state/store.py": "def g(tx):\n    return tx.connection\n",
    "adapters/simulator.py": """\
        from http.server import BaseHTTPRequestHandler


        class Handler(BaseHTTPRequestHandler):
            def finish(self):
                self.connection.close()          # the handler's socket: not the store's connection
                return self.server.store.connection
        """,
    "tests/test_x.py": "from crmbridge.sync.engine import _masked\n",
}


def test_the_scanner_catches_planted_violations(tmp_path: Path) -> None:
    for rel, text in PLANTED.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    mods = scan(tmp_path)
    assert "crmbridge.tests.test_x" not in {m.name for m in mods}      # tests are not product
    assert core_violations(mods) == [
        "core/bad.py:4: crmbridge.core.bad imports crmbridge.adapters.base",
        "core/bad.py:8: crmbridge.core.bad imports crmbridge.sync.engine",       # inside a function
    ]
    assert canonical_violations(mods) == [
        "canonical/bad.py:1: crmbridge.canonical.bad imports crmbridge.adapters.registry"]   # a relative import
    assert adapters_violations(mods) == [
        "adapters/fxiaoke/__init__.py:1: crmbridge.adapters.fxiaoke imports crmbridge.cli.main"]
    assert vendor_violations(mods) == [
        "adapters/zoho/__init__.py:1: crmbridge.adapters.zoho imports another vendor's "
        "crmbridge.adapters.fxiaoke.client"]
    assert sync_vendor_violations(mods) == [
        "sync/worker.py:1: crmbridge.sync.worker imports crmbridge.adapters.zoho (only adapters.registry and "
        "adapters.base)"]
    assert engine_private_violations(mods) == [
        "cli/main.py:1: crmbridge.cli.main imports _masked from crmbridge.sync.engine"]
    assert connection_violations(mods) == ["adapters/simulator.py:7: crmbridge.adapters.simulator uses .connection",
                                           "sync/worker.py:5: crmbridge.sync.worker uses .connection"]
    with pytest.raises(AssertionError, match=r"1 violation\(s\)\n\s*cli/main.py:1: crmbridge.cli.main imports _masked"):
        _fail_on(engine_private_violations(mods), "rule")

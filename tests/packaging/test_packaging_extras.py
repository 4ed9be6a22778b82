"""Optional parts stay optional: no module of crmbridge imports Celery, kombu, redis or a PostgreSQL driver when it
is imported; PostgreSQL URLs get the installed driver (psycopg 3, older psycopg2 URLs where psycopg2 is installed);
a missing extra is one message naming it; ``--json`` documents carry crmbridge's version."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from crmbridge.core.extras import (
    MissingExtraError,
    installed_version,
    require_extra,
    resolve_database_driver,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = {"celery", "kombu", "redis", "psycopg", "psycopg2", "psycopg_c", "psycopg_binary", "billiard", "amqp"}
NOT_PRODUCT = {"tests", "bench", ".venv", "build", "dist", "var", "docs", "deploy"}


def _product_files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not NOT_PRODUCT & set(p.relative_to(REPO).parts)]


def _import_time_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports run when the module is imported: module level, including under ``if``/``try``, but not under
    ``if TYPE_CHECKING:`` and not inside functions or classes' methods."""
    found: list[tuple[int, str]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((node.lineno, node.module))
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return found


def test_no_module_imports_an_optional_package_at_import_time() -> None:
    files = _product_files()
    assert len(files) > 50
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in _import_time_imports(tree):
            if module.split(".")[0] in OPTIONAL:
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offenders, "import these inside the function that needs them (after require_extra):\n" + \
        "\n".join(offenders)


def test_a_missing_module_names_the_extra_to_install() -> None:
    with pytest.raises(MissingExtraError) as err:
        require_extra("distributed", "celery", "crmbridge_no_such_module", purpose="crmbridge worker")
    assert err.value.extra == "distributed" and err.value.missing == ("crmbridge_no_such_module",)
    assert "pip install 'crmbridge[distributed]'" in str(err.value) and "crmbridge worker" in str(err.value)
    require_extra("distributed")   # the development install has every extra
    import kombu  # noqa: F401   once imported, kombu is a lazy module without __spec__: still found
    from kombu import pools  # noqa: F401

    require_extra("distributed")
    require_extra("postgres")
    require_extra("console")
    with pytest.raises(ValueError):
        require_extra("no-such-extra")


def test_postgresql_urls_get_the_installed_driver() -> None:
    assert resolve_database_driver("sqlite:///var/x.db") == "sqlite:///var/x.db"
    assert resolve_database_driver("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert resolve_database_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_driver("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["", "+psycopg", "+psycopg2"])
def test_each_postgresql_url_form_connects(driver: str) -> None:
    from crmbridge.sync.state.db import make_engine

    engine = make_engine(f"postgresql{driver}://postgres@127.0.0.1:5432/postgres")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
        assert engine.dialect.driver == (driver.lstrip("+") or "psycopg")
    finally:
        engine.dispose()


def test_version_everywhere(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("crmbridge")
    number = installed_version()
    assert number != "unknown"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"crmbridge {number}"
    # the same version is the first key of a --json document (here: doctor)
    from crmbridge.demo import DemoEnvironment

    with DemoEnvironment(tmp_path / "demo", customers=3) as env:
        res = subprocess.run([str(exe), "--config", str(env.config_path), "doctor", "zoho_cn", "--json"],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="160"))
    assert res.stdout.startswith("{"), res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert next(iter(doc)) == "crmbridge_version" and doc["crmbridge_version"] == number, res.stderr


def test_shell_completion_is_offered() -> None:
    exe = Path(sys.executable).with_name("crmbridge")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, COLUMNS="200"))
    assert "--install-completion" in out.stdout and "--show-completion" in out.stdout
    # what the installed script answers bash's completion with
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, _CRMBRIDGE_COMPLETE="complete_bash", COMP_WORDS="crmbridge sched",
                                  COMP_CWORD="1"))
    assert res.stdout.split() == ["scheduler"], res.stdout + res.stderr

"""The crmbridge console: a server-rendered web application for operations, data stewards and auditors
(``crmbridge console``; the ``console`` extra). It reads the same state database as the command line.

Layout: :mod:`.app` (the application and sign-in), :mod:`.web` (the endpoint decorator: session, role, CSRF),
:mod:`.auth` (roles, permissions, sessions), :mod:`.passwords` (Argon2id), :mod:`.pages` (one module per page
group), ``templates/`` (Jinja2) and ``static/`` (CSS, served locally: no CDN).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(runtime: Any, settings: Any = None) -> Any:
    from crmbridge.console.app import create_app as _create

    return _create(runtime, settings)

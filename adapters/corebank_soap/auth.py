"""Credentials of the core-banking SOAP adapter: a WS-Security UsernameToken (FLEXCUBE behind its gateway), or the
service user spliced into the request header (T24 ``WebRequestCommon``). The UsernameToken stamps every message
with a fresh nonce and timestamp, so a token the core calls expired (``wsse:MessageExpired``) is answered by the
next call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr
from zeep.wsse.username import UsernameToken

from crmbridge.adapters._paths import vendor_set
from crmbridge.core.errors import ConfigurationError

__all__ = ["header_values", "username_token"]


def username_token(username: str | None, password: SecretStr | None, *, use_digest: bool) -> UsernameToken:
    """The WS-Security UsernameToken (PasswordDigest: nonce + created, unless ``use_digest`` is off)."""
    if not username or password is None:
        raise ConfigurationError("WS-Security needs username and password", where="username")
    return UsernameToken(username, password.get_secret_value(), use_digest=use_digest)


def header_values(values: Mapping[str, str], *, username: str | None, password: SecretStr | None,
                  extra: Iterable[tuple[str | None, str]] = ()) -> dict[str, Any]:
    """Header values with ``{username}``/``{password}`` spliced in, plus per-call ``extra`` (path, value) pairs."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        text = str(v)
        if "{username}" in text:
            text = text.replace("{username}", username or "")
        if "{password}" in text:
            text = text.replace("{password}", password.get_secret_value() if password else "")
        vendor_set(out, k, text)
    for path, value in extra:
        if path:
            vendor_set(out, path, value)
    return out

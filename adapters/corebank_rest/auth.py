"""Credentials of the core-banking REST adapter: HTTP Basic, or a bearer token (static, or fetched with OAuth2
client credentials and cached until 90% of its lifetime)."""

from __future__ import annotations

import base64
import threading
import time
from typing import TYPE_CHECKING

from crmbridge.adapters.corebank_rest.client import RestClient
from crmbridge.adapters.corebank_rest.errors import VENDOR, bad_response, to_error
from crmbridge.core.errors import AuthenticationError, ConfigurationError
from crmbridge.core.secrets import resolve_secret

if TYPE_CHECKING:
    from crmbridge.adapters.corebank_rest.adapter import AuthConfig

__all__ = ["RestAuth"]


class RestAuth:
    """The ``Authorization`` header of a system's calls (``where``: the configuration key, for errors)."""

    def __init__(self, config: AuthConfig, client: RestClient, *, where: str) -> None:
        self.config = config
        self._client = client
        self._where = where
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        auth = self.config
        if auth.type == "basic":
            if not auth.username or auth.password is None:
                raise ConfigurationError("basic auth needs username and password", where=self._where)
            pw = resolve_secret(auth.password, where=f"{self._where}.password").get_secret_value()
            return {"Authorization": "Basic " + base64.b64encode(f"{auth.username}:{pw}".encode()).decode("ascii")}
        return {"Authorization": f"Bearer {self.bearer_token()}"}

    def invalidate(self) -> None:
        """Drop the cached bearer token; the next call fetches a fresh one."""
        with self._lock:
            self._token = None

    def bearer_token(self) -> str:
        auth = self.config
        where = self._where
        with self._lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            if auth.token is not None:
                self._token = resolve_secret(auth.token, where=f"{where}.token").get_secret_value()
                self._token_expires = float("inf")
                return self._token
            if not (auth.token_url and auth.client_id and auth.client_secret):
                raise ConfigurationError("bearer auth needs a token, or token_url + client_id + client_secret",
                                         where=where)
            secret = resolve_secret(auth.client_secret, where=f"{where}.client_secret").get_secret_value()
            form = {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": secret}
            if auth.scope:
                form["scope"] = auth.scope
            resp = self._client.post_form(auth.token_url, form)
            if resp.status_code in (400, 401, 403):
                c = self._client.classify(resp, auth="basic")
                raise AuthenticationError(f"token request refused: {c.message}", vendor=VENDOR,
                                          status=resp.status_code, vendor_code=c.vendor_code, where=where)
            body = self._client.json(resp) if resp.ok else None
            if body is None:
                raise to_error(self._client.classify(resp, auth="bearer"), where="token")
            token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
            if not isinstance(token, str) or not isinstance(lifetime, int | float):
                raise bad_response("token reply lacks access_token/expires_in", resp)
            self._token = token
            self._token_expires = time.monotonic() + float(lifetime) * 0.9
            return token

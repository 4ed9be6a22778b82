"""The console's settings (``crmbridge console`` options and defaults a bank's security policy would ask for)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConsoleSettings"]


@dataclass(frozen=True)
class ConsoleSettings:
    #: a session ends this long after sign-in, whatever happens
    session_hours: float = 8.0
    #: ... and after this long without a request
    idle_minutes: float = 30.0
    #: failed sign-ins in a row that lock a user out ...
    lockout_threshold: int = 5
    #: ... for this long
    lockout_minutes: float = 15.0
    #: how long an approved four-eyes reveal lasts
    reveal_minutes: float = 15.0
    #: cookies only over HTTPS (``Secure``); off for http://127.0.0.1 only
    secure_cookies: bool = False
    #: rows per list page
    page_size: int = 50

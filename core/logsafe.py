"""Logs that never carry personal data or secrets.

:class:`PersonalDataFilter` is a :class:`logging.Filter` that formats each record's message (``msg % args``),
masks what looks like personal data (resident ID numbers, USCC codes, mobiles, e-mail addresses, card / account
numbers) with :func:`crmbridge.canonical.masking.mask`, replaces registered secret values with ``[secret]``,
and does the same to exception and stack text. :func:`configure_logging` installs it on every root handler
and as a log-record factory, so records are masked however they are emitted::

    configure_logging(logging.INFO, secrets=[token])
    log.warning("customer %s mobile %s", "11010519491231002X", "13812345678")
    # -> customer 1*************002X mobile 138****5678

:func:`mask_text` is the same masking for any text (error messages, ledger reasons). Pattern masking is a
safety net, not a licence to log personal data: code should still log masked values or ids only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from crmbridge.core.masking import mask

__all__ = [
    "JsonFormatter",
    "PersonalDataFilter",
    "bind_log_context",
    "configure_logging",
    "configure_service_logging",
    "forget_secrets",
    "log_context",
    "mask_text",
    "register_secret",
    "reset_log_context",
    "unconfigure_logging",
]

_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
_DATE = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"

#: (mask kind, pattern), applied in order; earlier kinds win
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")),
    ("ric", re.compile(_B + r"[1-9]\d{5}(?:18|19|20)\d{2}" + _DATE + r"\d{3}[\dXx]" + _E)),
    ("ric", re.compile(_B + r"[1-9]\d{7}" + _DATE + r"\d{3}" + _E)),  # legacy 15-digit
    ("uscc", re.compile(_B + r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}" + _E)),
    ("mobile", re.compile(r"(?<![\d+])(?:\+?86[\s\-]?)?1[3-9]\d(?:[\s\-]?\d{4}){2}(?!\d)")),
    ("account", re.compile(r"(?<![\w\-])[3-6]\d{3}(?: ?\d{4}){3}(?: ?\d{1,3})?(?![\w\-])")),  # cards: 16-19 digits
]

#: text no pattern above can match has none of these
_MAY_MATCH = re.compile(r"[\d@]")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: the registered secrets longest first, rebuilt only when they change (mask_text runs on every ledger value)
_secrets_sorted: list[str] = []
_SECRET_MIN = 6


def register_secret(value: str | None) -> None:
    """Never show ``value`` in a log line (API tokens, passwords, client secrets). Short values are ignored."""
    if value and len(value) >= _SECRET_MIN:
        with _secrets_lock:
            if value not in _secrets:
                _secrets.add(value)
                _secrets_sorted[:] = sorted(_secrets, key=len, reverse=True)


def forget_secrets() -> None:
    with _secrets_lock:
        _secrets.clear()
        _secrets_sorted.clear()


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with registered/given secrets replaced and personal-data patterns masked."""
    extra = [s for s in secrets if s and len(s) >= _SECRET_MIN]
    with _secrets_lock:
        known = sorted({*_secrets, *extra}, key=len, reverse=True) if extra else list(_secrets_sorted)
    for s in known:
        if s in text:
            text = text.replace(s, "[secret]")
    if _MAY_MATCH.search(text) is None:
        return text   # every pattern needs a digit or an '@' (most masked values and names have none)
    for kind, pattern in _PATTERNS:
        text = pattern.sub(lambda m, k=kind: _mask_match(k, m.group(0)), text)
    return text


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_match(kind: str, found: str) -> str:
    # long numbers are card numbers only when their Luhn check holds (CRM record ids such as Zoho's 19-digit ids
    # stay readable); everything else that matches is masked
    if kind == "account" and not _luhn_ok(found.replace(" ", "")):
        return found
    return mask(kind, found)


class PersonalDataFilter(logging.Filter):
    """Masks personal data and secrets in every record's message, arguments, exception and stack text.

    The record is rewritten (``msg`` becomes the masked, fully formatted message and ``args`` is cleared), so
    every handler after this one sees the masked text. Never drops a record.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record, self.secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return True


def _mask_record(record: logging.LogRecord, secrets: Iterable[str] = ()) -> None:
    if getattr(record, "_crmbridge_masked", False):  # masked at creation; apply this filter's own secrets too
        if secrets:
            record.msg = mask_text(str(record.msg), secrets)
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not leak the raw args either
        message = f"{record.msg!s} (unformattable arguments)"
    record.msg = mask_text(message, secrets)
    record.args = None
    record._crmbridge_masked = True  # type: ignore[attr-defined]


_factory_installed: list[Callable[..., logging.LogRecord]] = []


def _install_factory() -> None:
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    _factory_installed.append(previous)
    logging.setLogRecordFactory(factory)


def configure_logging(level: int = logging.WARNING, *, secrets: Iterable[str] = (),
                      fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> PersonalDataFilter:
    """Configure root logging with masking on every root handler (creating a stderr handler if none).

    Also installs a log-record factory that masks each record when it is created, so handlers added later
    (files, test capture) get masked text too. Idempotent. Returns the filter.
    """
    for s in secrets:
        register_secret(s)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=fmt)
    root.setLevel(level)
    _install_factory()
    filt = PersonalDataFilter()
    for handler in root.handlers:
        if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt


def unconfigure_logging() -> None:
    """Undo :func:`configure_logging` (restore the record factory, remove the root handlers' filters): for tests."""
    if _factory_installed:
        logging.setLogRecordFactory(_factory_installed.pop())
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, PersonalDataFilter)]:
            handler.removeFilter(f)


# ============================================================================ context and JSON lines
_LOG_CONTEXT: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("crmbridge_log_context",
                                                                                          default=())


def bind_log_context(**fields: object) -> contextvars.Token[tuple[tuple[str, str], ...]]:
    """Add ``fields`` (``job``, ``run_id``...) to every log line of the current thread/context from now on."""
    merged = {**dict(_LOG_CONTEXT.get()), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _LOG_CONTEXT.set(tuple(merged.items()))


def reset_log_context(token: contextvars.Token[tuple[tuple[str, str], ...]]) -> None:
    """Restore the context as it was before the :func:`bind_log_context` call that returned ``token``."""
    _LOG_CONTEXT.reset(token)


def log_context() -> dict[str, str]:
    """The fields currently bound (a copy)."""
    return dict(_LOG_CONTEXT.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the bound context (``job``, ``run_id``)
    and ``exc`` when there is one. The message is the record's already masked text (install
    :class:`PersonalDataFilter` / :func:`configure_logging` first); it is masked again here as a safety net."""

    def format(self, record: logging.LogRecord) -> str:
        _mask_record(record)
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "msg": str(record.msg),
            **dict(_LOG_CONTEXT.get()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(self.formatException(record.exc_info))
        if record.exc_text:
            out["exc"] = mask_text(record.exc_text)
        return json.dumps(out, ensure_ascii=False)


class _TextContextFormatter(logging.Formatter):
    """The human format, with the bound context appended as ``[job=... run_id=...]``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        bound = _LOG_CONTEXT.get()
        return f"{text} [{' '.join(f'{k}={v}' for k, v in bound)}]" if bound else text


def configure_service_logging(level: str | int = "INFO", *, fmt: str = "text", file: str | None = None,
                              secrets: Iterable[str] = ()) -> logging.Handler:
    """Logging of the scheduler, workers and one-shot runs: ONE root handler (``file`` or standard error) in
    ``json`` (one event per line) or ``text`` format, masking installed, bound context on every line.
    Replaces the root's existing handlers. Returns the handler.

    A ``file`` is opened with :class:`logging.handlers.WatchedFileHandler`: when logrotate renames or removes
    it, the next line goes to a new file of the same name (no ``copytruncate``, no signal needed)."""
    handler: logging.Handler = (logging.handlers.WatchedFileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         _TextContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    configure_logging(logging.getLevelName(level) if isinstance(level, str) else level, secrets=secrets)
    return handler

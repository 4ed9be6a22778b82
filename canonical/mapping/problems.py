"""Mapping problems located ``file:line: key.path: message`` and the error that carries them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from crmbridge.core.errors import MappingError


@dataclass(frozen=True)
class MappingProblem:
    """One problem found in a mapping file, located by line and key path."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        sev = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line if self.line is not None else '?'}: {self.path or '(top)'}: {sev}{self.message}"


class MappingLoadError(MappingError):
    """A mapping file has problems. ``problems`` holds every one of them; the message shows the first."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.message}{more}",
                         where=f"{first.file}:{first.line if first.line is not None else '?'}: {first.path or '(top)'}")

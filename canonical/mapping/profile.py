"""What a mapping is told about its target system: :class:`TargetProfile` (given at load, built by the caller
from the adapter class; none given: a CRM, so personal data goes out minimised) and the field metadata
:func:`~crmbridge.canonical.mapping.validate_against` reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class TargetProfile:
    """What the canonical layer needs to know about the system a mapping talks to, given by the caller at load.

    Built from the adapter class (its ``role``, ``mandatory_fields`` and ``source_system``); the canonical layer
    knows no vendor. Without a profile a mapping treats its system as a CRM: C2 values go out minimised (masked)
    unless the step says why not. Only a system declared ``system_of_record`` gets them in clear (fail closed).

    Attributes:
        role: ``"system_of_record"`` or ``"crm"``.
        mandatory_fields: vendor fields a create of the mapping's object must carry.
        source_system: ``SourceRef.system`` of records read from the system (a mapping's own
            ``source_system`` wins).
    """

    role: Literal["system_of_record", "crm"] = "crm"
    mandatory_fields: tuple[str, ...] = ()
    source_system: str | None = None

    @property
    def is_crm(self) -> bool:
        """Whether the system receives the minimised CRM projection (anything not a system of record)."""
        return self.role != SYSTEM_OF_RECORD


SYSTEM_OF_RECORD = "system_of_record"


#: the profile of a system nobody described: a CRM, so personal data goes out minimised
UNDECLARED = TargetProfile()


#: a profile, or how to build one from a mapping's ``(system, object)``; the resolver raises
#: :class:`~crmbridge.core.errors.UnknownAdapterError` for a system it does not know
ProfileSource = TargetProfile | Callable[[str, str], TargetProfile] | None


@runtime_checkable
class VendorField(Protocol):
    """The field metadata :func:`validate_against` reads (an adapter's ``describe()`` rows satisfy it)."""

    @property
    def name(self) -> str: ...
    @property
    def required(self) -> bool: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def picklist(self) -> Sequence[str] | None: ...

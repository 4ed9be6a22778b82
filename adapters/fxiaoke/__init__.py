"""crmbridge.adapters.fxiaoke: the Fxiaoke (纷享销客) CRM adapter, Open API v2.

The vendor folder: ``adapter`` (the class), ``config`` (its configuration model), ``client`` (the HTTP transport),
``auth`` (corpAccessToken), ``errors`` (the error table), ``metadata`` (field metadata of the preset objects),
``simulator`` (the simulated service).

The configuration model is imported with the package, the adapter class when first asked for (it imports
the transport): reading a configuration does not load the transport (issue 19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmbridge.adapters.fxiaoke.config import FxiaokeConfig

if TYPE_CHECKING:
    from crmbridge.adapters.fxiaoke.adapter import FxiaokeAdapter

__all__ = ["FxiaokeAdapter", "FxiaokeConfig"]


def __getattr__(name: str) -> Any:
    if name == "FxiaokeAdapter":
        from crmbridge.adapters.fxiaoke.adapter import FxiaokeAdapter

        return FxiaokeAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

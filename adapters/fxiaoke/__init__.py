"""crmbridge.adapters.fxiaoke: the Fxiaoke (纷享销客) CRM adapter, Open API v2.

The vendor folder: ``adapter`` (the class), ``client`` (the HTTP transport), ``auth`` (corpAccessToken),
``errors`` (the error table), ``metadata`` (field metadata of the preset objects), ``simulator`` (the simulated
service).
"""

from crmbridge.adapters.fxiaoke.adapter import FxiaokeAdapter, FxiaokeConfig

__all__ = ["FxiaokeAdapter", "FxiaokeConfig"]

"""The public surface of crmbridge.canonical: sorted, complete, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import crmbridge.canonical as canonical


def test_all_is_sorted_and_resolvable() -> None:
    assert canonical.__all__ == sorted(canonical.__all__)
    for name in canonical.__all__:
        assert getattr(canonical, name) is not None, name


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError):
        canonical.no_such_name  # noqa: B018


def test_import_is_light() -> None:
    code = ("import sys, crmbridge.canonical as c; "
            "heavy = [m for m in ('crmbridge.canonical.model', 'phonenumbers', 'stdnum.cn.ric') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_modules_pin_their_all() -> None:
    from crmbridge.canonical import c3, classification, identifiers, model, objects, phones, rules, synthetic

    for mod in (c3, classification, identifiers, model, objects, phones, rules, synthetic):
        assert mod.__all__ == sorted(mod.__all__), mod.__name__
        for name in mod.__all__:
            assert hasattr(mod, name), (mod.__name__, name)

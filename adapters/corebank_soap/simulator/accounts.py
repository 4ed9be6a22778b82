"""Customer accounts (holdings) of the FLEXCUBE-style simulator's ``FCUBSAccService`` (docs/vendors/corebank.md §7).

Accounts by index, materialised lazily from ``(seed, index)`` like the customers, with a sorted change index of
``(stamp, account number)`` so ``changed since`` is a bisection; changes made in the core (a closure, a posting) are
overrides. Customer ``c`` (0-based) holds ``c % 3`` accounts; ``orphans`` more belong to customers past the
population (an account opened for a customer the customer feed has not delivered yet).
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["ACCOUNT_CLASSES", "AccountStore"]

#: account class -> (ACCTYPE, description); FLEXCUBE account classes are bank-defined (these are examples)
ACCOUNT_CLASSES = {"SAVIND": ("S", "个人活期储蓄"), "TDIND": ("S", "个人定期存款"), "CURCOR": ("U", "单位基本存款账户")}


class AccountStore:
    """Accounts of the first ``customers`` customers (see the module docstring)."""

    def __init__(self, customers: int, seed: int, custno: Callable[[int], str], *, orphans: int = 0,
                 base_time: datetime = datetime(2025, 6, 1, 8, 0, 0), step_seconds: int = 23,
                 clock: Callable[[], datetime], since_boundary: str = "inclusive", exactly: int | None = None) -> None:
        """``exactly``: hold that many accounts, one per customer from the first (tests), instead of ``c % 3``."""
        self.seed = seed
        self.custno = custno
        self.clock = clock
        self.since_boundary = since_boundary
        self.lock = threading.RLock()
        self.base_time, self.step = base_time, timedelta(seconds=step_seconds)
        owners = ([(c, 0) for c in range(exactly)] if exactly is not None
                  else [(c, k) for c in range(customers) for k in range(c % 3)])
        owners += [(customers + 100 + j, 0) for j in range(orphans)]
        self._owners = owners
        self._by_acc = {self._acc(c, k): j for j, (c, k) in enumerate(owners)}
        self._order = sorted((self._base_stamp(j), self._acc(c, k)) for j, (c, k) in enumerate(owners))
        self._overrides: dict[str, dict[str, Any]] = {}
        self._last = base_time + self.step * max(len(owners) - 1, 0)

    def _acc(self, c: int, k: int) -> str:
        return f"{self._branch(c)}{self.custno(c)}{k + 1:02d}"

    @staticmethod
    def _branch(c: int) -> str:
        return f"{c % 20 + 1:03d}"

    def _base_stamp(self, j: int) -> str:
        return (self.base_time + self.step * j).isoformat()

    # ---------------------------------------------------------------- reads
    def __len__(self) -> int:
        return len(self._owners)

    @property
    def numbers(self) -> list[str]:
        return list(self._by_acc)

    def get(self, acc: str) -> dict[str, Any] | None:
        with self.lock:
            if acc in self._overrides:
                return dict(self._overrides[acc])
            j = self._by_acc.get(acc)
        return None if j is None else self._build(j)

    def _build(self, j: int) -> dict[str, Any]:
        c, k = self._owners[j]
        rng = random.Random(f"fcubs-acc:{self.seed}:{j}")
        cls = ("SAVIND", "TDIND", "CURCOR")[(c + k) % 3]
        opened = date(2018, 1, 1) + timedelta(days=(c * 53 + k * 211) % 2600)
        bal = f"{rng.randrange(0, 5_000_000_00) / 100:.2f}"
        stamp = self._base_stamp(j)
        acc = self._acc(c, k)
        return {"BRN": self._branch(c), "ACC": acc, "CUSTNO": self.custno(c), "ACCLS": cls, "CCY": "CNY",
                "ADESC": ACCOUNT_CLASSES[cls][1], "ACSTATNODR": "N", "ACSTATNOCR": "N", "ACSTATSTPAY": "N",
                "DORM": "N", "ACCTYPE": ACCOUNT_CLASSES[cls][0], "ACCOPENDT": opened.isoformat(), "FROZEN": "N",
                "ACCSTAT": "NORM", "STATSINCE": opened.isoformat(), "ATM": "Y" if cls == "SAVIND" else "N",
                "PASSBOOK": "N", "CHQBOOK": "Y" if cls == "CURCOR" else "N",
                "MAKER": "MIGRATION", "MAKERSTAMP": stamp, "CHECKER": "MIGRATION", "CHECKERSTAMP": stamp,
                "MODNO": 1, "RECORD_STAT": "O", "AUTHSTAT": "A",
                "ACC_BAL": {"BRANCH_CODE": self._branch(c), "CUST_AC_NO": acc, "CCY": "CNY", "OPNBAL": bal,
                            "CURBAL": bal, "AVLBAL": bal}}

    def _window(self, since: str | None, until: str | None) -> tuple[int, int]:
        if not since:
            start = 0
        elif self.since_boundary == "exclusive":
            start = bisect.bisect_right(self._order, (since, "\uffff"))
        else:
            start = bisect.bisect_left(self._order, (since, ""))
        end = len(self._order) if not until else bisect.bisect_right(self._order, (until, "\uffff"))
        return start, end

    def page(self, since: str | None, page_no: int, size: int,
             until: str | None = None) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            start, end = self._window(since, until)
            first = start + (page_no - 1) * size
            keys = self._order[first:min(first + size, end)]
            total = max(0, end - start)
        return [r for _, a in keys if (r := self.get(a)) is not None], total

    @property
    def newest_stamp(self) -> str:
        with self.lock:
            return self._order[-1][0] if self._order else self.base_time.isoformat()

    # ---------------------------------------------------------------- changes made in the core
    def change(self, acc: str, **fields: Any) -> dict[str, Any]:
        """A change made in the core (a posting, a closure): bumps MODNO and CHECKERSTAMP. ``CURBAL`` and
        ``AVLBAL`` go to ``ACC_BAL``; ``RECORD_STAT="C"`` closes the account."""
        with self.lock:
            rec = self.get(acc)
            if rec is None:
                raise KeyError(acc)
            old = rec["CHECKERSTAMP"]
            bal = dict(rec["ACC_BAL"])
            for k in ("CURBAL", "AVLBAL"):
                if k in fields:
                    bal[k] = fields.pop(k)
            rec.update(fields, ACC_BAL=bal, MODNO=int(rec["MODNO"]) + 1)
            self._last = max(self.clock(), self._last + timedelta(seconds=1))
            rec["CHECKERSTAMP"] = self._last.isoformat()
            pos = bisect.bisect_left(self._order, (old, acc))
            if pos < len(self._order) and self._order[pos] == (old, acc):
                del self._order[pos]
            bisect.insort(self._order, (rec["CHECKERSTAMP"], acc))
            self._overrides[acc] = rec
            return dict(rec)

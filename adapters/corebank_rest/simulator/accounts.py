"""Fineract savings and loan accounts for the core-banking REST simulator (docs/vendors/corebank.md §6).

JSON after Apache Fineract's ``SavingsAccountData`` and ``LoanAccountData`` as its list and single GETs render them:
``GET /v1/savingsaccounts`` (``offset``, ``limit``, ``orderBy``, ``sortOrder``, ``externalId``) and ``GET /v1/loans``
(the same plus ``accountNo`` and a numeric ``status``) answer ``{totalFilteredRecords, pageItems}``. As in Fineract,
**a list without ``limit`` (or ``limit <= 0``) returns every account** (the clients list defaults to 200), and neither
list has a modification filter: a reader scans. Dates are ``[yyyy, m, d]``, amounts JSON numbers, enums
``{id, code, value, <flags>}``.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

__all__ = ["CNY", "LOAN_PRODUCTS", "LOAN_STATUS", "SAVINGS_PRODUCTS", "SAVINGS_STATUS", "loan_account",
           "loan_status", "savings_account", "savings_status"]

CNY = {"code": "CNY", "name": "Chinese Yuan Renminbi", "decimalPlaces": 2, "inMultiplesOf": 1, "displaySymbol": "¥",
       "nameCode": "currency.CNY", "displayLabel": "Chinese Yuan Renminbi (¥)"}
SAVINGS_PRODUCTS = ((1, "活期储蓄 Passbook Savings"), (2, "个人通知存款 Notice Deposit"), (3, "薪资账户 Payroll"))
LOAN_PRODUCTS = ((11, "个人住房贷款 Mortgage"), (12, "个人消费贷款 Consumer Loan"), (13, "经营性贷款 Business Loan"))
#: SavingsAccountStatusType id -> (code suffix, value)
SAVINGS_STATUS = {
    100: ("submitted.and.pending.approval", "Submitted and pending approval"), 200: ("approved", "Approved"),
    300: ("active", "Active"), 303: ("transfer.in.progress", "Transfer in progress"),
    304: ("transfer.on.hold", "Transfer on hold"), 400: ("withdrawn.by.applicant", "Withdrawn by applicant"),
    500: ("rejected", "Rejected"), 600: ("closed", "Closed"), 700: ("pre.mature.closure", "Premature Closed"),
    800: ("matured", "Matured")}
#: LoanStatus id -> (code suffix, value)
LOAN_STATUS = {100: ("submitted.and.pending.approval", "Submitted and pending approval"), 200: ("approved", "Approved"),
               300: ("active", "Active"), 303: ("transfer.in.progress", "Transfer in progress"),
               304: ("transfer.on.hold", "Transfer on hold"), 400: ("withdrawn.by.client", "Withdrawn by applicant"),
               500: ("rejected", "Rejected"), 600: ("closed.obligations.met", "Closed (obligations met)"),
               601: ("closed.written.off", "Closed (written off)"), 602: ("closed.reschedule.outstanding.amount",
                                                                          "Closed (rescheduled)"),
               700: ("overpaid", "Overpaid")}


def _arr(d: date | None) -> list[int] | None:
    return None if d is None else [d.year, d.month, d.day]


def savings_status(sid: int) -> dict[str, Any]:
    code, value = SAVINGS_STATUS[sid]
    return {"id": sid, "code": f"savingsAccountStatusType.{code}", "value": value,
            "submittedAndPendingApproval": sid == 100, "approved": sid == 200, "rejected": sid == 500,
            "withdrawnByApplicant": sid == 400, "active": sid == 300, "closed": sid == 600,
            "prematureClosed": sid == 700, "transferInProgress": sid == 303, "transferOnHold": sid == 304,
            "matured": sid == 800}


def loan_status(sid: int) -> dict[str, Any]:
    code, value = LOAN_STATUS[sid]
    return {"id": sid, "code": f"loanStatusType.{code}", "value": value, "pendingApproval": sid == 100,
            "waitingForDisbursal": sid == 200, "active": sid == 300, "closedObligationsMet": sid == 600,
            "closedWrittenOff": sid == 601, "closedRescheduled": sid == 602, "closed": sid in (600, 601, 602),
            "overpaid": sid == 700}


def _money(rng: random.Random, top: int) -> float:
    return round(rng.randrange(0, top * 100) / 100, 2)


def savings_account(aid: int, client_id: int, client_name: str | None, rng: random.Random, opened: date,
                    *, closed: bool = False) -> dict[str, Any]:
    """One savings account as ``GET /v1/savingsaccounts`` lists it."""
    pid, pname = SAVINGS_PRODUCTS[rng.randrange(len(SAVINGS_PRODUCTS))]
    deposits = _money(rng, 2_000_000)
    withdrawals = round(min(deposits, _money(rng, 1_000_000)), 2)
    interest = _money(rng, 5_000)
    balance = 0.0 if closed else round(deposits - withdrawals + interest, 2)
    status = 600 if closed else 300
    return {
        "id": aid, "accountNo": f"{aid:09d}", "externalId": None,
        "depositType": {"id": 100, "code": "depositAccountType.savingsDeposit", "value": "Savings"},
        "clientId": client_id, "clientName": client_name, "savingsProductId": pid, "savingsProductName": pname,
        "fieldOfficerId": 0, "status": savings_status(status),
        "subStatus": {"id": 0, "code": "SavingsAccountSubStatusEnum.none", "value": "None", "none": True,
                      "inactive": False, "dormant": False, "escheat": False, "block": False},
        "timeline": {"submittedOnDate": _arr(opened), "approvedOnDate": _arr(opened), "activatedOnDate": _arr(opened),
                     "closedOnDate": _arr(opened + timedelta(days=400)) if closed else None},
        "currency": dict(CNY), "nominalAnnualInterestRate": 0.35,
        "summary": {"currency": dict(CNY), "totalDeposits": deposits, "totalWithdrawals": withdrawals,
                    "totalInterestPosted": interest, "accountBalance": balance, "availableBalance": balance},
        "lastActiveTransactionDate": _arr(opened + timedelta(days=30)),
    }


def loan_account(lid: int, client_id: int, client_name: str | None, rng: random.Random, opened: date,
                 *, closed: bool = False) -> dict[str, Any]:
    """One loan as ``GET /v1/loans`` lists it."""
    pid, pname = LOAN_PRODUCTS[rng.randrange(len(LOAN_PRODUCTS))]
    principal = float(rng.randrange(10, 300) * 10_000)
    outstanding = 0.0 if closed else round(principal * rng.randrange(5, 100) / 100, 2)
    status = 600 if closed else 300
    return {
        "id": lid, "accountNo": f"{lid:09d}", "externalId": None, "status": loan_status(status),
        "clientId": client_id, "clientName": client_name, "clientExternalId": None,
        "loanProductId": pid, "loanProductName": pname,
        "loanType": {"id": 1, "code": "accountType.individual", "value": "Individual"},
        "currency": dict(CNY), "principal": principal, "approvedPrincipal": principal,
        "numberOfRepayments": 36, "annualInterestRate": 4.2,
        "timeline": {"submittedOnDate": _arr(opened), "approvedOnDate": _arr(opened),
                     "expectedDisbursementDate": _arr(opened), "actualDisbursementDate": _arr(opened),
                     "expectedMaturityDate": _arr(opened + timedelta(days=3 * 365)),
                     "closedOnDate": _arr(opened + timedelta(days=700)) if closed else None},
        "summary": {"currency": dict(CNY), "principalDisbursed": principal,
                    "principalOutstanding": outstanding, "principalOverdue": 0.0, "interestOutstanding": 0.0,
                    "totalOutstanding": outstanding, "totalOverdue": 0.0, "overdueSinceDate": None},
    }

"""Password hashing for the console's local users: Argon2id (argon2-cffi, the reference implementation's binding)
with its own random salt per hash and the library's default cost, re-hashed on sign-in when those defaults rise."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "check_strength", "hash_password", "needs_rehash", "verify_password"]

_HASHER = PasswordHasher()
#: the shortest password ``crmbridge users add|passwd`` accepts
MIN_LENGTH = 12


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; a malformed stored hash is a mismatch, never an exception."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def check_strength(password: str, *, username: str | None = None) -> str | None:
    """Why ``password`` is refused, or None: at least :data:`MIN_LENGTH` characters (a passphrase of words is
    fine), at most :data:`MAX_LENGTH`, no white space at either end, 5 different characters, 2 kinds of character
    (lower case, upper case, digits, others: a space counts), not the user name inside it, not one of the
    passwords every attacker tries first."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if password.strip() != password:
        return "a password may not start or end with white space"
    if len(set(password)) < 5:
        return "a password needs at least 5 different characters"
    kinds = {("lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other")
             for c in password}
    if len(kinds) < 2:
        return "a password needs two kinds of character (lower case, upper case, digits, spaces or symbols)"
    if username and len(username) >= 3 and username.casefold() in password.casefold():
        return "a password may not contain the user name"
    if password.casefold().rstrip("0123456789!") in _COMMON:
        return "this password is among the first every attacker tries"
    return None


#: the longest password accepted (hashing is deliberately costly: no unbounded input)
MAX_LENGTH = 256
_COMMON = frozenset({"password", "passw0rd", "qwertyuiop", "qwerty", "1234567890", "letmein", "administrator",
                     "welcome", "iloveyou", "changeme", "crmbridge", "p@ssword", "p@ssw0rd", "qwertyuiopasdf"})

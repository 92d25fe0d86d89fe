"""Passwords: the strength rule of sign-up and argon2id hashing off the event loop.

* :func:`password_problem` — why a password is too weak (``None`` when it is fine): shorter than 10,
  all of one character class, the username (or containing it), a common password or a common
  word dressed up with digits, symbols or leetspeak ("P@ssw0rd2024!"), or a keyboard run. The
  reason names the rule, never the password.
* :class:`PasswordHasher` — argon2id (argon2-cffi) in a worker thread, at most ``concurrency``
  hashes at once (each takes ``memory_cost`` KiB); ``verify(None, pw)`` checks against a dummy
  hash so an unknown user costs the same time as a wrong password.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Final

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Histogram

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 256

HASH_SECONDS = Histogram(
    "onair_auth_password_hash_seconds",
    "Time of one argon2id hash or verification, waiting for a slot included",
    ["op"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# Common passwords of at least MIN_LENGTH characters (shorter ones fail the length rule anyway),
# lower-cased. From the usual breach top lists.


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


COMMON_PASSWORDS: Final = _words(
    """
    1234567890 0123456789 12345678910 1234567891 1111111111 0000000000 1122334455 1234512345
    9876543210 1q2w3e4r5t 1qaz2wsx3edc q1w2e3r4t5 qwertyuiop asdfghjkl; zxcvbnm123 qwerty1234
    qwerty12345 qwerty123456 asdfghjkl1 password12 password123 password1234 password12345
    passw0rd123 p@ssw0rd123 iloveyou12 iloveyou123 princess12 sunshine12 football12 baseball12
    basketball superman12 batman1234 trustno1234 letmein123 letmeinplease welcome123 welcome1234
    abcdefghij abc1234567 abcd123456 1234567890a a1234567890 aaaaaaaaaa computer12 internet12
    administrator changeme123 default1234 whatever12 starwars12 pokemon123 michael123 jennifer12
    charlie123 liverpool1 chelsea123 arsenal123 manchester1 mustang123 jordan2323 harley1234
    qazwsxedcrfv 1qazxsw23edc zaq12wsxcde thequickbrownfox correcthorsebatterystaple
    """
)

# Words that, with digits, symbols or leetspeak around them, are the classic weak password.
COMMON_WORDS: Final = _words(
    """
    password passwort passw pass admin administrator root login letmein welcome qwerty azerty
    iloveyou monkey dragon master shadow sunshine princess football baseball soccer hockey
    superman batman trustno changeme default secret whatever freedom starwars pokemon onair
    streamer viewer hello test guest user abc abcd abcdef
    """
)

KEYBOARD_RUNS: Final = (
    "`1234567890-=",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "abcdefghijklmnopqrstuvwxyz",
    "0987654321",
    "zyxwvutsrqponmlkjihgfedcba",
)

_LEET: Final = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s",
                              "5": "s", "7": "t", "+": "t", "8": "b", "9": "g"})  # fmt: skip
_EDGES: Final = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def _classes(password: str) -> int:
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )


def _is_keyboard_run(text: str) -> bool:
    return len(text) >= 4 and any(text in run for run in KEYBOARD_RUNS)


def _dressed_up_common_word(password: str) -> bool:
    """ "P@ssw0rd2024!", "Welcome#1", "Qwerty!!!!": a common word behind digits, symbols, leetspeak."""
    core = _EDGES.sub("", password.lower())
    leet = core.translate(_LEET)
    for word in (core, leet, _EDGES.sub("", leet)):
        if word.rstrip("0123456789") in COMMON_WORDS or word in COMMON_WORDS or _is_keyboard_run(word):
            return True
    return False


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why ``password`` is refused for ``username`` (a sentence without the password), or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters long"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters long"
    if _classes(password) < 2:
        return "must mix at least two kinds of characters (lower case, upper case, digits, symbols)"
    if len(set(password)) <= 3:
        return "must not repeat the same few characters"
    lowered = password.lower()
    if username and username.lower() in lowered:
        return "must not contain the username"
    if lowered in COMMON_PASSWORDS or _is_keyboard_run(lowered):
        return "is a commonly used password"
    if _dressed_up_common_word(password):
        return "is a common word with digits or symbols around it; choose a less guessable one"
    return None


class PasswordHasher:
    """argon2id hashing and verification in worker threads (see the module docstring)."""

    def __init__(
        self, *, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1, concurrency: int = 4
    ) -> None:
        self._ph = Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(concurrency)
        # Verified when the user does not exist: the same work as a wrong password.
        self._dummy = self._ph.hash(secrets.token_urlsafe(24))

    async def _run(self, op: str, fn: object, *args: str) -> object:
        started = time.perf_counter()
        try:
            async with self._slots:
                return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]
        finally:
            HASH_SECONDS.labels(op).observe(time.perf_counter() - started)

    async def hash(self, password: str) -> str:
        return str(await self._run("hash", self._ph.hash, password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``password_hash``; ``None`` (unknown user) costs the same
        and is always False."""
        target = password_hash if password_hash is not None else self._dummy

        def check(stored: str, given: str) -> bool:
            try:
                return bool(self._ph.verify(stored, given))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        ok = bool(await self._run("verify", check, target, password))
        return ok and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters (re-hash after a successful login)."""
        try:
            return bool(self._ph.check_needs_rehash(password_hash))
        except InvalidHashError:
            return True

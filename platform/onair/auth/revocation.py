"""Revoked token ids (``jti``) on :class:`onair.cache.TokenCache`: :class:`RevocationList`.

* ``revoke(jti, until_epoch_s)`` blocks the id in Valkey until the token would have expired anyway
  (plus ``margin_s`` for clock skew), so the list never outgrows the live tokens.
* ``is_revoked(jti)`` reads through the TokenCache's BCAST near cache: in steady state, "revoked"
  **and** "not revoked" are answered from process memory, with no Valkey command. A revoke made by
  any process invalidates the entry in every other process's near cache within the invalidation
  delay (one push message), so the next check there reads the new state.

Valkey down (docs/auth.md, "Revocation"):

* **writes fail loudly**: ``revoke`` raises :class:`RevocationUnavailable` (a ``ConnectionError``,
  answered 503 by the service skeleton). A revoke is never reported done unless Valkey stored it;
  the caller (logout, refresh-token reuse) retries or tells the user.
* **reads follow the caller's policy**: the near cache is flushed when the invalidation connection
  drops (it can no longer vouch for its entries), so checks cannot be answered. ``fail_open=False``
  (default) raises :class:`RevocationUnavailable` — a revocation list that silently says "not
  revoked" when it cannot know would let a stolen token through exactly when it matters.
  ``fail_open=True`` answers "not revoked", logs ``auth.revocation.fail_open`` at most every 10 s
  and counts :attr:`RevocationList.fail_open_answers`: choose it when availability matters more
  than a revoked token living until its ``exp`` (at most 15 minutes for access tokens).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from onair.auth.verify import MAX_JTI_LENGTH
from onair.cache.reader import VALKEY_DOWN, CacheUnavailable
from onair.cache.tokens import TokenCache
from onair.logging import get_logger

log = get_logger("onair.auth.revocation")

__all__ = ["RevocationList", "RevocationUnavailable"]


class RevocationUnavailable(CacheUnavailable):
    """Valkey could not be reached: the revocation state is unknown or could not be stored."""


def _check_jti(jti: object) -> str:
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise ValueError(f"jti must be a string of 1-{MAX_JTI_LENGTH} characters")
    return jti


class RevocationList:
    """Revoked ``jti``\\ s shared by every process through Valkey and read from the near cache.

    The :class:`TokenCache` is started and closed by its owner (usually the service lifespan),
    so one cache (and its one invalidation connection) can serve several modules.
    """

    def __init__(
        self,
        tokens: TokenCache,
        *,
        fail_open: bool = False,
        margin_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.fail_open = fail_open
        self.margin_s = margin_s
        self._clock = clock
        self._last_fail_open_log = float("-inf")
        self.fail_open_answers = 0

    async def revoke(self, jti: str, until_epoch_s: float, reason: str = "") -> bool:
        """Block ``jti`` until ``until_epoch_s`` (the token's ``exp``) + ``margin_s``.

        False (nothing stored) when the token is already expired past the margin; raises
        :class:`RevocationUnavailable` when Valkey cannot store it.
        """
        _check_jti(jti)
        remaining = until_epoch_s + self.margin_s - self._clock()
        if remaining <= 0:
            return False
        try:
            await self.tokens.block(jti, reason=reason, ttl_s=max(1, math.ceil(remaining)))
        except VALKEY_DOWN as exc:
            raise RevocationUnavailable(f"could not store the revocation of a token: {exc!r}") from exc
        log.info("auth.token.revoked", jti=jti, reason=reason, ttl_s=math.ceil(remaining))
        return True

    async def is_revoked(self, jti: str) -> bool:
        """True if ``jti`` was revoked; answered from the near cache in steady state."""
        _check_jti(jti)
        try:
            return await self.tokens.is_blocked(jti)
        except CacheUnavailable as exc:
            if not self.fail_open:
                raise RevocationUnavailable("revocation state unknown: Valkey is unreachable") from exc
            self.fail_open_answers += 1
            now = time.monotonic()
            if now - self._last_fail_open_log >= 10.0:
                self._last_fail_open_log = now
                log.warning("auth.revocation.fail_open", answered=self.fail_open_answers)
            return False

    async def reason(self, jti: str) -> str | None:
        """The reason given to :meth:`revoke`, or None when ``jti`` is not revoked."""
        return await self.tokens.block_reason(_check_jti(jti))

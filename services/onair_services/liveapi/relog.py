"""The re-logger: a write whose events did not make it to the log gets its state logged again.

A write commits first and logs after; a crash (or a broker that does not acknowledge in time)
between the two leaves the channel's ``logged_version`` behind its ``version``. Once at start and
then every ``relog_interval_s``, every instance logs the whole current state of such channels
(last written more than ``relog_grace_s`` ago, so writes in flight are left alone) with ``seq`` =
the current version; consumers drop what they already had by ``seq``.
"""

from __future__ import annotations

import asyncio

from onair.service import Service
from onair_services.liveapi.events import relog
from onair_services.liveapi.settings import LiveapiSettings
from onair_services.liveapi.store import ChannelStore, cutoff


async def relog_pass(svc: Service, store: ChannelStore, settings: LiveapiSettings) -> int:
    """One pass; returns how many channels were re-logged (and acknowledged)."""
    lagging = await store.lagging(cutoff(settings.relog_grace_s), settings.relog_batch)
    done = 0
    for channel in lagging:
        if await relog(svc, store, channel, timeout_s=settings.event_ack_timeout_s):
            done += 1
    if lagging:
        svc.log.info("re-logged lagging channels", found=len(lagging), acknowledged=done)
    return done


async def relog_loop(svc: Service, store: ChannelStore, settings: LiveapiSettings) -> None:
    while True:
        try:
            await relog_pass(svc, store, settings)
        except Exception as exc:  # the database may be down: try again next time
            svc.log.warning("re-log pass failed", error=repr(exc))
        await asyncio.sleep(settings.relog_interval_s)

"""Profiles in any S3 API (AWS, MinIO; moto's server mode in the tests): ``[<prefix>/]<app>/<ms>.pb.gz``."""

from __future__ import annotations

from collections.abc import Sequence

from onair.clients.s3 import S3Client
from onair.pgo.storage.base import SUFFIX, ClientStore, ProfileRef, parse_name
from onair.pgo.storage.directory import check_app_ok


class S3Store(ClientStore[S3Client]):
    backend = "s3"

    def _key(self, app: str, ms: int) -> str:
        return self.client.key(app, f"{ms}{SUFFIX}")

    async def _save(self, app: str, ms: int, data: bytes) -> None:
        await self.client.put(self._key(app, ms), data, content_type="application/octet-stream")

    async def _get(self, app: str, ms: int) -> bytes | None:
        return await self.client.get(self._key(app, ms))

    async def _list(self, app: str) -> list[ProfileRef]:
        prefix = self.client.key(app, "")
        out = []
        for key, size in await self.client.list_objects(prefix):
            rest = key[len(prefix) :]
            ms = parse_name(rest) if "/" not in rest else None
            if ms is not None:
                out.append(ProfileRef(app, ms, size))
        return out

    async def _delete(self, app: str, refs: Sequence[ProfileRef]) -> None:
        await self.client.delete_many([self._key(app, r.created_at) for r in refs])

    async def apps(self) -> list[str]:
        base = self.client.key("")
        names = [p[len(base) :].rstrip("/") for p in await self.client.list_prefixes(base)]
        return sorted(n for n in names if check_app_ok(n))

    async def ping(self) -> bool:
        try:
            return await self.client.ping()
        except Exception:
            return False

"""The base S3 client: endpoint, credentials, bucket, timeouts and retries, lifecycle.

boto3 is synchronous, so every call runs in a worker thread (``asyncio.to_thread``); the event loop
never blocks on the network. Credentials come from the usual AWS environment/configuration chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``). Works with any S3 API: AWS, MinIO, moto's server
mode (the tests and the devstack).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from onair.clients.base import Lifecycle
from onair.config import S3Settings, timeouts

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client as Boto3S3Client


class S3Client(Lifecycle):
    """Wraps a boto3 S3 client bound to one bucket; ``key("pgo", app)`` -> ``"<prefix>/pgo/<app>"``."""

    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        bucket: str | None = None,
        region: str | None = None,
        prefix: str = "",
        timeout_s: float | None = None,
        max_attempts: int = 3,
        create_bucket: bool = True,
    ) -> None:
        settings = S3Settings()
        self.endpoint_url = endpoint_url or settings.s3_endpoint_url
        self.bucket = bucket or settings.s3_bucket
        self.region = region or settings.s3_region
        self.prefix = prefix.strip("/")
        self.timeout_s = timeout_s if timeout_s is not None else timeouts().default_timeout_s
        self.max_attempts = max_attempts
        self.create_bucket = create_bucket
        self._client: Boto3S3Client | None = None

    def key(self, *parts: object) -> str:
        joined = "/".join(str(p) for p in parts)
        return f"{self.prefix}/{joined}" if self.prefix else joined

    def _make(self) -> Boto3S3Client:
        config = Config(
            connect_timeout=timeouts().connect_timeout_s,
            read_timeout=self.timeout_s,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            max_pool_connections=32,
        )
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        client = await asyncio.to_thread(self._make)
        self._client = client
        if self.create_bucket:
            await self.ensure_bucket()

    @property
    def raw(self) -> Boto3S3Client:
        if self._client is None:
            raise RuntimeError("S3Client not started: call await client.start() or use 'async with'")
        return self._client

    async def call(self, method: str, **kwargs: Any) -> Any:
        """Run one boto3 client method in a thread: ``await s3.call("head_bucket", Bucket=...)``."""
        return await asyncio.to_thread(getattr(self.raw, method), **kwargs)

    async def ensure_bucket(self) -> None:
        try:
            await self.call("head_bucket", Bucket=self.bucket)
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                await self.call("create_bucket", **kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise

    async def ping(self) -> bool:
        try:
            await self.call("head_bucket", Bucket=self.bucket)
        except ClientError:
            return False
        return True

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self.call("put_object", Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` if there is no such key."""

        def _get() -> bytes | None:
            try:
                resp = self.raw.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return resp["Body"].read()

        return await asyncio.to_thread(_get)

    async def exists(self, key: str) -> bool:
        try:
            await self.call("head_object", Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True

    async def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix`` (all pages)."""

        def _list() -> list[tuple[str, int]]:
            out: list[tuple[str, int]] = []
            for page in self.raw.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend((obj["Key"], obj["Size"]) for obj in page.get("Contents", []))
            return out

        return await asyncio.to_thread(_list)

    async def list_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        def _list() -> list[str]:
            out: list[str] = []
            pages = self.raw.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter
            )
            for page in pages:
                out.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", []))
            return out

        return await asyncio.to_thread(_list)

    async def delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            await self.call(
                "delete_objects",
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

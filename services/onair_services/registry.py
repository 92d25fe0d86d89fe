"""The services of onair: their names, default ports and where each one is reached in the mesh.

``SERVICES`` is the one list every launcher reads (``onair demo``, the e2e benchmark, the test
fixtures, the deploy-file checks); ``ServiceUrls`` reads ``ONAIR_<NAME>_URL`` for calls between
services (compose: ``http://<name>:8000``; k8s: ``http://<name>``; the demo: loopback ports).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    port: int  # devstack / compose host port; in a container every service listens on 8000
    database: bool  # owns a SQL database (DATABASE_URL)
    public: bool = False  # reachable from outside (only the gateway)


SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo("gateway", 8080, database=False, public=True),
        ServiceInfo("auth", 8101, database=True),
        ServiceInfo("liveapi", 8102, database=True),
        ServiceInfo("media", 8103, database=True),
        ServiceInfo("liveinfo", 8104, database=True),
        ServiceInfo("search", 8105, database=True),
        ServiceInfo("chat", 8106, database=True),
        ServiceInfo("wallet", 8107, database=True),
        ServiceInfo("bff", 8108, database=False),
        ServiceInfo("profstore", 8109, database=False),
        ServiceInfo("web", 8110, database=False),
    )
}


def default_url(name: str) -> str:
    return f"http://127.0.0.1:{SERVICES[name].port}"


class ServiceUrls(BaseSettings):
    """Base URL of every service inside the mesh (``ONAIR_<NAME>_URL``)."""

    model_config = SettingsConfigDict(env_prefix="ONAIR_", extra="ignore", frozen=True)

    gateway_url: str = default_url("gateway")
    auth_url: str = default_url("auth")
    liveapi_url: str = default_url("liveapi")
    media_url: str = default_url("media")
    liveinfo_url: str = default_url("liveinfo")
    search_url: str = default_url("search")
    chat_url: str = default_url("chat")
    wallet_url: str = default_url("wallet")
    bff_url: str = default_url("bff")
    profstore_url: str = default_url("profstore")
    web_url: str = default_url("web")

    def of(self, name: str) -> str:
        url = getattr(self, f"{name}_url", None)
        if not isinstance(url, str):
            raise KeyError(f"no service {name!r}")
        return url.rstrip("/")

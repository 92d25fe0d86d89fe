"""web settings (``ONAIR_WEB_*``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

#: The pages' Content-Security-Policy: scripts and styles from /static only (no inline script, no
#: inline event handler, no style attribute), data from the same origin (the gateway).
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_WEB_", extra="ignore", frozen=True)

    csp: str = DEFAULT_CSP
    # How often the home page asks the BFF again (the on-air list has no stream of its own).
    home_refresh_s: float = 5.0

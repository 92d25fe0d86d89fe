"""``onair encoder CHANNEL --key K``: play a (simulated) encoder against the ingest.

It connects to ``<url>/<channel>`` (default through the gateway), sends its hello and heartbeats,
shows the session while it runs, and stops cleanly on Ctrl-C or after ``--seconds``. A refused
key (or any refusal) prints one line naming the problem and exits non-zero; so does a session the
server ends (heartbeat timeout, stopped by the owner, server shutdown).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Annotated, Any

import typer

from onair.cli.common import console, fail, out

CODEC_CHOICES = ("h264", "h265", "av1", "vp9")


def command(
    channel: Annotated[str, typer.Argument(help="The channel to go live on (the streamer's username).")],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            envvar="ONAIR_PUBLISH_KEY",
            help="The channel's publish key (or ONAIR_PUBLISH_KEY, which keeps it out of shell history).",
            show_default=False,
        ),
    ],
    url: Annotated[
        str, typer.Option(help="Ingest base URL; the channel is appended.")
    ] = "ws://127.0.0.1:8080/ingest",
    height: Annotated[int, typer.Option(min=144, max=4320, help="Source height in pixels.")] = 1080,
    fps: Annotated[int, typer.Option(min=1, max=120, help="Source frames per second.")] = 60,
    codec: Annotated[str, typer.Option(help=f"Source codec: {', '.join(CODEC_CHOICES)}.")] = "h264",
    bitrate: Annotated[int, typer.Option(min=100, max=100_000, help="Source bitrate (kbit/s).")] = 6000,
    seconds: Annotated[
        float | None, typer.Option(min=0, help="Stop after this long (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Play an encoder: connect with the publish key, send heartbeats, show the live session."""
    if codec not in CODEC_CHOICES:
        fail(f"--codec must be one of {', '.join(CODEC_CHOICES)}, not {codec!r}")
    if not url.startswith(("ws://", "wss://")):
        fail(f"--url must be a ws:// or wss:// URL, not {url!r}")
    from onair_services.media.encoder import EncoderRefused, EncoderStats, run_encoder

    source = {"height": height, "fps": fps, "codec": codec, "bitrate_kbps": bitrate}
    stats = EncoderStats()

    def on_ready(ready: dict[str, Any]) -> None:
        names = ", ".join(f"{r['name']}{r['fps']}" for r in ready.get("renditions", []))
        out.print(
            f"[bold green]live[/] {channel} session {ready.get('session_id')} "
            f"(source {height}p{fps} {codec}) renditions: {names}",
            highlight=False,
        )

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.ensure_future(
            run_encoder(url, channel, key, source, seconds=seconds, stop=stop, on_ready=on_ready, stats=stats)
        )
        with console.status("connecting...") as status:
            while not task.done():
                await asyncio.wait({task}, timeout=0.5)
                rtt = f"{stats.last_rtt_ms:.1f} ms" if stats.last_rtt_ms is not None else "-"
                status.update(
                    f"on air {time.monotonic() - stats.started:5.0f}s  heartbeats {stats.heartbeats_sent}"
                    f"/{stats.heartbeats_acked} acked  rtt {rtt}   (Ctrl-C stops)"
                )
        return task.result()

    try:
        result = asyncio.run(main())
    except EncoderRefused as refused:
        code = f" (close code {refused.code})" if refused.code is not None else ""
        fail(f"{channel}: refused by the ingest: {refused.reason}{code}")
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the ingest at {url}: {exc or type(exc).__name__}")
    except Exception as exc:  # websockets' handshake errors (HTTP 404, bad gateway, ...)
        fail(f"cannot stream to {url}/{channel}: {type(exc).__name__}: {exc}")
    if not result.stopped:
        fail(f"{channel}: the server ended the stream: {result.reason} (close code {result.code})")
    out.print(
        f"stopped {channel}: {result.heartbeats_sent} heartbeats sent, {result.heartbeats_acked} acked",
        highlight=False,
    )

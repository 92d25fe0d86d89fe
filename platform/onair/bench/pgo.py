"""``onair bench pgo``: merge N synthetic ~1 MB CPU profiles; upload and pull against a profstore.

Reports ``merge_32_s`` (seconds to parse and merge the profiles, as the profstore does, not counting the
gzip of the result: ``gzip_merged_s``, nor ``jit_warmup_s``: compiling the codec's numba kernels, or
loading them from numba's cache, before anything is timed), ``merge_peak_mb``
(peak resident memory growth during that merge), ``upload_per_s`` (uploads per second to a running
profstore over HTTP) and ``pull_merged_s`` (seconds for ``GET .../merged`` of those profiles, uncached).
The profstore is started in-process under uvicorn on a free loopback port (dir backend in a temp
folder) unless ``--url`` points at one.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_profstore(settings: Any, *, port: int | None = None) -> Iterator[str]:
    """Run ``create_app(settings)`` under uvicorn in a thread; yield its base URL; stop it after."""
    import uvicorn

    from onair_services.profstore.app import create_app, make_store

    port = port or free_port()
    app = create_app(profstore=settings, store=make_store(settings))  # store given: logging left alone
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="profstore", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("profstore did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class _PeakRss:
    """Peak resident set size while running, sampled from /proc every few milliseconds."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def run(
    profiles: int, size_kb: int, uploads: int, url: str | None, token: str | None, progress: Any
) -> dict[str, Any]:
    import gc
    import tempfile

    import httpx

    from onair.pgo import _samples, pprof, synth
    from onair_services.profstore.settings import ProfstoreSettings

    task = progress.add_task("compiling the pprof kernels", total=None)
    jit_warmup_s = pprof.warm_up()  # as the profstore does at start-up: not part of the timed merge
    progress.update(task, description="generating profiles")
    blobs = synth.make_profiles(profiles, size_kb * 1024)
    progress.update(task, description=f"merging {profiles} profiles")
    gc.collect()
    _samples.avoid_hugepage_stalls()  # as the profstore does
    phases: dict[str, float] = {}
    _samples.PHASES = phases
    with _PeakRss() as rss:
        t0 = time.perf_counter()
        loaded = pprof.load_raw_all(blobs, check=False)
        phases["load"] = time.perf_counter() - t0
        parsed = [p for p in loaded if not isinstance(p, pprof.ProfileError)]
        if len(parsed) != len(loaded):
            raise next(p for p in loaded if isinstance(p, pprof.ProfileError))
        merged = pprof.merge_serialized(parsed)
        merge_s = time.perf_counter() - t0
    _samples.PHASES = None
    t0 = time.perf_counter()
    out_bytes = len(pprof.gzip_members(merged))
    gzip_s = time.perf_counter() - t0
    samples_in = sum(len(p) for p in parsed)
    big = 1 << 40
    samples_out = len(
        pprof.load_raw(merged, require_gzip=False, max_bytes=big, max_decompressed=big, check=False)
    )
    del parsed, merged
    gc.collect()

    progress.update(task, description="uploading and pulling")
    with contextlib.ExitStack() as stack:
        if url is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="onair-bench-pgo-"))
            token = "bench-token"
            settings = ProfstoreSettings(
                dir=Path(tmp),
                token=token,
                max_upload_bytes=64 << 20,
                max_limit=max(256, uploads),
                max_merge_input_bytes=1 << 40,
            )
            url = stack.enter_context(running_profstore(settings))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        app = f"bench{int(time.time())}"
        with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            now = int(time.time() * 1000)
            t0 = time.perf_counter()
            for i in range(uploads):
                body = blobs[i % len(blobs)]
                r = client.post(f"/v1/profiles/{app}", content=body, params={"at": now - uploads + i})
                r.raise_for_status()
            upload_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = client.get(f"/v1/profiles/{app}/merged", params={"limit": min(uploads, len(blobs))})
            r.raise_for_status()
            pull_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            client.get(
                f"/v1/profiles/{app}/merged", params={"limit": min(uploads, len(blobs))}
            ).raise_for_status()
            pull_cached_s = time.perf_counter() - t0
            with contextlib.suppress(httpx.HTTPError):
                client.delete(f"/v1/profiles/{app}", params={"from": 0, "to": now + 1})
    progress.update(task, description="done", total=1, completed=1)
    return {
        "profiles": profiles,
        "profile_kb": round(sum(len(b) for b in blobs) / len(blobs) / 1024, 1),
        "samples_in": samples_in,
        "samples_out": samples_out,
        "merged_kb": round(out_bytes / 1024, 1),
        "merge_32_s": round(merge_s, 3),
        "merge_phases_s": {k: round(v, 3) for k, v in phases.items()},
        "jit_warmup_s": round(jit_warmup_s, 3),
        "gzip_merged_s": round(gzip_s, 3),
        "merge_peak_mb": round(rss.growth_mb, 1),
        "upload_per_s": round(uploads / upload_s, 1) if upload_s else None,
        "pull_merged_s": round(pull_s, 3),
        "pull_cached_s": round(pull_cached_s, 4),
    }


def register(app: typer.Typer) -> None:
    @app.command("pgo")
    def pgo(
        profiles: Annotated[int, typer.Option(min=1, help="Profiles to merge.")] = 32,
        size_kb: Annotated[int, typer.Option(min=1, help="Approximate size of each profile (gzip).")] = 1024,
        uploads: Annotated[int, typer.Option(min=1, help="Profiles to upload to the profstore.")] = 32,
        url: Annotated[
            str | None, typer.Option(help="Use this profstore instead of starting one in-process.")
        ] = None,
        token: Annotated[str | None, typer.Option(envvar="ONAIR_PROFSTORE_TOKEN")] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """PGO profile store: merge N ~1 MB profiles; upload and pull throughput."""
        import orjson
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from onair.cli.common import console, out
        from onair.logging import configure_logging

        # The in-process profstore logs each upload: keep this process's logs to warnings, on stderr.
        configure_logging("bench", level="WARNING", stream=sys.__stderr__ or sys.stderr)

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            result = run(profiles, size_kb, uploads, url, token, progress)
        table = Table(title=f"onair bench pgo ({profiles} profiles of ~{result['profile_kb']} KB)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in result.items():
            table.add_row(key, str(value))
        console.print(table)
        if json_out:
            out.print(orjson.dumps(result).decode(), highlight=False, soft_wrap=True)

"""The Dockerfile builds one image for every service: multi-stage, no compilers in the runtime
stage, a non-root user, the writable paths named, the numba cache warmed, a health check on a
route every service has; .dockerignore sends exactly what the Dockerfile copies."""

import fnmatch
import re

from onair_services.registry import SERVICES

from .manifests import ROOT, CodeFacts, Stage, dockerfile_stages, image_env


def _runtime() -> tuple[Stage, dict[str, Stage]]:
    stages = dockerfile_stages()
    assert stages[-1].name == "runtime", "the default target (last stage) must be the service image"
    return stages[-1], {s.name: s for s in stages}


def test_the_runtime_stage_is_slim_non_root_and_runs_the_cli() -> None:
    runtime, stages = _runtime()
    chain: list[Stage] = []
    stage: Stage | None = runtime
    while stage is not None:
        chain.append(stage)
        stage = stages.get(stage.base)
    assert chain[-1].base.startswith("python:") and "-slim" in chain[-1].base
    shipped = [line for st in chain for line in st.lines]
    assert not any(re.search(r"apt-get install|build-essential|gcc", line) for line in shipped)
    copies = [line for line in runtime.lines if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/onair /opt/onair"], "only the built virtualenv is shipped"
    assert "USER 10001:10001" in runtime.lines
    assert 'ENTRYPOINT ["onair"]' in runtime.lines
    assert any("pprof.warm_up()" in line for line in runtime.lines), "numba cache not warmed"
    # compilers do exist in the build stage (a dependency without a wheel still builds)
    assert any("build-essential" in line for line in stages["build"].lines)


def test_the_writable_paths_are_named_in_the_image() -> None:
    env = image_env()
    header = (ROOT / "Dockerfile").read_text().split("ARG ")[0]
    for path in ("/tmp", env["ONAIR_SPOOL_DIR"], env["NUMBA_CACHE_DIR"]):
        assert path in header, f"{path} is not documented in the Dockerfile header"
    base = next(s for s in dockerfile_stages() if s.name == "base")
    created = " ".join(base.lines)
    assert env["ONAIR_SPOOL_DIR"] in created and env["NUMBA_CACHE_DIR"] in created
    assert env["ONAIR_HOST"] == "0.0.0.0" and env["ONAIR_PORT"] == "8000"


def test_the_healthcheck_asks_a_route_every_service_has(code_facts: CodeFacts) -> None:
    runtime, _ = _runtime()
    (check,) = [line for line in runtime.lines if line.startswith("HEALTHCHECK")]
    assert "/healthz" in check and "ONAIR_PORT" in check and "urllib.request" in check
    for name in SERVICES:
        if name in code_facts.routes:
            assert "/healthz" in code_facts.routes[name], name


def test_dockerignore_sends_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore is an allow-list"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    sources = set()
    for stage in dockerfile_stages():
        for line in stage.lines:
            if line.startswith("COPY") and "--from=" not in line:
                parts = [p for p in line.split()[1:] if not p.startswith("--")]
                sources |= set(parts[:-1])
    sources = {s.rstrip("/").removeprefix("./") for s in sources}
    assert sources == allowed, f"copied {sorted(sources)}, sent {sorted(allowed)}"
    excluded = [line for line in lines[1:] if not line.startswith("!")]
    assert any(fnmatch.fnmatch("platform/onair/__pycache__", p.replace("**/", "*/")) for p in excluded)

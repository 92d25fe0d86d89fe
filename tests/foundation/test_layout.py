"""The repository layout: `platform` never shadows the standard library's module, and the
benchmarks live in `onair/bench/` only (a pattern package holds the pattern users copy)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_platform_from_repo_root_gets_stdlib() -> None:
    code = "import platform, sysconfig; print(platform.__file__); print(platform.python_version())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    path, version = out.stdout.splitlines()
    assert Path(path).parent == Path(__import__("sysconfig").get_paths()["stdlib"])
    assert version == ".".join(map(str, sys.version_info[:3]))


def test_no_platform_package_marker() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / "platform" / "onair" / "__init__.py").exists()


def test_services_live_under_their_own_root() -> None:
    import onair_services

    assert Path(onair_services.__file__).parent == ROOT / "services" / "onair_services"


ONAIR = ROOT / "platform" / "onair"
BENCH = ONAIR / "bench"
# The CLI sits above everything: it registers the benchmarks as `onair bench …` (onair/cli/bench.py).
BENCH_USERS = {BENCH, ONAIR / "cli"}


def _library_modules() -> list[Path]:
    """Every module of the platform library and the services, except the benchmarks and the CLI."""
    roots = [ONAIR, ROOT / "services" / "onair_services"]
    return [
        path
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if not any(path.is_relative_to(d) for d in BENCH_USERS)
    ]


def test_benchmarks_live_only_in_onair_bench() -> None:
    assert (BENCH / "__init__.py").exists()
    misplaced = [
        str(path.relative_to(ROOT))
        for path in _library_modules()
        if "bench" in path.stem or "harness" in path.stem
    ]
    assert misplaced == [], f"benchmark code outside platform/onair/bench/: {misplaced}"


def _names_bench(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        names = [node.module or ""]
        if node.module == "onair":
            names = [f"onair.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        names = [node.value]  # `python -m onair.bench...`, importlib.import_module("onair.bench...")
    else:
        return False
    return any(name == "onair.bench" or name.startswith("onair.bench.") for name in names)


def test_no_pattern_or_service_depends_on_the_benchmarks() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        for path in _library_modules()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _names_bench(node)
    ]
    assert offenders == [], f"modules that use onair.bench (dependencies go bench -> pattern): {offenders}"

"""The repository layout never shadows the standard library's `platform` module."""

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

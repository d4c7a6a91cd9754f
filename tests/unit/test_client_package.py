"""The package built from the repository carries edgestats_client and the generated `edgestats`
stubs it imports: installed alone, without gen/, services/ or the development venv's .pth files
on the path, the client imports and opens a channel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run by an interpreter without `site` (-I -S): only the installed package and the venv's
# third-party packages (grpc, protobuf) are on the path, and no .pth file is processed.
CHECK = """
import json, sys
installed, third_party = sys.argv[1:3]
sys.path[:0] = [installed, third_party]
import edgestats_client
from edgestats.metrics.v1 import metrics_service_pb2
from edgestats.sql_query.v1 import sql_query_service_pb2
client = edgestats_client.connect("127.0.0.1:1", key="k")
client.close()
modules = [m for name, m in sys.modules.items() if name.split(".")[0].startswith("edgestats")]
print(json.dumps({"files": [m.__file__ for m in modules if getattr(m, "__file__", None)],
                  "paths": [p for n, m in sys.modules.items() if n.split(".")[0] == "edgestats"
                            for p in getattr(m, "__path__", [])],
                  "sys_path": sys.path}))
"""


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the repository (a build writes into its source tree)."""
    if not (REPO / "gen" / "edgestats").is_dir():
        pytest.skip("no gen/: run `make protos`")
    root = tmp_path_factory.mktemp("client-package")
    source = root / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.binpb", "openapi.json")
    for name in ("services", "gen"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    shutil.copy(REPO / "pyproject.toml", source)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"),
         str(source))
    (built,) = (root / "dist").glob("edgestats-*.whl")
    return built


def test_the_wheel_holds_the_client_and_every_stub(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgestats_client/__init__.py" in names
    for proto in (REPO / "protos").rglob("*.proto"):
        stem = proto.relative_to(REPO / "protos").with_suffix("").as_posix()
        assert {f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"} <= names, stem
    assert not any(name.startswith("gen/") for name in names)


def test_the_installed_client_imports_from_the_package(wheel: Path, tmp_path: Path) -> None:
    installed = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(installed), str(wheel))
    third_party = sysconfig.get_paths()["purelib"]
    done = subprocess.run([sys.executable, "-I", "-S", "-c", CHECK, str(installed), third_party],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["files"] and seen["paths"]
    for path in seen["files"] + seen["paths"]:
        assert Path(path).is_relative_to(installed), path
    sources = (REPO / "gen", REPO / "services")
    assert not any(Path(p).is_relative_to(s) for p in seen["sys_path"] for s in sources)

"""The project's shape: one ``unmask`` import namespace over the top-level folders, the layers of DESIGN.md
(import-linter contracts in pyproject.toml), ruff clean, small files, and a wheel that holds exactly the
package (recipes included) and nothing named ``rl``/``eval``/``rewards``/``rollouts``/``tasks``."""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .paths import REPO

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with the standard library of Python 3.11+")

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
FOLDERS = {package: REPO / folder for package, folder in SETUPTOOLS["package-dir"].items()}
CODE_FOLDERS = {package: path for package, path in FOLDERS.items() if package != "unmask.recipes"}
TOP_LEVEL_NAMES = {path.name for path in FOLDERS.values()} - {"unmask"}
BIN = Path(sys.executable).parent
MAX_LINES = 400


def source_files() -> list[Path]:
    return sorted(p for path in CODE_FOLDERS.values() for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_folder_is_listed_and_mapped():
    """pyproject's explicit package list covers every folder holding code or recipes, under ``unmask.``."""
    expected = set()
    for package, root in FOLDERS.items():
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
            if any(f.suffix in {".py", ".yaml", ".json"} for f in folder.iterdir()):
                expected.add(".".join([package, *folder.relative_to(root).parts]))
    assert set(SETUPTOOLS["packages"]) == expected
    assert all(package == "unmask" or package.startswith("unmask.") for package in SETUPTOOLS["packages"])
    assert PYPROJECT["project"]["scripts"] == {"unmask": "unmask.rl.cli:main"}


@pytest.mark.parametrize("root", ["source", "tests"])
def test_imports_use_the_unmask_namespace(root):
    """No module imports a folder by its bare name (``import rl``): installed, only ``unmask.rl`` exists."""
    files = source_files() if root == "source" else sorted((REPO / "tests").rglob("*.py"))
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in TOP_LEVEL_NAMES]
    assert not bad, "import these as unmask.<folder>:\n" + "\n".join(bad)


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in source_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these files by concern (at most {MAX_LINES} lines): {long}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", "LICENSE"]:
        shutil.copy(REPO / name, src / name)
    for path in FOLDERS.values():
        shutil.copytree(path, src / path.name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True)
    (built,) = (tmp / "dist").glob("unmask-*.whl")
    return built


def test_import_contracts_hold(wheel, tmp_path):
    """The layers of DESIGN.md ([tool.importlinter] in pyproject.toml), checked on the installed layout: grimp
    reads packages from the file system, and only there are the folders one ``unmask/`` tree."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache", "--config", str(REPO / "pyproject.toml")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_ruff_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_wheel_holds_the_unmask_package_only(wheel):
    """Every module and recipe under ``unmask/``, nothing else at the top of site-packages."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names} == {"unmask", wheel.name.split("-py")[0] + ".dist-info"}
    expected = {f"{package.replace('.', '/')}/{f.relative_to(root).as_posix()}"
                for package, root in FOLDERS.items() for f in root.rglob("*")
                if f.suffix in {".py", ".yaml", ".json"} and "__pycache__" not in f.parts}
    assert expected <= names, sorted(expected - names)[:10]
    assert {"unmask/__init__.py", "unmask/recipes/demo/rl.yaml", "unmask/recipes/deepspeed/zero2.json",
            "unmask/rl/cli.py"} <= names

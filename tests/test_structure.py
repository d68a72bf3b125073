"""Import hygiene: the engine never imports ComfyUI; importing the packages has no side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

COMFY_MODULES = {
    "comfy",
    "comfy_api",
    "comfy_extras",
    "comfy_execution",
    "folder_paths",
    "server",
    "nodes",
    "execution",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_comfyui():
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & COMFY_MODULES)
        for path in (REPO / "vea_engine").rglob("*.py")
        if _imports(path) & COMFY_MODULES
    }
    assert offenders == {}


def test_nodes_import_their_own_code_relatively():
    for path in (REPO / "nodes").glob("*.py"):
        assert not (_imports(path) & {"vea_engine"}), f"{path.name} must import the engine relatively (..vea_engine)"


def test_importing_the_engine_is_lazy_and_silent():
    code = (
        "import sys, vea_engine, vea_engine.mask, vea_engine.geometry\n"
        "assert 'transformers' not in sys.modules, 'transformers imported eagerly'\n"
        "assert not any(m.split('.')[0] in {'comfy', 'comfy_api', 'folder_paths'} for m in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok" and done.stderr == "", done.stderr


def test_root_package_exports_nothing_outside_comfyui():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('vea_pack', {str(REPO / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(REPO)!r}])\n"
        "pack = importlib.util.module_from_spec(spec); sys.modules['vea_pack'] = pack; spec.loader.exec_module(pack)\n"
        "print(hasattr(pack, 'comfy_entrypoint'), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False False", done.stderr


def test_public_names_never_collide_with_submodules():
    """``from vea_engine import answer`` is the function even after every submodule was imported."""
    code = (
        "import importlib, pkgutil, types, vea_engine\n"
        "for m in pkgutil.walk_packages(vea_engine.__path__, 'vea_engine.'):\n"
        "    if '.testing' not in m.name and not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = [n for n in vea_engine.__all__ if isinstance(getattr(vea_engine, n), types.ModuleType)]\n"
        "from vea_engine import answer, run_vea, evaluate\n"
        "assert callable(answer) and callable(run_vea) and callable(evaluate), (answer, run_vea)\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr + done.stdout


def test_only_the_demo_module_reaches_the_test_model_builder():
    users = set()
    for path in (REPO / "vea_engine").rglob("*.py"):
        if "testing" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and "testing" in node.module.split("."):
                users.add(path.name)
    assert users == {"demo.py"}, users

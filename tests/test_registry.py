"""pyproject.toml is ready for the Comfy Registry (https://docs.comfy.org/registry/specifications).

Every field the Registry requires is present and well-formed (the rules its docs and the
``comfy node publish`` parser state), the icon is the square image the script draws, the
version is the engine's, and the dependencies are the ones ComfyUI-Manager installs.

The Registry's own tool checks the same file: comfy-cli (the command line the publishing
workflow runs) validates it offline (``comfy node validate``), its parser reads every field as
declared, and the archive it would upload holds the pack. comfy-cli lives in its own venv
(``scripts/install_comfy_cli.sh``, part of ``scripts/setup.sh --dev``), not in the project's:
it brings ~25 packages the project does not need (uv, an ffmpeg binary, telemetry clients).
Its commands run with telemetry off and a throwaway home, so nothing is written outside tmp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from PIL import Image

from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
COMFY = PYPROJECT["tool"]["comfy"]
TESTED_COMFYUI = ("0.3.75", "0.33.0")  # the versions tests/comfy_harness.py runs the node tests on
# comfy-cli's check of requires-comfyui: comma-separated [operator]X.Y.Z[-suffix]
VERSION_PART = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
ICON_TYPES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}


def test_project_name_is_a_valid_node_id():
    name = PROJECT["name"]
    assert 0 < len(name) < 100
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name), "alphanumerics, '-', '_', '.'; starts with a letter"
    assert not re.search(r"[._-]{2}", name) and name[-1].isalnum(), "no consecutive or trailing special characters"


def test_version_is_semver_and_the_engines():
    from vea_engine import __version__

    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])
    assert PROJECT["version"] == __version__


def test_description_license_and_python():
    assert 10 < len(PROJECT["description"]) < 300
    license = PROJECT["license"]
    assert isinstance(license, dict) and set(license) <= {"file", "text"} and license
    if "file" in license:
        assert (REPO / license["file"]).is_file()
    assert SpecifierSet(PROJECT["requires-python"]).contains(f"{sys.version_info.major}.{sys.version_info.minor}")


def test_repository_url_is_a_github_repository():
    url = urllib.parse.urlsplit(PROJECT["urls"]["Repository"])
    assert url.scheme == "https" and url.netloc == "github.com"
    assert re.fullmatch(r"/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", url.path), url.path
    for key, link in PROJECT["urls"].items():
        assert link.startswith(PROJECT["urls"]["Repository"]), key


def test_classifiers_are_ones_the_registry_reads():
    for classifier in PROJECT.get("classifiers", []):
        assert re.fullmatch(
            r"Operating System :: (OS Independent|Microsoft :: Windows|POSIX.*|MacOS.*)"
            r"|Environment :: (GPU :: (NVIDIA CUDA|AMD ROCm|Intel Arc|Apple Metal)|NPU :: Huawei Ascend)",
            classifier,
        ), classifier


def test_dependencies_are_the_requirements_manager_installs():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    manager = {str(Requirement(line.split("#")[0])) for line in lines if line.split("#")[0].strip()}
    assert {str(Requirement(dep)) for dep in PROJECT["dependencies"]} == manager


def test_tool_comfy_publisher_and_display_name():
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", COMFY["PublisherId"]) and len(COMFY["PublisherId"]) < 100
    assert 0 < len(COMFY["DisplayName"]) < 100


def test_requires_comfyui_is_the_oldest_tested_release_and_admits_every_tested_one():
    spec = COMFY["requires-comfyui"]
    assert all(VERSION_PART.match(part.strip()) for part in spec.split(",")), spec
    specifier = SpecifierSet(spec)
    assert all(specifier.contains(v) for v in TESTED_COMFYUI), (spec, TESTED_COMFYUI)
    assert not specifier.contains("0.3.74"), "older releases are untested: the lower bound is the oldest tested one"


def _icon_file():
    """The repository file the Icon names: a path, or a raw.githubusercontent.com URL into this repository."""
    icon = COMFY["Icon"]
    url = urllib.parse.urlsplit(icon)
    if not url.scheme:
        return REPO / icon
    assert url.scheme == "https" and url.netloc == "raw.githubusercontent.com", icon
    owner, repo, _branch, path = url.path.strip("/").split("/", 3)
    assert f"/{owner}/{repo}" == urllib.parse.urlsplit(PROJECT["urls"]["Repository"]).path, icon
    return REPO / path


def test_icon_is_a_square_image_of_at_most_400_pixels_in_the_repository():
    path = _icon_file()
    assert path.is_file(), f"{path} (named by [tool.comfy] Icon) does not exist"
    assert path.suffix.lower() in ICON_TYPES
    with Image.open(path) as image:
        assert image.format == ICON_TYPES[path.suffix.lower()]
        assert image.width == image.height <= 400


def test_icon_is_the_one_the_script_draws():
    spec = importlib.util.spec_from_file_location("make_icon", REPO / "scripts" / "make_icon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drawn = np.asarray(module.draw_icon(), dtype=np.int16)
    with Image.open(_icon_file()) as image:
        shipped = np.asarray(image.convert("RGBA"), dtype=np.int16)
    assert drawn.shape == shipped.shape
    assert np.abs(drawn - shipped).max() <= 1, "icon.png is stale: run scripts/make_icon.py"


@pytest.mark.parametrize("include", COMFY["includes"])
def test_includes_exist_and_hold_the_examples(include):
    path = REPO / include
    assert path.exists(), include
    if path.is_dir():
        assert any(path.glob("*.json")) and any(path.glob("*.jpg")), f"{include}: workflows and their thumbnails"


# ---- the Registry's own tool and the publishing workflow -------------------------------------
COMFY_CLI = Path(os.environ.get("VEA_COMFY_CLI", REPO / ".cache" / "comfy-cli" / "bin" / "comfy"))
PUBLISH_WORKFLOW = REPO / ".github" / "workflows" / "publish.yml"
PUBLISH_ACTION = "Comfy-Org/publish-node-action@v1"
ACTION_PYTHON = "3.10"  # the interpreter the publish action sets up (its action.yml) to run comfy-cli
# comfy-cli's parser, as ``comfy node validate`` / ``publish`` / ``pack`` call it, printed as JSON.
_PARSE = """
import dataclasses, json
from comfy_cli.registry.config_parser import extract_node_configuration

def plain(value):
    if dataclasses.is_dataclass(value):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, str) else value

print(json.dumps(plain(extract_node_configuration("pyproject.toml"))))
"""
# What ``comfy node pack`` / ``publish`` upload: git-tracked files and [tool.comfy] includes, zipped.
_PACK = """
import sys
from comfy_cli.file_utils import zip_files
from comfy_cli.registry.config_parser import extract_node_configuration

zip_files(sys.argv[1], includes=extract_node_configuration("pyproject.toml").tool_comfy.includes)
"""


@pytest.fixture(scope="module")
def comfy_cli(tmp_path_factory):
    """``comfy_cli(*args, python=False)``: run comfy-cli (or its interpreter) in the repository, offline,
    telemetry off, with a throwaway home; returns the finished process."""
    if not COMFY_CLI.is_file():
        pytest.fail(f"comfy-cli is not installed at {COMFY_CLI}; run `bash scripts/install_comfy_cli.sh`")
    home = tmp_path_factory.mktemp("comfy-cli-home")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1"}

    def run(*args: str, python: bool = False) -> subprocess.CompletedProcess:
        command = [str(COMFY_CLI.parent / "python"), *args] if python else [str(COMFY_CLI), *args]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    return run


def test_comfy_cli_validates_the_pack_without_a_warning(comfy_cli):
    done = comfy_cli("--skip-prompt", "--no-enable-telemetry", "node", "validate")
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "All validation checks passed" in output, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output


def test_comfy_cli_reads_every_field_as_declared(comfy_cli):
    from vea_engine import __version__

    done = comfy_cli("-c", _PARSE, python=True)
    assert done.returncode == 0 and "Warning" not in done.stdout, done.stdout + done.stderr
    read = json.loads(done.stdout.splitlines()[-1])
    project, comfy = read["project"], read["tool_comfy"]
    classifiers = PROJECT["classifiers"]
    assert (project["name"], project["version"], project["description"]) == (
        PROJECT["name"],
        __version__,
        PROJECT["description"],
    )
    assert project["requires_python"] == PROJECT["requires-python"] and project["license"]["text"] == "MIT"
    assert project["dependencies"] == PROJECT["dependencies"]
    assert project["urls"]["repository"] == PROJECT["urls"]["Repository"]
    assert project["supported_os"] == [c.removeprefix("Operating System :: ") for c in classifiers if "System" in c]
    assert project["supported_accelerators"] == [c.removeprefix("Environment :: ") for c in classifiers if "Env" in c]
    assert project["supported_os"] and project["supported_accelerators"]
    assert project["supported_comfyui_version"] == COMFY["requires-comfyui"]
    assert (comfy["publisher_id"], comfy["display_name"], comfy["icon"], comfy["includes"]) == (
        COMFY["PublisherId"],
        COMFY["DisplayName"],
        COMFY["Icon"],
        COMFY["includes"],
    )


def test_registry_archive_holds_the_pack_its_help_pages_and_examples(comfy_cli, tmp_path):
    archive = tmp_path / "node.zip"
    done = comfy_cli("-c", _PACK, str(archive), python=True)
    assert done.returncode == 0 and archive.is_file(), done.stdout + done.stderr
    with zipfile.ZipFile(archive) as packed:
        names = set(packed.namelist())
    nodes = json.loads((REPO / "node_list.json").read_text())
    wanted = {
        "__init__.py",
        "pyproject.toml",
        "requirements.txt",
        "node_list.json",
        "icon.png",
        "vea_engine/__init__.py",
    }
    wanted |= {f"nodes/{path.name}" for path in (REPO / "nodes").glob("*.py")}
    wanted |= {f"web/docs/{node}.md" for node in nodes}
    wanted |= {f"workflows/{path.name}" for path in (REPO / "workflows").glob("*.*")}
    assert wanted <= names, sorted(wanted - names)
    assert not [name for name in names if name.startswith((".cache/", ".venv/", "artifacts/"))]


def test_publish_workflow_runs_the_registry_action_on_a_version_change():
    workflow = yaml.safe_load(PUBLISH_WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["paths"] == ["pyproject.toml"]
    assert workflow["permissions"]["issues"] == "write"  # the action opens an issue when its lint finds exec/eval
    (job,) = workflow["jobs"].values()
    assert "fork == false" in job["if"]
    steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    publish = steps[PUBLISH_ACTION.split("@")[0]]
    assert publish["uses"] == PUBLISH_ACTION
    assert publish["with"] == {"personal_access_token": "${{ secrets.REGISTRY_ACCESS_TOKEN }}"}
    assert SpecifierSet(PROJECT["requires-python"]).contains(ACTION_PYTHON)

"""pyproject.toml is ready for the Comfy Registry (https://docs.comfy.org/registry/specifications).

Every field the Registry requires is present and well-formed (the rules its docs and the
``comfy node publish`` parser state), the icon is the square image the script draws, the
version is the engine's, and the dependencies are the ones ComfyUI-Manager installs.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import urllib.parse

import numpy as np
import pytest
import tomllib
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

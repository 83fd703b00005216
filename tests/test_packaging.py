"""pyproject.toml: pip installs the library only, with its console script; registry metadata and no pinned torch."""

import importlib
import tomllib

from pack_loader import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_pip_installs_dream_core_only_with_the_console_script():
    meta = _pyproject()
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["dream_core", "dream_core.*"]
    target = meta["project"]["scripts"]["deepdream-video"]
    module, _, name = target.partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_registry_metadata_and_torch_left_to_the_host():
    meta = _pyproject()
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert project["name"] == "deepdream-video" and "comfyui" not in project["name"].lower()
    assert project["version"] and project["description"] and project["license"] and project["urls"]["Repository"]
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy)
    torch_deps = [d for d in project["dependencies"] if d.split(">")[0].split("=")[0] in ("torch", "torchvision")]
    assert torch_deps and all("==" not in d and "<" not in d for d in torch_deps)  # lower bounds only, never pinned
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert not [line for line in requirements if line.strip().startswith(("torch", "torchvision"))]

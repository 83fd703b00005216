"""Shared fixtures: paths to the real inputs in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a real input in ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present (real inputs live in ../shared/data)")
    return path


import torch  # noqa: E402
from torch import nn  # noqa: E402


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``cuda`` need a CUDA device (benchmarks/gpu_check.py runs them); skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

from dream_core.models.spec import IMAGENET, DreamModel, ModelSpec  # noqa: E402


class TinyNet(nn.Module):
    """A 3-stage conv net, small enough to dream in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.head(x.mean(dim=(2, 3)))


def tiny_spec() -> ModelSpec:
    return ModelSpec(
        name="tiny",
        description="test net",
        build=TinyNet,
        layers={"conv1": "conv1", "conv2": "conv2", "conv3": "conv3"},
        normalization=IMAGENET,
        default_objective="conv2",
        min_size=8,
    )


@pytest.fixture
def tiny_model() -> DreamModel:
    torch.manual_seed(0)
    return DreamModel(tiny_spec(), TinyNet(), "random init")


@pytest.fixture(scope="session")
def lite0() -> DreamModel:
    """The real offline default model with its packaged ImageNet weights."""
    from dream_core.models import load_model

    return load_model("efficientnet_lite0")


def multiscale_texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random colour noise ``[1,3,h,w]`` in 0..1 with detail at several scales and stretched
    contrast (deterministic): something optical flow can lock onto at every pyramid level."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, h, w)
    for step in (4, 8, 16):
        coarse = torch.rand(1, 3, h // step + 2, w // step + 2, generator=g)
        img += torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    img /= 3
    return ((img - img.mean()) * 2.0 + 0.5).clamp(0.0, 1.0)


def textured_image(h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB texture ``[1,3,h,w]`` in 0..1 (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def panning_clip(frames: int = 5, h: int = 48, w: int = 64, step: int = 2) -> torch.Tensor:
    """Frames of a wide texture panning left by ``step`` px per frame: ``[N,3,h,w]``, so frame ``t`` is
    frame ``t-1`` read ``step`` px further right (backward flow ``u = +step``)."""
    wide = textured_image(h, w + step * frames, seed=5)
    return torch.cat([wide[..., step * t: step * t + w] for t in range(frames)])


#: Content moves 3 px right and 2 px up from ``prev`` to :func:`shifted` ``(prev)``.
SHIFT_X, SHIFT_Y = 3, -2


def shifted(prev: torch.Tensor) -> torch.Tensor:
    """``cur(x, y) = prev(x - 3, y + 2)``, so the backward flow is ``(u, v) = (-3, +2)``."""
    return torch.roll(prev, shifts=(SHIFT_Y, SHIFT_X), dims=(-2, -1))


def occlusion_clip(n: int = 3, speed: int = 6) -> tuple[torch.Tensor, int]:
    """A textured square moving ``speed`` px right per frame over a still background: ``[n,3,96,128]``."""
    bg, square = multiscale_texture(96, 128, seed=2), multiscale_texture(32, 32, seed=3)
    frames = []
    for t in range(n):
        frame = bg.clone()
        x0 = 40 + speed * t
        frame[..., 32:64, x0 : x0 + 32] = square
        frames.append(frame[0])
    return torch.stack(frames), speed


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 12-frame 64x48 NTSC-rate H.264 clip of index-coded frames with an AAC tone (``video_clips``)."""
    from video_clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="session")
def silent_clip(tmp_path_factory) -> Path:
    """The same clip without audio."""
    from video_clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "silent.mp4", audio=None)

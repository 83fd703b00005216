"""Backend flags around our own calls (dream_core.backends): set inside, restored after, also on errors."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image
from dream_core.backends import (
    conv_tf32,
    cudnn_disabled,
    dream_flags,
    full_precision,
    matmul_tf32,
    reduced_precision,
    scoped_flags,
)

cudnn = torch.backends.cudnn


def _state() -> tuple:
    return cudnn.enabled, cudnn.benchmark, conv_tf32(), matmul_tf32()


@pytest.fixture
def host_flags():
    """The flags as a host process (ComfyUI) might have set them, put back after the test."""
    before = (cudnn.enabled, cudnn.benchmark)
    with scoped_flags(tf32=True):  # restores TF32 on leaving, whatever the test did
        cudnn.benchmark = True
        yield
    cudnn.enabled, cudnn.benchmark = before


def test_flags_are_set_inside_and_restored_after(host_flags):
    before = _state()
    assert before[1] is True and before[2] is True
    with scoped_flags(cudnn_enabled=False, cudnn_benchmark=False, tf32=False):
        assert _state() == (False, False, False, False)
    assert _state() == before


def test_flags_are_restored_when_the_block_raises(host_flags):
    before = _state()
    with pytest.raises(RuntimeError, match="boom"):
        with scoped_flags(cudnn_enabled=False, cudnn_benchmark=False, tf32=False):
            raise RuntimeError("boom")
    assert _state() == before


def test_nested_blocks_restore_level_by_level(host_flags):
    with cudnn_disabled():
        with dream_flags(torch.device("cuda")):  # only flags: needs no GPU
            assert (cudnn.enabled, cudnn.benchmark) == (False, False)
        assert (cudnn.enabled, cudnn.benchmark) == (False, True)
    assert (cudnn.enabled, cudnn.benchmark) == (True, True)


def test_unset_flags_are_left_alone(host_flags):
    with scoped_flags(cudnn_enabled=False):
        assert cudnn.benchmark is True and conv_tf32()


def test_dream_flags_touch_nothing_off_cuda(host_flags):
    with dream_flags(torch.device("cpu")):
        assert cudnn.benchmark is True


def test_full_precision_turns_autocast_and_tf32_off():
    cpu = torch.device("cpu")
    assert not reduced_precision(cpu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert reduced_precision(cpu)
        with full_precision(cpu):
            assert not reduced_precision(cpu)
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
        assert reduced_precision(cpu)
    with full_precision(torch.device("cuda")):  # the TF32 flags, on any machine
        assert not conv_tf32() and not matmul_tf32()


def test_a_dream_leaves_the_hosts_flags_as_it_found_them(tiny_model, host_flags):
    before = _state()
    dream_image(tiny_model, textured_image(32, 32), "conv2", DreamSettings(num_octaves=1, num_iterations=2))
    assert _state() == before


@pytest.mark.cuda
def test_a_cuda_dream_runs_without_benchmark_mode_and_restores_it(host_flags):
    from conftest import TinyNet, tiny_spec
    from dream_core.models.spec import DreamModel

    torch.manual_seed(0)
    model = DreamModel(tiny_spec(), TinyNet().cuda(), "random init")
    seen = []
    dream_image(model, textured_image(32, 32).cuda(), "conv2", DreamSettings(num_octaves=1, num_iterations=3),
                on_step=lambda *a: seen.append(cudnn.benchmark))
    assert seen == [False] * 3
    assert cudnn.benchmark is True

"""Tests of the encoders' networks and the triplet loss (landtaxa.learning.networks)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landtaxa.learning.encoders import build_encoder
from landtaxa.learning.networks import (
    PAPER_STRIDES,
    PAPER_WIDTHS,
    BasicBlock,
    Conv2d,
    SpectralStats,
    TileNet,
    triplet_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest (and steadiest on a busy machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def paper_net() -> TileNet:
    """One paper-sized TileNet (3 bands, z_dim=16) shared by the shape tests."""
    torch.manual_seed(0)
    return TileNet(3, z_dim=16).eval()


@pytest.mark.parametrize("tile_size", [8, 16, 50, 100])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_output_shape_for_tile_sizes_and_channels(tile_size: int, channels: int) -> None:
    torch.manual_seed(1)
    net = TileNet(channels, z_dim=16, widths=(8, 8, 16, 16)).eval()
    with torch.no_grad():
        z = net(torch.rand(2, channels, tile_size, tile_size))
    assert z.shape == (2, 16)
    assert z.dtype == torch.float32
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("tile_size", [8, 50])
def test_paper_network_output_shape(paper_net: TileNet, tile_size: int) -> None:
    with torch.no_grad():
        z = paper_net(torch.rand(3, 3, tile_size, tile_size))
    assert z.shape == (3, 16)


def test_wrong_channel_count_fails(paper_net: TileNet) -> None:
    with pytest.raises(RuntimeError):
        paper_net(torch.rand(1, 4, 16, 16))


def test_structure_matches_paper() -> None:
    assert tuple(PAPER_WIDTHS) == (64, 128, 256, 512)
    assert tuple(PAPER_STRIDES) == (1, 2, 2, 2, 2)
    net = TileNet(4, z_dim=32)
    stem_conv = net.stem[0]
    assert isinstance(stem_conv, nn.Conv2d)
    assert stem_conv.in_channels == 4 and stem_conv.out_channels == 64
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert len(net.stages) == 5
    widths, strides = [], []
    ch = 64
    for stage in net.stages:
        assert len(stage) == 2
        assert all(isinstance(b, BasicBlock) for b in stage)
        first, second = stage
        widths.append(first.conv2.out_channels)
        strides.append(first.conv1.stride[0])
        assert first.conv1.in_channels == ch
        assert first.conv1.kernel_size == (3, 3) and first.conv2.kernel_size == (3, 3)
        # a projection shortcut exactly where the shape changes
        assert isinstance(first.shortcut, nn.Identity) == (first.conv1.stride[0] == 1 and ch == widths[-1])
        assert second.conv1.stride == (1, 1) and second.conv1.in_channels == widths[-1]
        assert isinstance(second.shortcut, nn.Identity)
        ch = widths[-1]
    assert widths == [64, 128, 256, 512, 32]
    assert strides == [1, 2, 2, 2, 2]
    assert net.z_dim == 32 and net.in_channels == 4
    # 5 stages x 2 blocks x 2 convs + stem + 4 projection shortcuts
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 5 * 2 * 2 + 1 + 4


def convolutions_seen(monkeypatch) -> list:
    """The modules that run torch's own convolution from now on, appended as they do."""
    seen: list = []
    conv_forward = nn.Conv2d._conv_forward
    monkeypatch.setattr(nn.Conv2d, "_conv_forward", lambda self, *a: seen.append(self) or conv_forward(self, *a))
    return seen


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "kernel", "stride", "padding", "side", "product"),
    [
        (64, 48, 3, 1, 1, 1, True),  # a 3 x 3 kernel over a 1 x 1 map: its centre tap
        (32, 48, 3, 2, 1, 2, True),  # stride 2 over a 2 x 2 map: the kernel's lower-right 2 x 2 taps
        (32, 48, 1, 1, 0, 1, True),  # a 1 x 1 projection over a 1 x 1 map
        (32, 48, 1, 2, 0, 2, False),  # one pixel out, but the 1 x 1 kernel meets only one of the four in
        (8, 16, 3, 1, 1, 4, False),  # more than one pixel out: the convolution itself
    ],
)
def test_a_one_pixel_output_is_the_product_of_the_taps(in_ch, out_ch, kernel, stride, padding, side, product,
                                                       monkeypatch) -> None:
    """The same outputs and gradients as torch's own convolution; the product replaces it exactly where the
    output is one pixel and every input pixel meets the kernel."""
    torch.manual_seed(0)
    ours, theirs = (cls(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=True)
                    for cls in (Conv2d, nn.Conv2d))
    theirs.load_state_dict(ours.state_dict())
    convolutions = convolutions_seen(monkeypatch)
    x = torch.randn(5, in_ch, side, side)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = ours(xa)
    assert (ours in convolutions) != product
    yb = theirs(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(yb)
    ya.backward(grad)
    yb.backward(grad)
    for a, b in ((xa.grad, xb.grad), (ours.weight.grad, theirs.weight.grad), (ours.bias.grad, theirs.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if product and kernel == 3:  # the taps that only meet padding get no gradient at all
        assert ours.weight.grad[:, :, 0].abs().sum() == 0


@pytest.mark.parametrize("encoder", ["tilenet", "tilenet-lite"])
def test_small_tiles_reach_the_one_pixel_product_in_the_last_stages(encoder, monkeypatch) -> None:
    """On 16 px tiles the last stage(s) see one-pixel maps: those convolutions run as products; the output
    equals the network's with torch's convolutions throughout."""
    net = build_encoder(encoder, 4, 32).eval()
    x = torch.rand(3, 4, 16, 16)
    with torch.no_grad():
        fast = net(x)
        convolutions = convolutions_seen(monkeypatch)
        net(x)
        convolved = set(convolutions)
        monkeypatch.setattr(Conv2d, "_single_pixel_taps", lambda self, h, w: None)
        slow = net(x)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert 0 < len(convolved) < n_conv and len(set(convolutions)) == n_conv
    last = net.stages[-1][-1]
    assert last.conv1 not in convolved and last.conv2 not in convolved
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_lite_encoder_is_cheaper_and_downsamples_early() -> None:
    """tilenet-lite: stride-2 stem and first stage, half widths, same output size; >= 30x fewer FLOPs at 100 px."""
    from torch.utils.flop_counter import FlopCounterMode

    lite = build_encoder("tilenet-lite", 4, 64).eval()
    assert lite.stem[0].stride == (2, 2) and lite.stages[0][0].conv1.stride == (2, 2)
    flops = {}
    for name in ("tilenet", "tilenet-lite"):
        model = build_encoder(name, 4, 64).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = model(torch.randn(1, 4, 100, 100))
        assert out.shape == (1, 64)
        flops[name] = counter.get_total_flops()
    assert flops["tilenet"] / flops["tilenet-lite"] >= 30


def test_mismatched_widths_and_strides_rejected() -> None:
    with pytest.raises(ValueError, match="stage widths"):
        TileNet(3, z_dim=16, widths=(8, 16), strides=(1, 2, 2, 2, 2))


@pytest.mark.parametrize("size", [100, 37])
def test_global_average_pooling(size: int) -> None:
    torch.manual_seed(2)
    net = TileNet(3, z_dim=16, widths=(8, 8, 16, 16)).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        z = net(x)
        fmap = net.stages(net.stem(x))
    # strides 1-2-2-2-2 with 3x3/pad 1: side -> ceil(side / 16)
    assert fmap.shape == (2, 16, math.ceil(size / 16), math.ceil(size / 16))
    assert fmap.shape[-1] > 1
    torch.testing.assert_close(z, fmap.mean(dim=(2, 3)))


def test_triplet_loss_hand_computed() -> None:
    z_a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    z_n = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    z_d = torch.tensor([[0.0, 1.0], [1.0, 10.0]])
    margin, l2 = 0.5, 0.1
    # row 0: |a-n| = 5, |a-d| = 1 -> 5 - 1 + 0.5 = 4.5; row 1: 0 - 10 + 0.5 < 0 -> 0
    hinge = (4.5 + 0.0) / 2
    norms = (0 + 1) / 2 + (5 + 1) / 2 + (1 + math.sqrt(101)) / 2
    loss = triplet_loss(z_a, z_n, z_d, margin, l2)
    assert loss.item() == pytest.approx(hinge + l2 * norms, rel=1e-6)
    assert triplet_loss(z_a, z_n, z_d, margin, 0.0).item() == pytest.approx(hinge, rel=1e-6)
    # the margin enters linearly while the hinge is active
    assert triplet_loss(z_a, z_n, z_d, 1.5, 0.0).item() == pytest.approx((5.5 + 0.0) / 2, rel=1e-6)


def test_triplet_loss_zero_when_distant_is_far() -> None:
    torch.manual_seed(3)
    z_a = torch.randn(5, 4)
    z_n = z_a + 0.01 * torch.randn(5, 4)
    z_d = z_a + 100.0
    assert triplet_loss(z_a, z_n, z_d, margin=1.0, l2=0.0).item() == 0.0
    # swapping neighbour and distant makes the hinge large
    assert triplet_loss(z_a, z_d, z_n, margin=1.0, l2=0.0).item() > 190.0


def test_triplet_loss_batch_mean_and_gradient() -> None:
    torch.manual_seed(4)
    z = [torch.randn(6, 3, requires_grad=True) for _ in range(3)]
    loss = triplet_loss(*z, margin=0.3, l2=0.05)
    d_an = (z[0] - z[1]).norm(dim=1)
    d_ad = (z[0] - z[2]).norm(dim=1)
    expected = F.relu(d_an - d_ad + 0.3).mean() + 0.05 * sum(t.norm(dim=1).mean() for t in z)
    torch.testing.assert_close(loss, expected)
    # duplicating the batch does not change the loss (averaged, not summed)
    twice = triplet_loss(*(torch.cat([t, t]) for t in z), margin=0.3, l2=0.05)
    torch.testing.assert_close(twice, loss)
    loss.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in z)


def test_spectral_stats_are_the_valid_pixels_band_mean_and_std() -> None:
    x = torch.tensor([[[[0.1, 0.3], [float("nan"), 0.5]], [[1.0, 1.0], [1.0, float("nan")]]]])
    z = SpectralStats(2)(x)
    assert z.shape == (1, 4) and SpectralStats(2).z_dim == 4
    torch.testing.assert_close(z, torch.tensor([[0.3, 1.0, (0.08 / 3) ** 0.5, 0.0]]))
    assert list(SpectralStats(2).parameters()) == []


# --------------------------------------------------------------------------- safe model files


def test_every_torch_load_is_weights_only() -> None:
    """No file the package loads can run code: every torch.load passes weights_only=True."""
    calls = []
    for src in Path(__file__).resolve().parents[1].joinpath("workflow", "landtaxa").rglob("*.py"):
        text = src.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            calls.append((src.name, m.group(1)))
        assert "pickle.load" not in text and "allow_pickle=True" not in text, src
    assert calls, "expected the checkpoint loader"
    for name, args in calls:
        assert "weights_only=True" in args, f"{name}: torch.load({args})"

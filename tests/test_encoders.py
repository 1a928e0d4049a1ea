"""Tests of the encoder registry and its checkpoints (landtaxa.learning.encoders)."""

from __future__ import annotations

import builtins
import re

import pytest
import torch

from landtaxa.learning.encoders import (
    ENCODERS,
    EncoderSpec,
    build_encoder,
    encoder_spec,
    load_checkpoint,
    register_encoder,
    save_checkpoint,
)
from landtaxa.learning.networks import SpectralStats, TileNet
from landtaxa.params import schema_property


def test_schema_enum_is_the_registry_of_trained_encoders() -> None:
    """Adding an encoder is one registry entry and its name in the schema's enum."""
    trained = [name for name, spec in ENCODERS.items() if spec.trains]
    for key in ("encoder.name", "demo.encoder"):
        assert schema_property(key)["enum"] == trained and schema_property(key)["default"] in trained


def test_build_encoder_carries_its_spec() -> None:
    net = build_encoder("tilenet", 2, 24)
    assert isinstance(net, TileNet) and net.z_dim == 24 and net.in_channels == 2
    assert (net.cpu_batch_size, net.fills_gaps) == (8, True)
    lite = build_encoder("tilenet-lite", 2, 24)
    assert lite.cpu_batch_size == 64 and lite.z_dim == 24
    spectral = build_encoder("spectral", 3, 512)
    assert isinstance(spectral, SpectralStats) and spectral.z_dim == 6 and spectral.fills_gaps is False
    assert not encoder_spec("spectral").trains and encoder_spec("tilenet").trains


def test_unknown_encoder_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'resnet'; choose one of tilenet, tilenet-lite, spectral"):
        build_encoder("resnet", 3, 16)


def test_a_registered_encoder_builds(monkeypatch) -> None:
    monkeypatch.setitem(ENCODERS, "linear", ENCODERS["tilenet"])  # restored after the test
    register_encoder(EncoderSpec("linear", lambda c, z: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(z)),
                                 cpu_batch_size=256))
    net = build_encoder("linear", 3, 5)
    assert net.cpu_batch_size == 256 and net(torch.zeros(2, 3, 4, 4)).shape == (2, 5)


def _small_trained_like_net() -> TileNet:
    """A paper TileNet whose weights and BatchNorm statistics are not the defaults."""
    torch.manual_seed(5)
    net = TileNet(3, z_dim=16)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(4, 3, 16, 16))
    return net.eval()


def test_checkpoint_round_trip(tmp_path) -> None:
    net = _small_trained_like_net()
    meta = {"encoder": "tilenet", "in_channels": 3, "z_dim": 16, "epochs": 2, "dates": ["2020-01-01"]}
    path = tmp_path / "enc.pt"
    save_checkpoint(path, net, meta)
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["enc.pt"]  # no temporary left behind
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta
    assert isinstance(loaded, TileNet)
    loaded.eval()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # the stored file loads under torch's safe unpickler
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "meta"}


class _Exploit:
    """Unpickling this object opens (creates) a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_load_checkpoint_refuses_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(str(marker)), "meta": {"encoder": "tilenet"}}, path)
    # positive control: an unsafe load would indeed run the payload
    control = tmp_path / "control.pt"
    control_marker = tmp_path / "control_marker"
    torch.save({"state_dict": _Exploit(str(control_marker)), "meta": {}}, control)
    torch.load(control, weights_only=False)
    assert control_marker.exists()

    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [torch.zeros(3), {"state_dict": {}}, {"meta": {}}, [1, 2, 3]],
    ids=["tensor", "no-meta", "no-state-dict", "list"],
)
def test_load_checkpoint_rejects_wrong_payload(tmp_path, payload) -> None:
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*state_dict/meta"):
        load_checkpoint(path)


def test_load_checkpoint_rejects_garbage(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_checkpoint(path)


def test_an_encoder_without_costs_has_them_measured(tmp_path) -> None:
    """A plugin encoder that declares no costs is not estimated as TileNet: its own network is measured."""
    import torch

    from landtaxa.learning.encoders import ENCODERS, EncoderSpec, encoder_costs, register_encoder
    from landtaxa.resources import Compute, Sizes, job_needs

    def build(in_channels: int, z_dim: int):
        net = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(8, z_dim))
        net.z_dim = z_dim
        return net

    register_encoder(EncoderSpec("tiny-plugin", build))
    try:
        costs = encoder_costs("tiny-plugin")
        # one 3x3 convolution, 4 -> 8 channels, on 100 x 100 px: 2 x 9 x 4 x 8 x 10,000 FLOPs, and the linear head
        assert costs.gflop_100px == pytest.approx((2 * 9 * 4 * 8 * 100**2 + 2 * 8 * 512) / 1e9)
        assert costs.parameters == 4 * 8 * 9 + 8 + 8 * 512 + 512
        assert costs.infer_bytes_px > 8 * 4 and costs.train_bytes_px > costs.infer_bytes_px
        assert encoder_costs("tilenet") is ENCODERS["tilenet"].costs  # declared: used as they are
        sizes = Sizes(n_tiles=10_000, n_dates=10, z_dim=512, n_bands=4, tile_size=100, width=10_000, height=10_000)
        mine, tilenet = (job_needs("embed", sizes, encoder=e, compute=Compute()) for e in ("tiny-plugin", "tilenet"))
        assert mine.seconds < tilenet.seconds / 10 and mine.host < tilenet.host
    finally:
        del ENCODERS["tiny-plugin"]


def _values(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())


@pytest.mark.parametrize("name", ["tilenet", "tilenet-lite", "spectral", "means"])
@pytest.mark.parametrize(("channels", "z_dim"), [(1, 16), (4, 512), (13, 700)])
def test_declared_values_are_those_of_the_built_network(name: str, channels: int, z_dim: int) -> None:
    """The disk check sizes the saved encoders without torch: the declared counts must be the built networks'."""
    from landtaxa.learning.encoders import encoder_values

    assert ENCODERS[name].values is not None
    assert encoder_values(name, channels, z_dim) == _values(build_encoder(name, channels, z_dim))


def test_an_encoder_without_declared_values_is_counted_on_its_network(monkeypatch) -> None:
    from landtaxa.learning.encoders import encoder_values

    monkeypatch.setitem(ENCODERS, "conv", ENCODERS["tilenet"])  # restored after the test
    register_encoder(EncoderSpec("conv", lambda c, z: torch.nn.Sequential(torch.nn.Conv2d(c, z, 3),
                                                                           torch.nn.BatchNorm2d(z))))
    assert encoder_values("conv", 3, 5) == 3 * 5 * 9 + 5 + 4 * 5 + 1


def test_planning_a_run_does_not_load_torch(tmp_path) -> None:
    """Every snakemake process (a run, a dry run, each cluster job) plans the run: torch would add about 1.5 s."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, yaml; from pathlib import Path; from landtaxa.plan import RunPlan\n"
            "from landtaxa.configcheck import check_config\n"
            f"root = Path({str(root)!r})\n"
            "config = yaml.safe_load((root / 'config' / 'config.yaml').read_text())\n"
            "check_config(config, root / 'workflow' / 'schemas' / 'config.schema.yaml')\n"
            f"plan = RunPlan.from_config(config, {str(tmp_path)!r}); plan.check_disk({str(tmp_path)!r})\n"
            "list(plan.time_outlook()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "False"

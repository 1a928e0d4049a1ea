"""A user's own encoder, registered from a plugin module: the only file a new encoder needs.

``plugins: [tests/workflow/toy_encoder.py]`` in a config makes ``encoder.name: toy`` valid; the
workflow imports this file where it starts and in every job.
"""

from landtaxa.learning.encoders import EncoderSpec, register_encoder


def build(in_channels: int, z_dim: int):
    import torch
    from torch import nn

    class Toy(nn.Module):
        """Per-band mean and max-pooled texture through one linear layer."""

        def __init__(self) -> None:
            super().__init__()
            self.z_dim = z_dim
            self.in_channels = in_channels
            self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.head = nn.Linear(8 + in_channels, z_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            texture = torch.relu(self.conv(x)).amax(dim=(2, 3))
            return self.head(torch.cat([texture, x.mean(dim=(2, 3))], dim=1))

    return Toy()


register_encoder(EncoderSpec("toy", build, cpu_batch_size=512))

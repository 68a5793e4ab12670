"""The renderer: how an edit in latent space reaches pixels.

From a 256 px aligned face and two codes (the face's own and the edited one) it predicts a dense
motion field, a fill mask and fill colours (Geng et al.'s warp-guided GAN, GANimation's
attention mask, FOMM / LivePortrait's warp of the source's own pixels):

    output = (1 - mask) * warp(face, motion) + mask * fill

The motion moves the photo's own pixels, so lips, skin, stubble and teeth keep their texture;
only what the photo lacks (teeth of a new smile, lips closing over old teeth) is drawn, inside
the mask. The exported network returns the three maps packed; the pipeline applies the motion
to the full-resolution photo itself (stoic_cli.render.pasteback.render_face).

Inside (the "guided" design), the frozen VAE decoder draws both codes (128 px) and the network
reads the crop beside those two drawings: the decoder says *what* changes, the crop gives the
pixels.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from stoic_cli.render.imageops import in_pixels

SIZE = 256  # the renderer's crop side
MAX_MOTION = 0.12  # largest displacement, as a fraction of the side (a wide smile's corners)
# The mouth box (rows, cols as fractions of the aligned crop) that the critic judges.
MOUTH_BOX = (0.55, 0.87, 0.26, 0.74)


def _block(cin: int, cout: int, stride: int = 1, convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1), nn.GroupNorm(8, cout),
                   nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


def _twice(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)


class Renderer(nn.Module):
    """(crop (N,3,256,256) in [-1,1], own code (N,D), target code (N,D)) -> (N,6,256,256):
    motion (fractions of the side, where each output pixel comes from in the crop), mask in
    0..1 (where the fill replaces the warped crop) and fill colours in [-1,1]."""

    def __init__(self, decoder: nn.Module, width: int = 32):
        super().__init__()
        self.decoder = decoder
        for p in decoder.parameters():
            p.requires_grad_(False)
        w = width
        self.enc1 = _block(3 + 9, w)  # 128: the half-size crop and three drawings
        self.enc2 = _block(w, 2 * w, 2)  # 64
        self.enc3 = _block(2 * w, 3 * w, 2)  # 32
        self.enc4 = _block(3 * w, 4 * w, 2)  # 16
        self.mid = _block(4 * w, 4 * w)
        self.dec3 = _block(4 * w + 3 * w, 3 * w)  # 32
        self.dec2 = _block(3 * w + 2 * w, 2 * w, convs=1)  # 64
        self.dec1 = _block(2 * w + w, w, convs=1)  # 128
        self.motion = nn.Conv2d(w, 2, 3, 1, 1)
        self.mask = nn.Conv2d(w, 1, 3, 1, 1)
        # The fill is drawn at full crop resolution from the crop itself and the 128 px features.
        self.to_fill = nn.Conv2d(w, 16, 1)
        self.full = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        self.fill = nn.Sequential(nn.Conv2d(32, 16, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(16, 3, 3, 1, 1), nn.Tanh())
        # Start as the identity: no motion and an empty mask, so an untrained renderer changes nothing.
        for head in (self.motion, self.mask):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        nn.init.constant_(self.mask.bias, -4.0)

    def train(self, mode: bool = True) -> "Renderer":
        super().train(mode)
        self.decoder.eval()  # frozen: its batch norms keep the shipped statistics
        return self

    def trained_state(self) -> dict:
        """The weights training owns (the decoder comes from the shipped decoder.onnx)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}

    def forward(self, crop: torch.Tensor, own: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_drawings(crop, self.decoder(own), self.decoder(target))

    def from_drawings(self, crop: torch.Tensor, drawn_own: torch.Tensor, drawn_target: torch.Tensor) -> torch.Tensor:
        """The renderer given the decoder's drawings of both codes (what renderer.onnx holds:
        the decoder ships once, in decoder.onnx)."""
        half = F.avg_pool2d(crop, 2)
        x = torch.cat([half, drawn_own, drawn_target, drawn_target - drawn_own], 1)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(torch.cat([_twice(self.mid(e4)), e3], 1))
        d2 = self.dec2(torch.cat([_twice(d3), e2], 1))
        d1 = self.dec1(torch.cat([_twice(d2), e1], 1))
        motion = _twice(MAX_MOTION * torch.tanh(self.motion(d1)))
        mask = _twice(torch.sigmoid(self.mask(d1)))
        fill = self.fill(torch.cat([_twice(self.to_fill(d1)), self.full(crop)], 1))
        return torch.cat([motion, mask, fill], 1)


def warp(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Each output pixel taken from image at its own position plus `motion` (N,2,H,W, fractions
    of the side): the same convention as stoic_cli.render.pasteback.render_face's motion."""
    n, _, h, w = image.shape
    ys = (torch.arange(h, dtype=image.dtype, device=image.device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=image.dtype, device=image.device) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx + 2 * motion[:, 0], gy + 2 * motion[:, 1]], 3)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def compose(crop: torch.Tensor, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rendered crop and its warped-only part, from the renderer's packed output."""
    warped = warp(crop, packed[:, 0:2])
    mask = packed[:, 2:3]
    return (1 - mask) * warped + mask * packed[:, 3:6], warped


def mouth_box(size: int) -> tuple[int, int, int, int]:
    """The mouth box's rows and columns (r0, r1, c0, c1) in a crop of this side."""
    return in_pixels(MOUTH_BOX, size)


def mouth_map(size: int, outside: float, inside: float) -> torch.Tensor:
    """(1, 1, size, size): `inside` in the mouth box, `outside` elsewhere."""
    values = torch.full((1, 1, size, size), outside)
    r0, r1, c0, c1 = mouth_box(size)
    values[..., r0:r1, c0:c1] = inside
    return values


def mouth(images: torch.Tensor) -> torch.Tensor:
    """The mouth box of aligned crops."""
    r0, r1, c0, c1 = mouth_box(images.shape[-1])
    return images[..., r0:r1, c0:c1]


class MouthCritic(nn.Module):
    """LSGAN patch critic of the mouth box at 256 px; its feature maps serve as the learned
    perceptual loss (no pretrained VGG exists offline)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
            nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
            nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
        ])
        self.out = nn.Conv2d(4 * w, 1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x)[-1])


def total_variation(t: torch.Tensor) -> torch.Tensor:
    return (t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean()

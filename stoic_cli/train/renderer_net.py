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
FILL_SOURCES = ("crop", "warped")
# Where the mouth network works (rows, cols as fractions of the crop): the mouth box with a
# margin, sides divisible by 8 at 256 px (rows 128-232, cols 56-200) for its three poolings.
MOUTH_REGION = (0.5, 0.90625, 0.21875, 0.78125)
MOUTH_FADE = 8  # pixels over which its changes fade out toward the region's edges
# Farthest the mouth network's copy reaches beyond the motion, as a fraction of the side: lips
# pulled over the teeth of a wide open smile come from up to about 20 px away.
MAX_COPY = 0.08


def _block(cin: int, cout: int, stride: int = 1, convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1), nn.GroupNorm(8, cout),
                   nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


def _twice(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)


def _unet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last decoder features of a four-level U-Net held as net.enc1 .. enc4, an optional
    net.mid and net.dec3 .. dec1 (the Renderer's and the MouthNet's layout)."""
    e1 = net.enc1(x)
    e2 = net.enc2(e1)
    e3 = net.enc3(e2)
    e4 = net.enc4(e3)
    m = net.mid(e4) if getattr(net, "mid", None) is not None else e4
    d3 = net.dec3(torch.cat([_twice(m), e3], 1))
    d2 = net.dec2(torch.cat([_twice(d3), e2], 1))
    return net.dec1(torch.cat([_twice(d2), e1], 1))


class Renderer(nn.Module):
    """(crop (N,3,256,256) in [-1,1], own code (N,D), target code (N,D)) -> (N,6,256,256):
    motion (fractions of the side, where each output pixel comes from in the crop), mask in
    0..1 (where the fill replaces the warped crop) and fill colours in [-1,1]."""

    def __init__(self, decoder: nn.Module, width: int = 32, fill_source: str = "crop", mouth_width: int = 0,
                 copy_fill: bool = False):
        super().__init__()
        if fill_source not in FILL_SOURCES:
            raise ValueError(f"fill_source must be one of {FILL_SOURCES}, got {fill_source!r}")
        # What the fill's full-resolution path reads: the crop, or the crop already moved by the
        # motion, so that texture it copies (lips moved over teeth) sits where it will be shown.
        self.fill_source = fill_source
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
        # Warp-guided GANs' third network, for the mouth interior (0: none).
        if copy_fill and not mouth_width:
            raise ValueError("copy_fill belongs to the mouth network: set mouth_width")
        self.mouth_net = MouthNet(mouth_width, copy_fill) if mouth_width else None

    def train(self, mode: bool = True) -> "Renderer":
        super().train(mode)
        self.decoder.eval()  # frozen: its batch norms keep the shipped statistics
        return self

    def trained_state(self) -> dict:
        """The weights training owns (the decoder comes from the shipped decoder.onnx)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}

    def forward(self, crop: torch.Tensor, own: torch.Tensor, target: torch.Tensor,
                extras: dict | None = None) -> torch.Tensor:
        return self.from_drawings(crop, self.decoder(own), self.decoder(target), extras)

    def from_drawings(self, crop: torch.Tensor, drawn_own: torch.Tensor, drawn_target: torch.Tensor,
                      extras: dict | None = None) -> torch.Tensor:
        """The renderer given the decoder's drawings of both codes (what renderer.onnx holds:
        the decoder ships once, in decoder.onnx). `extras`, for training, receives the mouth
        network's copy motion ("copy_motion") when it copies."""
        half = F.avg_pool2d(crop, 2)
        x = torch.cat([half, drawn_own, drawn_target, drawn_target - drawn_own], 1)
        d1 = _unet(self, x)
        motion = _twice(MAX_MOTION * torch.tanh(self.motion(d1)))
        mask = _twice(torch.sigmoid(self.mask(d1)))
        source = warp(crop, motion) if self.fill_source == "warped" else crop
        fill = self.fill(torch.cat([_twice(self.to_fill(d1)), self.full(source)], 1))
        if self.mouth_net is not None:
            moved = source if self.fill_source == "warped" else warp(crop, motion)
            mask, fill = self.mouth_net.refine(crop, moved, mask, fill, _twice(drawn_own), _twice(drawn_target),
                                               motion, extras)
        return torch.cat([motion, mask, fill], 1)


class MouthNet(nn.Module):
    """Warp-guided GANs' network for the hidden mouth interior: a U-Net over the mouth region at
    the crop's full resolution that corrects the renderer's fill colours and mask there (lips
    closing over teeth, teeth of a new smile). It reads the crop moved by the motion, the fill
    and mask drawn so far and the decoder's drawings of both codes. Its last layer starts at
    zero, so adding it to a trained renderer changes nothing until it is trained.

    With `copy`, its fill may also copy the photo's own pixels from a second motion of its own
    (the main motion plus an offset): lip texture pulled over teeth instead of drawn colours.
    A share per pixel chooses between copy and drawing; it starts near zero."""

    def __init__(self, width: int = 32, copy: bool = False):
        super().__init__()
        w = width
        self.enc1 = _block(3 + 3 + 1 + 3 + 3 + 3, w)  # crop, moved crop, mask, fill, two drawings
        self.enc2 = _block(w, 2 * w, 2)
        self.enc3 = _block(2 * w, 3 * w, 2)
        self.enc4 = _block(3 * w, 4 * w, 2)
        self.dec3 = _block(4 * w + 3 * w, 3 * w, convs=1)
        self.dec2 = _block(3 * w + 2 * w, 2 * w, convs=1)
        self.dec1 = _block(2 * w + w, w)
        self.out = nn.Conv2d(w, 4, 3, 1, 1)  # fill colour change (3), mask change in logits (1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Copy offset (2) and the copy's share in logits (1): the share starts small (sigmoid(-3)),
        # so the renderer it joins barely changes, yet large enough for its gradient to count.
        self.copy = nn.Conv2d(w, 3, 3, 1, 1) if copy else None
        if self.copy is not None:
            nn.init.zeros_(self.copy.weight)
            with torch.no_grad():
                self.copy.bias.copy_(torch.tensor([0.0, 0.0, -3.0]))

    def refine(self, crop, moved, mask, fill, drawn_own, drawn_target, motion, extras: dict | None = None):
        """The mask and fill (N,1|3,S,S) with the mouth region corrected; drawings at S px; the
        main motion (N,2,S,S) for the copy."""
        size = int(crop.shape[-1])  # a constant when traced for ONNX
        r0, r1, c0, c1 = mouth_region(size)
        region = lambda t: t[..., r0:r1, c0:c1]
        pad = lambda t: F.pad(t, (c0, size - c1, r0, size - r1))
        x = torch.cat([region(t) for t in (crop, moved, mask * 2 - 1, fill, drawn_target,
                                           drawn_target - drawn_own)], 1)
        features = _unet(self, x)
        fade = fade_window(r1 - r0, c1 - c0).to(x)
        change = self.out(features) * fade
        m = region(mask).clamp(1e-4, 1 - 1e-4)
        new_mask = torch.sigmoid(torch.log(m) - torch.log(1 - m) + change[:, 3:4])
        new_fill = region(fill) + change[:, :3]
        if self.copy is not None:
            head = self.copy(features)
            copy_motion = motion + pad(MAX_COPY * torch.tanh(head[:, :2]) * fade)
            share = torch.sigmoid(head[:, 2:3]) * fade
            new_fill = (1 - share) * new_fill + share * region(warp(crop, copy_motion))
            if extras is not None:
                extras["copy_motion"] = copy_motion
        new_fill = new_fill.clamp(-1, 1)
        # Only the region changes: outside it mask and fill stay exactly what they were.
        return mask + pad(new_mask - region(mask)), fill + pad(new_fill - region(fill))


def mouth_region(size: int) -> tuple[int, int, int, int]:
    """The mouth network's rows and columns (r0, r1, c0, c1) in a crop of this side."""
    return in_pixels(MOUTH_REGION, size)


def fade_window(h: int, w: int, fade: int = MOUTH_FADE) -> torch.Tensor:
    """(1,1,h,w): 1 inside, falling linearly to 0 over `fade` pixels at each edge, so changes
    made inside a region leave no seam at its border."""
    ramp = lambda n: ((torch.minimum(torch.arange(n), torch.arange(n).flip(0)).float() + 0.5) / fade).clamp(max=1)
    return (ramp(h)[:, None] * ramp(w)[None, :])[None, None]


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

    def __init__(self, width: int = 32, conditioned: bool = False):
        super().__init__()
        w = width
        # Conditioned, it reads the mouth beside the decoder's drawing of the target code there
        # (pix2pix's paired critic): a real mouth must also be the expression the code asks for.
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(6 if conditioned else 3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
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


def drawn_mouth(drawn_target: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """The mouth box of the target code's drawing (half size), enlarged to crops of this side:
    what a conditioned critic reads beside each mouth."""
    return mouth(F.interpolate(drawn_target, size=(size, size), mode="bilinear", align_corners=False))


def critic_view(images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """What the critic judges: the mouth box of the crops, beside `condition` (drawn_mouth)
    when the critic is conditioned."""
    return mouth(images) if condition is None else torch.cat([mouth(images), condition], 1)


def total_variation(t: torch.Tensor) -> torch.Tensor:
    return (t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean()

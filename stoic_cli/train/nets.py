"""StoicNet's networks in PyTorch: VAE encoder/decoder, enhancer, neutralizer, LSGAN critic.

Sized for the CPU: the whole inference stack (encode, neutralize, decode, enhance) is a few
hundred MMACs per 128x128 face so that ONNX Runtime on two cores can run ~100 faces/s.
Images are float in [-1, 1], NCHW.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

LATENT_DIM = 256
IMAGE_SIZE = 128


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


class Encoder(nn.Module):
    """128x128x3 -> (mu, logvar), each LATENT_DIM. Inference uses mu.

    `batchnorm=False` is the same network with each batch norm folded into its convolution's
    bias, as ONNX export leaves it: the form a shipped encoder is fine-tuned in (`vae_init`)."""

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 32, batchnorm: bool = True):
        super().__init__()
        w, bn = width, batchnorm
        self.features = nn.Sequential(
            _down(3, w, norm=False),  # 64
            _down(w, 2 * w, bn),  # 32
            _down(2 * w, 4 * w, bn),  # 16
            _down(4 * w, 8 * w, bn),  # 8
            _down(8 * w, 8 * w, bn),  # 4
        )
        self.mu = nn.Linear(8 * w * 16, latent_dim)
        self.logvar = nn.Linear(8 * w * 16, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10, 10)


class Decoder(nn.Module):
    """LATENT_DIM -> 128x128x3 in [-1, 1], transposed convolutions (StoicNet's decoder)."""

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 32):
        super().__init__()
        w = width
        self.w = w
        self.fc = nn.Linear(latent_dim, 8 * w * 16)
        self.body = nn.Sequential(
            nn.BatchNorm2d(8 * w), nn.LeakyReLU(0.2, inplace=True),
            _up(8 * w, 8 * w),  # 8
            _up(8 * w, 4 * w),  # 16
            _up(4 * w, 2 * w),  # 32
            _up(2 * w, w),  # 64
            _up(w, w // 2),  # 128
            nn.Conv2d(w // 2, 3, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, 8 * self.w, 4, 4))


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2)) * 0.5


class Enhancer(nn.Module):
    """Super-resolution-style sharpening of the decoder's blurry output (StoicNet's G2).

    Works at half the input resolution on space-to-depth features (4x cheaper than full
    resolution), residual blocks with a long skip, then depth-to-space. With `scale` 2 it also
    doubles the resolution (128 -> 256), so that where an edit replaces the photo's pixels they
    are about as fine as the photo's own. It adds its result to the (bilinearly upsampled) input,
    so an untrained enhancer is the identity (or a plain upsampler)."""

    def __init__(self, width: int = 16, blocks: int = 3, scale: int = 1):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(12, width, 3, 1, 1)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, 3 * (2 * scale) ** 2, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(F.pixel_unshuffle(x, 2))
        h = h + self.blocks(h)  # skip connection around the residual stack
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=float(self.scale), mode="bilinear",
                                                       align_corners=False)
        return (base + F.pixel_shuffle(self.tail(F.leaky_relu(h, 0.2)), 2 * self.scale)).clamp(-1, 1)


class Neutralizer(nn.Module):
    """StoicNet's neutralizer: one dense layer on the latent code, initialised to the identity
    so that training starts from "change nothing"."""

    def __init__(self, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.fc = nn.Linear(latent_dim, latent_dim)
        nn.init.eye_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


# The expression classifier's classes, in its output order (trained checkpoints depend on it).
# Not stoic_cli.train.data.EXPRESSIONS, the labels' vocabulary: another order, and contempt.
EXPRESSIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")


def layer_outputs(layers: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's output, in order (the feature maps that perceptual losses compare)."""
    feats = []
    for layer in layers:
        x = layer(x)
        feats.append(x)
    return feats


class ExpressionClassifier(nn.Module):
    """Which of the seven basic expressions a 128x128 face shows. Trained on the labelled sets
    (training people only) and then frozen: its features are the VAE's expression-aware
    perceptual loss (no pretrained VGG exists offline), so that reconstructions keep what tells
    expressions apart (mouth corners, cheeks, brows) rather than only what L1 and SSIM see."""

    def __init__(self, classes: int = len(EXPRESSIONS), width: int = 32):
        super().__init__()
        w = width
        self.layers = nn.ModuleList([
            _down(3, w, norm=False),  # 64
            _down(w, 2 * w),  # 32
            _down(2 * w, 4 * w),  # 16
            _down(4 * w, 8 * w),  # 8
        ])
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, classes))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate maps, then the logits."""
        feats = layer_outputs(self.layers, x)
        return feats + [self.head(feats[-1].mean((2, 3)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]


class CodeHeads(nn.Module):
    """Training only, for a split code: `expression` reads the expression class off the code's
    expression part; `adversary` tries to read it off the person part, which the encoder learns
    to defeat (Oldfield et al.'s uniform-posterior loss)."""

    def __init__(self, expression_dims: int, latent_dim: int = LATENT_DIM, classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.expression = nn.Linear(expression_dims, classes)
        self.adversary = nn.Sequential(nn.Linear(latent_dim - expression_dims, 128), nn.LeakyReLU(0.2),
                                       nn.Linear(128, classes))


class SmileJudge(nn.Module):
    """Whether a 128x128 face smiles (logit), read off its mouth box only. Trained on the
    labelled sets' training people (happiness against every other labelled expression) and then
    frozen: a judge of our own that sees mouths, where the encoder reads back expressions that
    no person (and no MediaPipe) would call smiles."""

    MOUTH = (slice(68, 124), slice(24, 104))  # rows, columns of the aligned crop

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(_down(3, w, norm=False), _down(w, 2 * w), _down(2 * w, 4 * w), _down(4 * w, 4 * w))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.MOUTH
        return self.head(self.body(x[:, :, rows, cols]).mean((2, 3)))[:, 0]


class Critic(nn.Module):
    """LSGAN discriminator (patch scores). `features` returns intermediate maps for the learned
    perceptual loss (Larsen et al.: match the critic's features instead of VGG's)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),  # 64
            nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),  # 32
            nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),  # 16
            nn.Sequential(nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),  # 8
        ])
        self.out = nn.Conv2d(8 * w, 1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return layer_outputs(self.layers, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x)[-1])


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the KL to N(0, I), summed over latent dimensions."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()

"""StoicNet's networks in PyTorch: VAE encoder/decoder and neutralizer (exported to ONNX), and
the training-only expression classifier and code heads.

Sized for the CPU, so that ONNX Runtime on two cores encodes, neutralizes and decodes faces
quickly. Images are float in [-1, 1], NCHW.
"""
from __future__ import annotations

import torch
from torch import nn

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


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


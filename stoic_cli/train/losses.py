"""Loss terms shared by the training stages. Images are float in [-1, 1], NCHW."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import nets


def face_weight(device: torch.device, size: int = nets.IMAGE_SIZE, floor: float = 0.3,
                expression: float = 0.0) -> torch.Tensor:
    """Pixel weights for reconstruction: full weight on the face (where edits are pasted back),
    `floor` on hair and background, which in tight dataset crops is mostly padding streaks.
    `expression` adds that much weight on the mouth and on the eyes and brows, where
    expressions live: a decoder that renders them muted proposes muted edits."""
    from stoic_cli.face.alignment import TEMPLATE
    from stoic_cli.render.pasteback import face_mask
    m = face_mask(size, feather=0.3)
    if expression:
        yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
        eye_y, mouth_y = TEMPLATE[0, 1] - 0.03, (TEMPLATE[3, 1] + TEMPLATE[4, 1]) / 2
        for (cx, cy, s) in ((0.5, mouth_y, 0.09), (TEMPLATE[0, 0], eye_y, 0.07), (TEMPLATE[1, 0], eye_y, 0.07)):
            m = m + expression * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return (floor + (1 - floor) * torch.from_numpy(m.astype(np.float32)).to(device))[None, None]


def weighted_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() * weight).mean() / weight.mean()


def ssim_loss(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - SSIM with a uniform 7x7 window (Wang et al. 2004 allow any window): average pooling
    is much cheaper on a CPU than pytorch-msssim's Gaussian depthwise convolutions."""
    a, b = (a + 1) / 2, (b + 1) / 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pool = lambda t: F.avg_pool2d(t, window, 1)
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a ** 2
    var_b = pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return 1 - ssim.mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the KL to N(0, I), summed over latent dimensions."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def expression_feature_loss(classifier: nets.ExpressionClassifier, y: torch.Tensor,
                            x: torch.Tensor) -> torch.Tensor:
    """Mean over the classifier's layers (and logits) of the L1 between its features of the
    reconstruction `y` and of the photo `x`, each layer divided by the photo's mean magnitude
    there so that every layer counts alike."""
    with torch.no_grad():
        target = classifier.features(x)
    got = classifier.features(y)
    return sum((a - b).abs().mean() / (b.abs().mean() + 1e-6) for a, b in zip(got, target)) / len(got)

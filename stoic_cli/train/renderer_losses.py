"""The renderer's losses: what training asks of the motion, the mask and the fill (see
RendererConfig for each weight's reason; `cfg` below is one)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import renderer_net as R
from stoic_cli.train.losses import ssim_loss, weighted_l1


def face_weight(size: int = R.SIZE) -> torch.Tensor:
    """(1,1,size,size) weights of the reconstruction losses: the face counts, the mouth most."""
    from stoic_cli.render.pasteback import face_mask
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    mouth = np.exp(-((xx - 0.5) ** 2 + (yy - 0.7) ** 2) / (2 * 0.1 ** 2))
    m = 0.2 + 0.8 * face_mask(size, feather=0.3) + mouth
    return torch.from_numpy(m.astype(np.float32))[None, None]


def mask_cost(cfg, size: int = R.SIZE) -> torch.Tensor:
    """Per-pixel price of the fill mask: low in the mouth box, where drawing is expected."""
    return R.mouth_map(size, cfg.mask_weight, cfg.mouth_mask_weight)


def outside_mouth(size: int = R.SIZE) -> torch.Tensor:
    """1 outside the mouth box, 0 inside: where the fill's own L1 applies (inside, the mask is
    strong, the composite's losses and the critic teach the fill, and an L1 would blur it)."""
    return R.mouth_map(size, 1.0, 0.0)


# The warp's error (grey levels over 127.5) at which the fill counts fully in the mouth loss.
WARP_MISS = 0.25


def mouth_fill_l1(fill: torch.Tensor, warped: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 of the fill to the target inside the mouth box, each pixel weighted by how far the warp
    alone is from the target there (0..1, full from WARP_MISS on; not differentiated: it only
    says where the fill must draw), over the mouth box's weight: pairs the warp explains add
    nothing."""
    box = R.mouth_map(real.shape[-1], 0.0, 1.0).to(real.device)
    misses = ((warped.detach() - real).abs().mean(1, keepdim=True) / WARP_MISS).clamp(max=1.0)
    return ((fill - real).abs() * weight * box * misses).mean() / (weight * box).mean()


# Halvings of the crop at which the warp is also judged (64, 32 and 16 px): bilinear sampling's
# gradient reaches one pixel, so at 256 px the motion cannot find lips a dozen pixels away to
# pull over the teeth; on the halved images the same motion reads, and learns from, farther.
COARSE_LEVELS = (2, 3, 4)


def coarse_warp_l1(crop: torch.Tensor, motion: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted L1 of the crop moved by `motion` to the target, on average-pooled copies of
    crop, motion and target (the motion is in fractions of the side, the same at any size),
    averaged over COARSE_LEVELS."""
    pool = lambda t, k: F.avg_pool2d(t, 2 ** k)
    return sum(weighted_l1(R.warp(pool(crop, k), pool(motion, k)), pool(real, k), pool(weight, k))
               for k in COARSE_LEVELS) / len(COARSE_LEVELS)


# The optical flow's own error (grey levels over 127.5, after moving the source by it) at
# which a pixel's flow is trusted 1/e: where teeth appear or vanish no flow explains the
# target, and the fill, not the motion, must answer there.
FLOW_TRUST = 0.1


def true_motion(crop: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair's own motion: optical flow (OpenCV's DIS) from each target photo to its source,
    in the renderer's units (fractions of the side, clamped to R.MAX_MOTION), and how far each
    pixel's flow can be trusted (0..1). Warp-guided GANs move the photo along a motion known
    from landmarks; here the pair itself shows how its pixels moved."""
    import cv2
    grey = lambda t: ((t.detach().mean(1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = [dis.calc(np.ascontiguousarray(t), np.ascontiguousarray(s), None) for s, t in zip(grey(crop), grey(real))]
    flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(crop) / crop.shape[-1]
    flow = flow.clamp(-R.MAX_MOTION, R.MAX_MOTION)
    miss = (R.warp(crop.detach(), flow) - real.detach()).abs().mean(1, keepdim=True)
    return flow, torch.exp(-miss / FLOW_TRUST)


def motion_l1(motion: torch.Tensor, flow: torch.Tensor, trust: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The motion's distance to the pair's own flow, in pixels of the crop, weighted by the face
    weight and the flow's trust: a direct signal for motion a dozen pixels long, which the
    photometric losses' one-pixel gradients never give."""
    return ((motion - flow).abs().sum(1, keepdim=True) * trust * weight).mean() / weight.mean() * motion.shape[-1]


def copy_flow_l1(copy_motion: torch.Tensor, flow: torch.Tensor, trust: torch.Tensor,
                 weight: torch.Tensor) -> torch.Tensor:
    """motion_l1 of the mouth network's copy motion to the pair's own flow, in the mouth box only
    (where the copy is used)."""
    box = R.mouth_map(weight.shape[-1], 0.0, 1.0).to(weight.device)
    return motion_l1(copy_motion, flow, trust, weight * box)


DETAIL_CELL = 16  # pixels of the cells over which the mouth's fine detail is compared


def detail_energy(images: torch.Tensor) -> torch.Tensor:
    """How much fine detail (|Laplacian| of the grey image) each DETAIL_CELL cell holds."""
    grey = images.mean(1, keepdim=True)
    kernel = grey.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return F.avg_pool2d(F.conv2d(grey, kernel, padding=1).abs(), DETAIL_CELL, ceil_mode=True)


def mouth_detail_l1(out: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between the mouth box's detail per cell in the output and in the target: a fill drawn
    as a smooth average of the possible mouths holds less detail than any real one. Cells, not
    pixels, so a lip line a few pixels off still counts."""
    return (detail_energy(R.mouth(out)) - detail_energy(R.mouth(real))).abs().mean()


def losses(net, critic, crop, own, target, real, weight, cfg, adversarial: bool, condition=None):
    """The renderer's total loss, its terms and its output; `condition` (R.drawn_mouth of the
    target code's drawing) only for a conditioned critic."""
    extras: dict = {}
    packed = net(crop, own, target, extras)
    zero = packed.new_zeros(())
    out, warped = R.compose(crop, packed)
    mask = packed[:, 2:3]
    # One optical flow per pair, for whichever flow losses are on.
    truth = true_motion(crop, real) if cfg.flow_weight or cfg.copy_flow_weight else None
    terms = {
        "l1": weighted_l1(out, real, weight),
        "ssim": ssim_loss(out, real),
        "warp": weighted_l1(warped, real, weight),
        "mask": mask.mean(),
        "fill": weighted_l1(packed[:, 3:6], real, weight * outside_mouth(weight.shape[-1]).to(weight.device)),
        "mouth_fill": mouth_fill_l1(packed[:, 3:6], warped, real, weight),
        "detail": mouth_detail_l1(out, real) if cfg.detail_weight else zero,
        "coarse_warp": coarse_warp_l1(crop, packed[:, 0:2], real, weight) if cfg.coarse_warp_weight else zero,
        "flow": motion_l1(packed[:, 0:2], *truth, weight) if cfg.flow_weight else zero,
        "copy_flow": copy_flow_l1(extras["copy_motion"], *truth, weight) if cfg.copy_flow_weight else zero,
        "mask_tv": R.total_variation(mask),
        "motion_tv": R.total_variation(packed[:, 0:2] * 10),
    }
    total = (terms["l1"] + cfg.ssim_weight * terms["ssim"] + cfg.warp_weight * terms["warp"]
             + cfg.coarse_warp_weight * terms["coarse_warp"] + cfg.flow_weight * terms["flow"]
             + cfg.detail_weight * terms["detail"] + cfg.copy_flow_weight * terms["copy_flow"]
             + cfg.fill_weight * terms["fill"] + cfg.mouth_fill_weight * terms["mouth_fill"]
             + (mask * mask_cost(cfg, mask.shape[-1]).to(mask.device)).mean() + cfg.mask_tv_weight * terms["mask_tv"]
             + cfg.motion_tv_weight * terms["motion_tv"])
    if adversarial:
        fake_m, real_m = R.critic_view(out, condition), R.critic_view(real, condition)
        terms["gan"] = ((critic(fake_m) - 1) ** 2).mean()
        feats_f, feats_r = critic.features(fake_m), critic.features(real_m)
        terms["feature"] = sum((f - r.detach()).abs().mean() for f, r in zip(feats_f, feats_r)) / len(feats_f)
        total = total + cfg.gan_weight * terms["gan"] + cfg.feature_weight * terms["feature"]
    return total, terms, out


LOGGED = ("l1", "ssim", "warp", "mask", "mask_tv", "motion_tv", "gan", "feature", "critic", "fill", "mouth_fill",
          "coarse_warp", "flow", "detail", "cycle", "cycle_code", "copy_flow")

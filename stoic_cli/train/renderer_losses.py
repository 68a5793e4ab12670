"""The renderer's losses: what training asks of the motion, the mask and the fill (see
RendererConfig for each weight's reason; `cfg` below is one)."""
from __future__ import annotations

import numpy as np
import torch

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


def losses(net, critic, crop, own, target, real, weight, cfg, adversarial: bool):
    """The renderer's total loss, its terms and its output."""
    packed = net(crop, own, target)
    out, warped = R.compose(crop, packed)
    mask = packed[:, 2:3]
    terms = {
        "l1": weighted_l1(out, real, weight),
        "ssim": ssim_loss(out, real),
        "warp": weighted_l1(warped, real, weight),
        "mask": mask.mean(),
        "fill": weighted_l1(packed[:, 3:6], real, weight * outside_mouth(weight.shape[-1]).to(weight.device)),
        "flow": (motion_l1(packed[:, 0:2], *true_motion(crop, real), weight) if cfg.flow_weight
                 else packed.new_zeros(())),
        "mask_tv": R.total_variation(mask),
        "motion_tv": R.total_variation(packed[:, 0:2] * 10),
    }
    total = (terms["l1"] + cfg.ssim_weight * terms["ssim"] + cfg.warp_weight * terms["warp"]
             + cfg.flow_weight * terms["flow"] + cfg.fill_weight * terms["fill"]
             + (mask * mask_cost(cfg, mask.shape[-1]).to(mask.device)).mean() + cfg.mask_tv_weight * terms["mask_tv"]
             + cfg.motion_tv_weight * terms["motion_tv"])
    if adversarial:
        fake_m, real_m = R.mouth(out), R.mouth(real)
        terms["gan"] = ((critic(fake_m) - 1) ** 2).mean()
        feats_f, feats_r = critic.features(fake_m), critic.features(real_m)
        terms["feature"] = sum((f - r.detach()).abs().mean() for f, r in zip(feats_f, feats_r)) / len(feats_f)
        total = total + cfg.gan_weight * terms["gan"] + cfg.feature_weight * terms["feature"]
    return total, terms, out


LOGGED = ("l1", "ssim", "warp", "mask", "mask_tv", "motion_tv", "gan", "feature", "critic", "fill", "flow",
          "cycle", "cycle_code")

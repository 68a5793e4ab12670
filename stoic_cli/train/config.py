"""StoicNet's training configuration (`stoic train run --config FILE --set KEY=VALUE`) and the
torch device the stages run on."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

# Options of stages and losses that no shipped model was trained with, since removed (git
# history keeps them): the enhancer stage, the smile-judge stage, cross-person swaps, the mouth
# critic and the VAE-GAN critic. Config files written before then (configs/*.json,
# models/training_logs/) still name them; load() skips them there, and refuses them as overrides.
RETIRED_KEYS = frozenset({
    "enhancer_steps", "enhancer_warmup_steps", "enhancer_lr", "enhancer_scale", "enhancer_cache",
    "enhancer_width", "enhancer_blocks", "gan_weight", "feature_weight",
    "smile_judge_steps", "cross_smile_weight", "cross_swap_weight", "mouth_critic_weight",
    "vae_gan_weight", "vae_critic_feature_weight", "vae_critic_lr",
})


@dataclass
class TrainConfig:
    cache: str = "cache"
    run: str = "runs/stoicnet"
    batch_size: int = 32
    vae_steps: int = 6000
    vae_lr: float = 1e-3
    kl_weight: float = 5e-5
    kl_ramp_steps: int = 1500
    ssim_weight: float = 0.5
    expression_weight: float = 0.0  # extra reconstruction weight on mouth, eyes and brows
    # Expression-aware perceptual loss (0 = off): L1 between the frozen expression classifier's
    # features (each layer normalised by the photo's mean magnitude) of reconstruction and photo.
    expression_feature_weight: float = 0.0
    # Split code (Browatzki & Wallraven; 0 = off): the last `expression_dims` entries of the code
    # hold the expression, the rest the person. Each step also draws `swap_batch` same-person
    # pairs (neutral, expressive) from `neutralizer_datasets` and decodes the person part of one
    # with the expression part of the other, which must give the other photo (`swap_weight`);
    # neutral photos' expression part is pulled to 0 (`neutral_expression_weight`), so that it
    # holds what differs from neutral rather than who it is.
    expression_dims: int = 0
    swap_weight: float = 1.0
    swap_batch: int = 8
    neutral_expression_weight: float = 0.0
    # With a split code and the labelled sets: cross-entropy of the expression read off the
    # expression part (`expression_code_weight`), and Oldfield et al.'s uniform-posterior loss
    # (`uniform_posterior_weight`): an adversary reads the expression off the person part and
    # the encoder is trained to leave it guessing uniformly.
    expression_code_weight: float = 0.0
    uniform_posterior_weight: float = 0.0
    classifier_steps: int = 3000
    classifier_lr: float = 1e-3
    classifier_batch_size: int = 64
    # A models folder (encoder.onnx, decoder.onnx) to start the VAE from instead of from scratch;
    # its encoder has batch norm folded into the convolutions and only the mean head, so the
    # variance head starts at `vae_init_logvar` everywhere.
    vae_init: str = ""
    vae_init_logvar: float = -4.0
    neutralizer_steps: int = 3000
    neutralizer_lr: float = 1e-3
    # LFW's pairs are different photos (lighting, pose, colour vs grey), which teaches the layer
    # more about photos than expressions; the same-session sets pair cleanly.
    neutralizer_datasets: list = field(default_factory=lambda: ["taiwanese", "jaffe", "ckplus48"])
    # Ridge toward the identity map: without it the layer shrinks every code toward the average
    # face, and neutral faces move as much as expressive ones.
    neutralizer_ridge: float = 1.0
    # Neutral photos' targets: "self" (leave an already neutral face exactly where it is) or
    # "mean" (the mean of the person's neutral codes, which also averages shot-to-shot changes
    # and so moves every neutral face a little).
    neutralizer_neutral_target: str = "mean"
    neutralizer_neutral_weight: float = 0.5
    # The layer's change to the expression part kept only along the first
    # `neutralizer_subspace_dims` principal directions of how the training people's expressive
    # codes differ from their neutral ones (0 = all of it). The rest of the change is what the
    # layer does to any face unlike its few training people (an unfamiliar neutral face moved
    # toward theirs), not expression. The directions come from the pairs of
    # `neutralizer_datasets` and, weighted as much, of `neutralizer_subspace_datasets`: LFW's
    # photo-to-photo changes are too noisy as targets but its 700 people show how expressions
    # differ across faces.
    neutralizer_subspace_dims: int = 0
    neutralizer_subspace_datasets: list = field(default_factory=list)
    checkpoint_every: int = 250
    log_every: int = 25
    threads: int = 0  # 0 = all cores
    seed: int = 0
    oversample: dict = field(default_factory=lambda: {"taiwanese": 4, "jaffe": 2})
    max_minutes: float = 0.0  # stop a stage (checkpointed) after this long; 0 = no limit

    @classmethod
    def load(cls, path: str | Path | None, **overrides) -> "TrainConfig":
        values = {}
        if path:
            values.update({k: v for k, v in json.loads(Path(path).read_text()).items() if k not in RETIRED_KEYS})
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**values)


def device_for(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

"""StoicNet's training stages, each resumable from its checkpoint and logging its losses.

  0. classifier   (only with expression_feature_weight) an expression classifier on the labelled
                  sets, frozen afterwards: its features are the VAE's expression-aware perceptual loss
     smile-judge  (only with cross_smile_weight) a smile / no-smile judge of the mouth, frozen
                  afterwards: it judges faces decoded with other people's expression parts
  1. vae          encoder + decoder: L1 + SSIM reconstruction + KL (weight ramped up from 0)
  2. enhancer     first as an extension of the decoder (reconstruction only), then
                  (1 - W_g) L_rec2 + W_g L_gan against an LSGAN critic that sees real images,
                  decoder outputs and enhancer outputs (StoicNet eq. 6), plus the critic's
                  feature matching as the learned perceptual term (Larsen et al.)
  3. neutralizer  one dense layer on the frozen encoder's codes, trained on (expressive,
                  neutral) photos of the same person: || E(x_n) - Ntr(E(x_e)) ||^2

Every stage writes ``<run>/<stage>.pt`` (weights, optimiser, step) every ``checkpoint_every``
steps and appends to ``<run>/<stage>_log.csv``; running it again resumes where it stopped.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import nets
from stoic_cli.train.data import load_cache

PAIR_DATASETS = ("taiwanese", "lfw_expressions", "jaffe", "ckplus48")


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
    # VAE-GAN (Larsen et al.; 0 = off): an LSGAN critic trained beside the VAE judges its
    # reconstructions; the decoder gets `vae_gan_weight` x the critic's score and
    # `vae_critic_feature_weight` x the L1 between the critic's features of reconstruction and
    # photo (the learned similarity), which rewards the sharp detail that L1 averages away.
    vae_gan_weight: float = 0.0
    vae_critic_feature_weight: float = 0.0
    vae_critic_lr: float = 2e-4
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
    # With a split code: swaps across people (0 = off). The person parts of the batch's photos
    # are decoded with the expression parts of the pairs' expressive photos, and the encoder, as
    # a fixed judge, must read both parts back from those faces (squared error), so the decoder
    # renders an expression part the same way whoever wears it: a transfer adds one person's
    # displacement to another's code.
    cross_swap_weight: float = 0.0
    # With a split code and the smile judge (stage smile-judge, 0 = off): the same cross-person
    # swaps, judged by a frozen smile judge of our own that reads the mouth; the decoded face
    # must smile as much as the photo the expression part came from (binary cross-entropy on
    # the judge's logit, toward its probability on that photo). Only the decoder learns.
    cross_smile_weight: float = 0.0
    smile_judge_steps: int = 3000
    # With a split code (0 = off): an LSGAN critic of mouths (the smile judge's shape, trained
    # beside the VAE) tells the batch's photos from the same people's cross-person swaps; the
    # decoder gets `mouth_critic_weight` x its score on the swaps. The frozen smile judge reads
    # a blurred mouth as a smile; a critic that learns to call the decoder's mouths fake asks
    # for mouths drawn as sharply as a photo's.
    mouth_critic_weight: float = 0.0
    classifier_steps: int = 3000
    classifier_lr: float = 1e-3
    classifier_batch_size: int = 64
    # A models folder (encoder.onnx, decoder.onnx) to start the VAE from instead of from scratch;
    # its encoder has batch norm folded into the convolutions and only the mean head, so the
    # variance head starts at `vae_init_logvar` everywhere.
    vae_init: str = ""
    vae_init_logvar: float = -4.0
    enhancer_steps: int = 1500
    enhancer_warmup_steps: int = 400  # reconstruction only ("extension of the decoder")
    enhancer_lr: float = 5e-4
    # 2: the enhancer also upsamples 128 -> 256, trained on 256 px crops from `enhancer_cache`
    # (`stoic data prepare --size 256`); its input is their 2x2 area average, as at inference.
    enhancer_scale: int = 1
    enhancer_cache: str = ""  # default: `cache`
    enhancer_width: int = 16
    enhancer_blocks: int = 3
    gan_weight: float = 0.05  # W_g
    feature_weight: float = 0.5
    neutralizer_steps: int = 3000
    neutralizer_lr: float = 1e-3
    # LFW's pairs are different photos (lighting, pose, colour vs grey), which teaches the layer
    # more about photos than expressions; the same-session sets pair cleanly.
    neutralizer_datasets: list = field(default_factory=lambda: ["taiwanese", "jaffe", "ckplus48"])
    # Ridge toward the identity map: without it the layer shrinks every code toward the
    # average face (validation people got barely closer to their neutral codes, 170 vs 177,
    # while neutral faces moved as much as expressive ones).
    neutralizer_ridge: float = 1.0
    # Neutral photos' targets: "self" (leave an already neutral face exactly where it is) or
    # "mean" (the mean of the person's neutral codes, which also averages shot-to-shot changes
    # and so moves every neutral face a little).
    neutralizer_neutral_target: str = "mean"
    neutralizer_neutral_weight: float = 0.5
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
            values.update(json.loads(Path(path).read_text()))
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


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class ImageSampler:
    """Random training batches from the cache (train split), with horizontal flips."""

    def __init__(self, crops: np.ndarray, rows: list[int], weights: np.ndarray, seed: int):
        self.crops, self.rows = crops, np.asarray(rows)
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch, and the positions in `rows` it was drawn from (for their labels)."""
        pos = np.sort(self.rng.choice(len(self.rows), size=n, p=self.p))
        batch = np.asarray(self.crops[self.rows[pos]])
        flip = self.rng.random(n) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        return batch, pos

    def __call__(self, n: int) -> np.ndarray:
        return self.draw(n)[0]


@torch.no_grad()
def forward_rows(net, crops: np.ndarray, rows, device: torch.device, batch: int = 64) -> np.ndarray:
    """`net` on the cache's `rows`, a batch at a time (the crops are memory-mapped), as one array."""
    return np.concatenate([net(to_tensor(np.asarray(crops[rows[i:i + batch]]), device)).cpu().numpy()
                           for i in range(0, len(rows), batch)])


class PairSampler:
    """Same-person (neutral, expressive) photo pairs of one session, both flipped alike."""

    def __init__(self, crops: np.ndarray, groups: dict, seed: int):
        self.crops = crops
        self.groups = [(np.asarray(g["neutral"]), np.asarray(g["expressive"])) for g in groups.values()
                       if g["expressive"]]
        if not self.groups:
            raise ValueError("expression_dims needs people with neutral and expressive photos in "
                             "neutralizer_datasets (train split)")
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        picks = [self.groups[i] for i in self.rng.integers(len(self.groups), size=n)]
        neutral = np.stack([self.crops[self.rng.choice(g[0])] for g in picks])
        expressive = np.stack([self.crops[self.rng.choice(g[1])] for g in picks])
        flip = self.rng.random(n) < 0.5
        neutral[flip], expressive[flip] = neutral[flip, :, ::-1], expressive[flip, :, ::-1]
        return neutral, expressive


def make_sampler(cfg: TrainConfig, split: str = "train", cache: str | None = None) -> ImageSampler:
    cache = cache or cfg.cache
    crops, labels = load_cache(cache)
    rows = [r for r in labels if r["split"] == split]
    if not rows:
        raise ValueError(f"no '{split}' images in the cache {cache}")
    weights = np.array([cfg.oversample.get(r["dataset"], 1) for r in rows], dtype=np.float64)
    return ImageSampler(crops, [r["row"] for r in rows], weights, cfg.seed)


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
    """1 - SSIM with a uniform 7x7 window (Wang et al. 2004 allow any window). pytorch-msssim's
    Gaussian depthwise convolutions cost ~10x more on a CPU than average pooling."""
    a, b = (a + 1) / 2, (b + 1) / 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pool = lambda t: F.avg_pool2d(t, window, 1)
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a ** 2
    var_b = pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return 1 - ssim.mean()


class CsvLog:
    def __init__(self, path: Path):
        self.path = path

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)


def _save(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash mid-write never corrupts the last good checkpoint


def _load(path: Path, device: torch.device) -> dict | None:
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else None


def _setup(cfg: TrainConfig) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return run


def _time_up(start: float, cfg: TrainConfig) -> bool:
    return cfg.max_minutes > 0 and (time.time() - start) / 60 > cfg.max_minutes


def load_vae(run: Path, device: torch.device) -> tuple[nets.Encoder, nets.Decoder]:
    state = _load(run / "vae.pt", device)
    if state is None:
        raise FileNotFoundError(f"{run / 'vae.pt'} not found: train the vae stage first")
    enc = nets.Encoder(batchnorm=state.get("encoder_batchnorm", True)).to(device)
    dec = nets.Decoder().to(device)
    enc.load_state_dict(state["encoder"])
    dec.load_state_dict(state["decoder"])
    return enc.eval(), dec.eval()


def train_vae(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    run = _setup(cfg)
    sampler = make_sampler(cfg)
    step = 0
    ckpt = run / "vae.pt"
    state = _load(ckpt, device)
    if state:
        enc = nets.Encoder(batchnorm=state.get("encoder_batchnorm", True))
        dec = nets.Decoder()
    elif cfg.vae_init:
        from stoic_cli.train.export import import_onnx_vae
        missing = [n for n in ("encoder.onnx", "decoder.onnx") if not (Path(cfg.vae_init) / n).exists()]
        if missing:
            raise FileNotFoundError(f"vae_init: {cfg.vae_init} has no {' or '.join(missing)} (a models folder to "
                                    f"start from; for v4, v3's files: see models/README.md)")
        enc, dec = import_onnx_vae(cfg.vae_init, logvar=cfg.vae_init_logvar)
    else:
        enc, dec = nets.Encoder(), nets.Decoder()
    enc, dec = enc.to(device), dec.to(device)
    batchnorm = any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=cfg.vae_lr)
    classifier = load_classifier(run, device) if cfg.expression_feature_weight else None
    smile_judge = load_smile_judge(run, device) if cfg.cross_smile_weight and cfg.expression_dims else None
    adversarial = bool(cfg.vae_gan_weight or cfg.vae_critic_feature_weight)
    critic = nets.Critic().to(device) if adversarial else None
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.vae_critic_lr, betas=(0.5, 0.999)) if adversarial else None
    mouth_critic = nets.SmileJudge().to(device) if cfg.mouth_critic_weight and cfg.expression_dims else None
    opt_mouth = (torch.optim.Adam(mouth_critic.parameters(), lr=cfg.vae_critic_lr, betas=(0.5, 0.999))
                 if mouth_critic is not None else None)
    if state:
        enc.load_state_dict(state["encoder"])
        dec.load_state_dict(state["decoder"])
        opt.load_state_dict(state["opt"])
        if adversarial and "critic" in state:
            critic.load_state_dict(state["critic"]); opt_d.load_state_dict(state["opt_d"])
        if mouth_critic is not None and "mouth_critic" in state:
            mouth_critic.load_state_dict(state["mouth_critic"]); opt_mouth.load_state_dict(state["opt_mouth"])
        step = state["step"]
        sampler.rng = np.random.default_rng(cfg.seed + step)
    pairs = heads = None
    split_at = nets.LATENT_DIM - cfg.expression_dims
    if cfg.expression_dims:
        crops, labels = load_cache(cfg.cache)
        pairs = PairSampler(crops, neutral_pairs(labels, "train", tuple(cfg.neutralizer_datasets)), cfg.seed + step + 1)
        if cfg.expression_code_weight or cfg.uniform_posterior_weight:
            rows, classes = expression_rows(labels, "train")
            row_class = np.full(len(crops), -1, np.int64)  # -1: no basic-expression label
            row_class[rows] = classes
            heads = nets.CodeHeads(cfg.expression_dims).to(device)
            opt_heads = torch.optim.Adam(heads.parameters(), lr=cfg.vae_lr)
            if state and "heads" in state:
                heads.load_state_dict(state["heads"]); opt_heads.load_state_dict(state["opt_heads"])
    log = CsvLog(run / "vae_log.csv")
    weight = face_weight(device, expression=cfg.expression_weight)

    def reconstruction(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = weighted_l1(y, x, weight) + cfg.ssim_weight * ssim_loss(y, x)
        if classifier is not None:
            loss = loss + cfg.expression_feature_weight * expression_feature_loss(classifier, y, x)
        return loss

    enc.train(), dec.train()
    start, acc = time.time(), {"l1": 0.0, "ssim": 0.0, "kl": 0.0}
    if classifier is not None:
        acc["expression"] = 0.0
    if adversarial:
        acc.update(critic_feature=0.0, g_gan=0.0, d_real=0.0, d_fake=0.0)
    if pairs is not None:
        acc.update(swap=0.0, neutral_expression=0.0)
        if cfg.cross_swap_weight:
            acc["cross_swap"] = 0.0
        if smile_judge is not None:
            acc["cross_smile"] = 0.0
        if mouth_critic is not None:
            acc.update(mouth_g=0.0, mouth_d_real=0.0, mouth_d_fake=0.0)
    if heads is not None:
        acc.update(code_expression=0.0, code_adversary=0.0)

    def save():
        extra = {"critic": critic.state_dict(), "opt_d": opt_d.state_dict()} if adversarial else {}
        if mouth_critic is not None:
            extra.update(mouth_critic=mouth_critic.state_dict(), opt_mouth=opt_mouth.state_dict())
        if heads is not None:
            extra.update(heads=heads.state_dict(), opt_heads=opt_heads.state_dict())
        _save(ckpt, encoder=enc.state_dict(), decoder=dec.state_dict(), opt=opt.state_dict(), step=step,
              encoder_batchnorm=batchnorm, **extra)

    task = progress.add_task("vae", total=cfg.vae_steps, completed=step) if progress else None
    while step < cfg.vae_steps and not _time_up(start, cfg):
        # Cosine decay of the learning rate over the stage's steps.
        lr = cfg.vae_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch, pos = sampler.draw(cfg.batch_size)
        x = to_tensor(batch, device)
        mu, logvar = enc(x)
        y = dec(nets.reparameterize(mu, logvar))
        l1 = weighted_l1(y, x, weight)
        ss = ssim_loss(y, x)
        kl = nets.kl_divergence(mu, logvar)
        kl_w = cfg.kl_weight * min(1.0, step / max(1, cfg.kl_ramp_steps))
        loss = l1 + cfg.ssim_weight * ss + kl_w * kl
        if classifier is not None:
            expr = expression_feature_loss(classifier, y, x)
            loss = loss + cfg.expression_feature_weight * expr
            acc["expression"] += expr.item()
        if pairs is not None:
            xn, xe = (to_tensor(b, device) for b in pairs(cfg.swap_batch))
            mu_p, logvar_p = enc(torch.cat([xn, xe]))
            zn_, ze_ = nets.reparameterize(mu_p, logvar_p).chunk(2)
            mixed = torch.cat([torch.cat([zn_[:, :split_at], ze_[:, split_at:]], 1),  # -> the expressive photo
                               torch.cat([ze_[:, :split_at], zn_[:, split_at:]], 1)])  # -> the neutral photo
            swap = reconstruction(dec(mixed), torch.cat([xe, xn]))
            neutral_expr = mu_p[:len(xn), split_at:].pow(2).mean()
            loss = loss + cfg.swap_weight * swap + cfg.neutral_expression_weight * neutral_expr
            acc["swap"] += swap.item(); acc["neutral_expression"] += neutral_expr.item()
            if cfg.cross_swap_weight or smile_judge is not None or mouth_critic is not None:
                # the batch's people (LFW's too) wearing the pairs' expressions, decoded once
                crossed = cross_codes(mu, mu_p[len(xn):], split_at)
                swapped = dec(crossed)
            if cfg.cross_swap_weight:
                cross = cross_swap_loss(enc, crossed, swapped)
                loss = loss + cfg.cross_swap_weight * cross
                acc["cross_swap"] += cross.item()
            if smile_judge is not None:
                smile = cross_smile_loss(smile_judge, swapped, xe)
                loss = loss + cfg.cross_smile_weight * smile
                acc["cross_smile"] += smile.item()
            if mouth_critic is not None:
                # Critic first (the mouths of the photos whose people the swaps wear -> 1, the
                # swapped ones -> 0; the same people, so colour and source tell nothing), then the score.
                m_real, m_fake = critic_update(mouth_critic, opt_mouth, x[:len(swapped)], [swapped])
                mouth = (mouth_critic(swapped) - 1).pow(2).mean()
                loss = loss + cfg.mouth_critic_weight * mouth
                acc["mouth_g"] += mouth.item(); acc["mouth_d_real"] += m_real.item()
                acc["mouth_d_fake"] += m_fake.item()
        adversary_loss = None
        if heads is not None:
            target = torch.from_numpy(row_class[sampler.rows[pos]]).to(device)
            if (target >= 0).any():
                code_expr = F.cross_entropy(heads.expression(mu[:, split_at:]), target, ignore_index=-1)
                # Uniform posterior: cross-entropy of the adversary's guess against 1/C for every class.
                guess = F.log_softmax(heads.adversary(mu[:, :split_at]), 1)
                uniform = -guess.mean(1).mean() - math.log(guess.shape[1])
                loss = loss + cfg.expression_code_weight * code_expr + cfg.uniform_posterior_weight * uniform
                adversary_loss = F.cross_entropy(heads.adversary(mu[:, :split_at].detach()), target, ignore_index=-1)
                acc["code_expression"] += code_expr.item(); acc["code_adversary"] += adversary_loss.item()
        if adversarial:
            # Critic first (real -> 1, reconstruction -> 0), then the decoder's terms against it.
            d_real, d_fake = critic_update(critic, opt_d, x, [y])
            g_gan, feat = critic_terms(critic, y, x)
            loss = loss + cfg.vae_gan_weight * g_gan + cfg.vae_critic_feature_weight * feat
            acc["critic_feature"] += feat.item(); acc["g_gan"] += g_gan.item()
            acc["d_real"] += d_real.item(); acc["d_fake"] += d_fake.item()
        opt.zero_grad(set_to_none=True)
        if heads is not None:
            opt_heads.zero_grad(set_to_none=True)
        loss.backward()
        if adversary_loss is not None:
            # The adversary learns only to read the person part, not to be fooled.
            for p in heads.adversary.parameters():
                p.grad = None
            adversary_loss.backward()
        opt.step()
        if heads is not None:
            opt_heads.step()
        step += 1
        acc["l1"] += l1.item(); acc["ssim"] += ss.item(); acc["kl"] += kl.item()
        if step % cfg.log_every == 0:
            row = {"step": step, "seconds": round(time.time() - start, 1), "lr": round(lr, 6),
                   "kl_weight": kl_w, **{k: round(v / cfg.log_every, 5) for k, v in acc.items()}}
            log.write(row)
            acc = dict.fromkeys(acc, 0.0)
        if progress:
            progress.update(task, completed=step)
        if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
            save()
    save()
    return ckpt


def cross_codes(mu_people: torch.Tensor, mu_expressions: torch.Tensor, split_at: int) -> torch.Tensor:
    """Cross-person swaps: row i's person part (`mu_people`, any photos) with row i's expression
    part (`mu_expressions`, expressive photos of other people). Detached: the codes are held
    fixed, so only the decoder learns from what is asked of the faces decoded from them."""
    n = min(len(mu_people), len(mu_expressions))
    return torch.cat([mu_people[:n, :split_at], mu_expressions[:n, split_at:]], 1).detach()


def cross_swap_loss(enc: nets.Encoder, codes: torch.Tensor, swapped: torch.Tensor) -> torch.Tensor:
    """The encoder, with its weights held fixed so that only the decoder learns from this, must
    read the cross-person swaps' `codes` (see cross_codes) back from their decoded faces."""
    fixed = {k: v.detach() for k, v in list(enc.named_parameters()) + list(enc.named_buffers())}
    read, _ = torch.func.functional_call(enc, fixed, (swapped,))
    return (read - codes).pow(2).mean()


def cross_smile_loss(judge: nets.SmileJudge, swapped: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """The frozen smile judge must find as much smile on each decoded cross-person swap (see
    cross_codes) as on the photo `donors[i]` its expression part came from: a smile is drawn
    as a smile on whoever wears it."""
    with torch.no_grad():
        target = torch.sigmoid(judge(donors[:len(swapped)]))
    return F.binary_cross_entropy_with_logits(judge(swapped), target)


def critic_update(critic: nets.Critic, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                  fakes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSGAN critic step: real -> 1, each (detached) fake -> 0 (StoicNet eq. 6)."""
    d_real = (critic(real) - 1).pow(2).mean()
    d_fake = sum(critic(f.detach()).pow(2).mean() for f in fakes) / len(fakes)
    opt_d.zero_grad(set_to_none=True)
    (0.5 * (d_real + d_fake)).backward()
    opt_d.step()
    return d_real, d_fake


def critic_terms(critic: nets.Critic, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's LSGAN term and the L1 between the critic's features of `fake` and `real`
    (Larsen et al.'s learned similarity, in place of a pretrained VGG)."""
    real_feats = [f.detach() for f in critic.features(real)]
    fake_feats = critic.features(fake)
    g_gan = (critic.out(fake_feats[-1]) - 1).pow(2).mean()
    feat = sum((a - b).abs().mean() for a, b in zip(fake_feats, real_feats)) / len(real_feats)
    return g_gan, feat


def expression_feature_loss(classifier: nets.ExpressionClassifier, y: torch.Tensor,
                            x: torch.Tensor) -> torch.Tensor:
    """Mean over the classifier's layers (and logits) of the L1 between its features of the
    reconstruction `y` and of the photo `x`, each layer divided by the photo's mean magnitude
    there so that every layer counts alike."""
    with torch.no_grad():
        target = classifier.features(x)
    got = classifier.features(y)
    return sum((a - b).abs().mean() / (b.abs().mean() + 1e-6) for a, b in zip(got, target)) / len(got)


def expression_rows(labels: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one split whose expression is one of the seven basic ones, and its index."""
    index = {e: i for i, e in enumerate(nets.EXPRESSIONS)}
    keep = [r for r in labels if r["split"] == split and r["expression"] in index]
    return (np.array([r["row"] for r in keep], dtype=np.int64),
            np.array([index[r["expression"]] for r in keep], dtype=np.int64))


def _jitter(x: torch.Tensor, shift: int = 6) -> torch.Tensor:
    """Random shifts of up to `shift` px and brightness/contrast changes: alignment and light
    vary between photos, expressions should not be read off them."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2, n)).tolist()
    x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    gain = 1 + 0.4 * (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)
    bias = 0.2 * (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)
    return (x * gain + bias).clamp(-1, 1)


@torch.no_grad()
def classifier_accuracy(classifier: nets.ExpressionClassifier, crops: np.ndarray, rows: np.ndarray,
                        classes: np.ndarray, device: torch.device) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean recall over the classes present)."""
    classifier.eval()
    pred = forward_rows(lambda x: classifier(x).argmax(1), crops, rows, device, batch=128)
    recalls = [float((pred[classes == c] == c).mean()) for c in np.unique(classes)]
    return float((pred == classes).mean()), float(np.mean(recalls))


def _load_frozen(run: Path, name: str, net: torch.nn.Module, device: torch.device, needed_by: str) -> torch.nn.Module:
    """A judge stage's best weights, frozen."""
    state = _load(run / f"{name}.pt", device)
    if state is None:
        raise FileNotFoundError(f"{run / (name + '.pt')} not found: train the {name.replace('_', '-')} stage "
                                f"first ({needed_by} needs it)")
    net = net.to(device)
    net.load_state_dict(state["best"])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def load_classifier(run: Path, device: torch.device) -> nets.ExpressionClassifier:
    return _load_frozen(run, "classifier", nets.ExpressionClassifier(), device, "expression_feature_weight")


def load_smile_judge(run: Path, device: torch.device) -> nets.SmileJudge:
    return _load_frozen(run, "smile_judge", nets.SmileJudge(), device, "cross_smile_weight")


def _fit_judge(cfg: TrainConfig, device: torch.device, progress, name: str, net: torch.nn.Module, steps: int,
               crops: np.ndarray, rows: np.ndarray, targets: np.ndarray, draw_weights: np.ndarray, loss_fn,
               validate) -> Path:
    """The loop shared by the frozen judges: batches drawn by `draw_weights`, flipped and
    jittered, `loss_fn(net(x), targets) -> (loss, batch accuracy)`; every checkpoint
    `validate(net) -> (log values, score)` and the weights with the best score are kept."""
    run = _setup(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.classifier_lr)
    step, best, best_state = 0, -1.0, None
    ckpt = run / f"{name}.pt"
    state = _load(ckpt, device)
    if state:
        net.load_state_dict(state[name]); opt.load_state_dict(state["opt"])
        step, best, best_state = state["step"], state.get("best_score", state.get("best_accuracy")), state["best"]
    sampler = ImageSampler(crops, rows, draw_weights, cfg.seed + step)
    log = CsvLog(run / f"{name}_log.csv")
    start, acc = time.time(), {"loss": 0.0, "train_accuracy": 0.0}
    task = progress.add_task(name, total=steps, completed=step) if progress else None

    def save():
        _save(ckpt, **{name: net.state_dict()}, opt=opt.state_dict(), step=step, best=best_state, best_score=best,
              expressions=list(nets.EXPRESSIONS))

    while step < steps and not _time_up(start, cfg):
        lr = cfg.classifier_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch, pick = sampler.draw(cfg.classifier_batch_size)
        net.train()
        loss, batch_accuracy = loss_fn(net(_jitter(to_tensor(batch, device))), torch.from_numpy(targets[pick]).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc["loss"] += loss.item()
        acc["train_accuracy"] += batch_accuracy
        if step % cfg.checkpoint_every == 0 or step == steps:
            net.eval()
            values, score = validate(net)
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
            n = step % cfg.checkpoint_every or cfg.checkpoint_every
            log.write({"step": step, "seconds": round(time.time() - start, 1), "lr": round(lr, 6),
                       **{k: round(v / n, 5) for k, v in acc.items()}, **values})
            acc = dict.fromkeys(acc, 0.0)
            save()
        if progress:
            progress.update(task, completed=step)
    if best_state is None:  # stopped by max_minutes before the first evaluation
        best_state = {k: v.clone() for k, v in net.state_dict().items()}
    save()
    return ckpt


def _labelled_rows(labels: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation rows with a basic-expression label (tiny caches, as in the tests,
    may hold no validation people: then the training rows stand in)."""
    rows, classes = expression_rows(labels, "train")
    if len(np.unique(classes)) < 2:
        raise ValueError("a judge needs photos of at least two expressions in the training split")
    val_rows, val_classes = expression_rows(labels, "val")
    if len(val_rows) == 0:
        val_rows, val_classes = rows, classes
    return rows, classes, val_rows, val_classes


def train_classifier(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    """The expression classifier behind `expression_feature_weight`: class-balanced batches of
    the training people's labelled photos, flipped and jittered; the weights kept are those with
    the best balanced accuracy on the validation people."""
    crops, labels = load_cache(cfg.cache)
    rows, classes, val_rows, val_classes = _labelled_rows(labels)

    def loss_fn(logits, target):
        return (F.cross_entropy(logits, target, label_smoothing=0.1),
                (logits.argmax(1) == target).float().mean().item())

    def validate(net):
        accuracy, balanced = classifier_accuracy(net, crops, val_rows, val_classes, device)
        return {"val_accuracy": round(accuracy, 4), "val_balanced_accuracy": round(balanced, 4)}, balanced

    # every expression drawn equally often
    return _fit_judge(cfg, device, progress, "classifier", nets.ExpressionClassifier().to(device),
                      cfg.classifier_steps, crops, rows, classes, 1.0 / np.bincount(classes)[classes],
                      loss_fn, validate)


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_smile_judge(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    """The smile judge behind `cross_smile_weight`: happiness against every other labelled
    expression, half of each batch each way; the weights kept are those with the best ROC AUC
    on the validation people."""
    crops, labels = load_cache(cfg.cache)
    rows, classes, val_rows, val_classes = _labelled_rows(labels)
    happiness = nets.EXPRESSIONS.index("happiness")
    smiling = (classes == happiness).astype(np.float32)
    val_smiling = val_classes == happiness
    if smiling.min() == smiling.max():
        raise ValueError("the smile judge needs happy and other photos in the training split")

    def loss_fn(logits, target):
        soft = target * 0.95 + 0.025  # light label smoothing: the labels are noisy (LFW's)
        return F.binary_cross_entropy_with_logits(logits, soft), ((logits > 0) == (target > 0.5)).float().mean().item()

    def validate(net):
        scores = forward_rows(net, crops, val_rows, device, batch=128)
        auc = rank_auc(scores, val_smiling)
        return {"val_auc": round(auc, 4), "val_accuracy": round(float(((scores > 0) == val_smiling).mean()), 4)}, auc

    weights = np.where(smiling > 0, 0.5 / smiling.sum(), 0.5 / (1 - smiling).sum())
    return _fit_judge(cfg, device, progress, "smile_judge", nets.SmileJudge().to(device),
                      cfg.smile_judge_steps, crops, rows, smiling, weights, loss_fn, validate)


# Checkpoints from before the enhancer's shape was configurable: 16 channels, 3 blocks, 1x.
LEGACY_ENHANCER_SHAPE = {"width": 16, "blocks": 3, "scale": 1}


def enhancer_shape(cfg: TrainConfig) -> dict:
    return {"width": cfg.enhancer_width, "blocks": cfg.enhancer_blocks, "scale": cfg.enhancer_scale}


def enhancer_from_state(state: dict) -> nets.Enhancer:
    """Rebuild the enhancer a checkpoint was trained as."""
    enh = nets.Enhancer(**state.get("shape", LEGACY_ENHANCER_SHAPE))
    enh.load_state_dict(state["enhancer"])
    return enh


def train_enhancer(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    run = _setup(cfg)
    scale, cache = cfg.enhancer_scale, cfg.enhancer_cache or cfg.cache
    sampler = make_sampler(cfg, cache=cache)
    if sampler.crops.shape[1] != nets.IMAGE_SIZE * scale:
        raise ValueError(f"enhancer_scale {scale} needs {nets.IMAGE_SIZE * scale} px crops, but "
                         f"{cache} holds {sampler.crops.shape[1]} px ones "
                         f"(stoic data prepare --size {nets.IMAGE_SIZE * scale})")
    enc, dec = load_vae(run, device)
    for p in list(enc.parameters()) + list(dec.parameters()):
        p.requires_grad_(False)
    shape = enhancer_shape(cfg)
    enh, critic = nets.Enhancer(**shape).to(device), nets.Critic().to(device)
    opt_g = torch.optim.Adam(enh.parameters(), lr=cfg.enhancer_lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.enhancer_lr, betas=(0.5, 0.999))
    step, ckpt = 0, run / "enhancer.pt"
    state = _load(ckpt, device)
    if state:
        if state.get("shape", LEGACY_ENHANCER_SHAPE) != shape:
            raise ValueError(f"{ckpt} was trained with another enhancer shape ({state.get('shape')}); "
                             f"move it away to train this one ({shape})")
        enh.load_state_dict(state["enhancer"]); critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
        sampler.rng = np.random.default_rng(cfg.seed + step)
    log = CsvLog(run / "enhancer_log.csv")
    weight = face_weight(device, nets.IMAGE_SIZE * scale)
    start = time.time()
    keys = ["rec", "g_gan", "feat", "d_real", "d_fake"]
    acc = dict.fromkeys(keys, 0.0)
    task = progress.add_task("enhancer", total=cfg.enhancer_steps, completed=step) if progress else None

    def save():
        _save(ckpt, enhancer=enh.state_dict(), critic=critic.state_dict(), opt_g=opt_g.state_dict(),
              opt_d=opt_d.state_dict(), step=step, shape=shape)

    while step < cfg.enhancer_steps and not _time_up(start, cfg):
        x = to_tensor(sampler(cfg.batch_size), device)  # the target, at 128 * scale
        with torch.no_grad():
            small = F.avg_pool2d(x, scale) if scale > 1 else x
            blurry = dec(enc(small)[0])
            blurry_up = F.interpolate(blurry, scale_factor=float(scale), mode="bilinear",
                                      align_corners=False) if scale > 1 else blurry
        sharp = enh(blurry)
        rec = weighted_l1(sharp, x, weight) + cfg.ssim_weight * ssim_loss(sharp, x)
        adversarial = step >= cfg.enhancer_warmup_steps
        if adversarial:
            # Critic: real -> 1, decoder and enhancer outputs -> 0.
            d_real, d_fake = critic_update(critic, opt_d, x, [blurry_up, sharp])
            g_gan, feat = critic_terms(critic, sharp, x)
            loss = (1 - cfg.gan_weight) * (rec + cfg.feature_weight * feat) + cfg.gan_weight * g_gan
            acc["g_gan"] += g_gan.item(); acc["feat"] += feat.item()
            acc["d_real"] += d_real.item(); acc["d_fake"] += d_fake.item()
        else:
            loss = rec
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        step += 1
        acc["rec"] += rec.item()
        if step % cfg.log_every == 0:
            log.write({"step": step, "seconds": round(time.time() - start, 1), "adversarial": int(adversarial),
                       **{k: round(v / cfg.log_every, 5) for k, v in acc.items()}})
            acc = dict.fromkeys(keys, 0.0)
        if progress:
            progress.update(task, completed=step)
        if step % cfg.checkpoint_every == 0:
            save()
    save()
    return ckpt


def encode_rows(enc: nets.Encoder, crops: np.ndarray, rows: list[int], device: torch.device,
                batch: int = 64) -> np.ndarray:
    """The encoder's mean codes of the cache's `rows`."""
    if len(rows) == 0:
        return np.zeros((0, nets.LATENT_DIM), np.float32)
    return forward_rows(lambda x: enc(x)[0], crops, rows, device, batch)


def neutral_pairs(labels: list[dict], split: str, datasets=PAIR_DATASETS) -> dict:
    """Rows of expressive and neutral photos, and for each a group key (person, view) whose
    neutral photos form the target. Only groups with a neutral photo count."""
    groups: dict = {}
    for r in labels:
        if r["split"] != split or r["dataset"] not in datasets or r["expression"] == "unknown":
            continue
        key = (r["person"], r["view"])
        groups.setdefault(key, {"neutral": [], "expressive": []})
        groups[key]["neutral" if r["expression"] == "neutral" else "expressive"].append(r["row"])
    groups = {k: v for k, v in groups.items() if v["neutral"]}
    return groups


def train_neutralizer(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    """Fits Ntr on codes of the frozen encoder. Targets are the mean code of the person's
    neutral photos (same view); neutral photos map to that mean (or to themselves, see
    `neutralizer_neutral_target`), which teaches the layer to
    leave an already neutral face alone."""
    run = _setup(cfg)
    crops, labels = load_cache(cfg.cache)
    enc, _ = load_vae(run, device)
    data = {}
    for split in ("train", "val"):
        groups = neutral_pairs(labels, split, tuple(cfg.neutralizer_datasets))
        if not groups:
            if split == "train":
                raise ValueError("no (expressive, neutral) pairs of one person in the training split")
            data[split] = (torch.zeros(0, nets.LATENT_DIM), torch.zeros(0, nets.LATENT_DIM),
                           torch.zeros(0, dtype=torch.bool))
            continue
        src_rows, tgt_keys = [], []
        for key, g in groups.items():
            for row in g["expressive"] + g["neutral"]:
                src_rows.append(row)
                tgt_keys.append(key)
        all_rows = sorted({r for g in groups.values() for r in g["neutral"]} | set(src_rows))
        codes = dict(zip(all_rows, encode_rows(enc, crops, all_rows, device)))
        targets = {k: np.mean([codes[r] for r in g["neutral"]], 0) for k, g in groups.items()}
        is_expr = np.array([row in set(groups[k]["expressive"]) for row, k in zip(src_rows, tgt_keys)])
        to_self = cfg.neutralizer_neutral_target == "self"
        data[split] = (torch.tensor(np.stack([codes[r] for r in src_rows])),
                       torch.tensor(np.stack([codes[r] if (to_self and not e) else targets[k]
                                              for r, k, e in zip(src_rows, tgt_keys, is_expr)])),
                       torch.tensor(is_expr))
    if len(data["val"][0]) == 0 or not data["val"][2].any():
        data["val"] = data["train"]  # tiny caches (tests) may hold no validation pairs
    ntr = nets.Neutralizer().to(device)
    opt = torch.optim.Adam(ntr.parameters(), lr=cfg.neutralizer_lr)
    log = CsvLog(run / "neutralizer_log.csv")
    if (run / "neutralizer_log.csv").exists():
        (run / "neutralizer_log.csv").unlink()  # cheap stage: always retrained from scratch
    xs, ys, is_expr = (t.to(device) for t in data["train"])
    # Expressive pairs are the point; neutral-to-neutral pairs keep neutral faces unchanged.
    w = torch.where(is_expr, 1.0, cfg.neutralizer_neutral_weight)
    vx, vy, v_expr = (t.to(device) for t in data["val"])
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state = math.inf, None
    for step in range(1, cfg.neutralizer_steps + 1):
        idx = torch.randint(0, len(xs), (min(256, len(xs)),), generator=gen).to(device)
        pred = ntr(xs[idx])
        loss = (w[idx] * (pred - ys[idx]).pow(2).sum(1)).mean()
        if cfg.neutralizer_ridge:
            eye = torch.eye(nets.LATENT_DIM, device=device)
            loss = loss + cfg.neutralizer_ridge * ((ntr.fc.weight - eye).pow(2).sum() + ntr.fc.bias.pow(2).sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.neutralizer_steps:
            with torch.no_grad():
                val = (ntr(vx) - vy).pow(2).sum(1)
                baseline = (vx - vy).pow(2).sum(1)  # "do nothing"
                moved = (ntr(vx) - vx).pow(2).sum(1)
                row = {"step": step, "train": round(loss.item(), 4),
                       "val_expressive": round(val[v_expr].mean().item(), 4),
                       "val_expressive_identity_baseline": round(baseline[v_expr].mean().item(), 4),
                       "val_neutral": round(val[~v_expr].mean().item(), 4),
                       "val_neutral_moved": round(moved[~v_expr].mean().item(), 4),
                       "val_expressive_moved": round(moved[v_expr].mean().item(), 4)}
            log.write(row)
            if row["val_expressive"] < best:
                best, best_state = row["val_expressive"], {k: v.clone() for k, v in ntr.state_dict().items()}
    ntr.load_state_dict(best_state)
    ckpt = run / "neutralizer.pt"
    _save(ckpt, neutralizer=ntr.state_dict(), step=cfg.neutralizer_steps, best_val=best,
          pairs_train=int(is_expr.sum()), pairs_val=int(v_expr.sum()))
    return ckpt

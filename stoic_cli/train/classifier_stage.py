"""Stage `classifier` (only with `expression_feature_weight`): an expression classifier on the
labelled sets, frozen afterwards; its features are the VAE's expression-aware perceptual loss."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import nets
from stoic_cli.train.checkpoints import CsvLog, load_state, save_state, setup_run, time_up
from stoic_cli.train.config import TrainConfig
from stoic_cli.train.data import load_cache
from stoic_cli.train.samplers import ImageSampler, expression_rows, forward_rows, to_tensor


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


def load_classifier(run: Path, device: torch.device) -> nets.ExpressionClassifier:
    """The classifier stage's best weights, frozen."""
    state = load_state(run / "classifier.pt", device)
    if state is None:
        raise FileNotFoundError(f"{run / 'classifier.pt'} not found: train the classifier stage "
                                f"first (expression_feature_weight needs it)")
    net = nets.ExpressionClassifier().to(device)
    net.load_state_dict(state["best"])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _labelled_rows(labels: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation rows with a basic-expression label (tiny caches, as in the tests,
    may hold no validation people: then the training rows stand in)."""
    rows, classes = expression_rows(labels, "train")
    if len(np.unique(classes)) < 2:
        raise ValueError("the classifier needs photos of at least two expressions in the training split")
    val_rows, val_classes = expression_rows(labels, "val")
    if len(val_rows) == 0:
        val_rows, val_classes = rows, classes
    return rows, classes, val_rows, val_classes


def train_classifier(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    """Class-balanced batches of the training people's labelled photos, flipped and jittered;
    every checkpoint it is scored on the validation people, and the weights kept are those with
    the best balanced accuracy."""
    crops, labels = load_cache(cfg.cache)
    rows, classes, val_rows, val_classes = _labelled_rows(labels)
    net = nets.ExpressionClassifier().to(device)
    run = setup_run(cfg)
    steps = cfg.classifier_steps
    opt = torch.optim.Adam(net.parameters(), lr=cfg.classifier_lr)
    step, best, best_state = 0, -1.0, None
    ckpt = run / "classifier.pt"
    state = load_state(ckpt, device)
    if state:
        net.load_state_dict(state["classifier"]); opt.load_state_dict(state["opt"])
        step, best, best_state = state["step"], state.get("best_score", state.get("best_accuracy")), state["best"]
    # every expression drawn equally often
    sampler = ImageSampler(crops, rows, 1.0 / np.bincount(classes)[classes], cfg.seed + step)
    log = CsvLog(run / "classifier_log.csv")
    start, acc = time.time(), {"loss": 0.0, "train_accuracy": 0.0}
    task = progress.add_task("classifier", total=steps, completed=step) if progress else None

    def save():
        save_state(ckpt, classifier=net.state_dict(), opt=opt.state_dict(), step=step, best=best_state,
                   best_score=best, expressions=list(nets.EXPRESSIONS))

    while step < steps and not time_up(start, cfg):
        lr = cfg.classifier_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch, pick = sampler.draw(cfg.classifier_batch_size)
        net.train()
        logits = net(_jitter(to_tensor(batch, device)))
        target = torch.from_numpy(classes[pick]).to(device)
        loss = F.cross_entropy(logits, target, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc["loss"] += loss.item()
        acc["train_accuracy"] += (logits.argmax(1) == target).float().mean().item()
        if step % cfg.checkpoint_every == 0 or step == steps:
            accuracy, balanced = classifier_accuracy(net, crops, val_rows, val_classes, device)
            if balanced > best:
                best, best_state = balanced, {k: v.clone() for k, v in net.state_dict().items()}
            n = step % cfg.checkpoint_every or cfg.checkpoint_every
            log.write({"step": step, "seconds": round(time.time() - start, 1), "lr": round(lr, 6),
                       **{k: round(v / n, 5) for k, v in acc.items()},
                       "val_accuracy": round(accuracy, 4), "val_balanced_accuracy": round(balanced, 4)})
            acc = dict.fromkeys(acc, 0.0)
            save()
        if progress:
            progress.update(task, completed=step)
    if best_state is None:  # stopped by max_minutes before the first evaluation
        best_state = {k: v.clone() for k, v in net.state_dict().items()}
    save()
    return ckpt

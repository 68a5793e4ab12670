"""Run folders, checkpoints and loss logs, shared by every stage (the renderer's too).

Every stage writes ``<run>/<stage>.pt`` (weights, optimiser, step) every ``checkpoint_every``
steps and appends to ``<run>/<stage>_log.csv``; running it again resumes where it stopped.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from stoic_cli.train import nets


class CsvLog:
    def __init__(self, path: Path):
        self.path = path

    def write(self, row: dict) -> None:
        header: list[str] = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), [])
        if header and not set(row) <= set(header):
            # A run resumed by a version that logs more terms: the file is written again under
            # the wider header, so no row's values slide under another term's name.
            with open(self.path, newline="") as fh:
                old = list(csv.DictReader(fh))
            header += [k for k in row if k not in header]
            with open(self.path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=header, restval="")
                w.writeheader()
                w.writerows(old)
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=header or list(row), restval="")
            if not header:
                w.writeheader()
            w.writerow(row)


def save_state(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash mid-write never corrupts the last good checkpoint


def load_state(path: Path, device: torch.device) -> dict | None:
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else None


def setup_run(cfg) -> Path:
    """Threads and seed from a stage's config (TrainConfig or RendererConfig), and its run
    folder with the config written beside the checkpoints."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return run


def time_up(start: float, cfg) -> bool:
    return cfg.max_minutes > 0 and (time.time() - start) / 60 > cfg.max_minutes


def load_vae(run: Path, device: torch.device) -> tuple[nets.Encoder, nets.Decoder]:
    state = load_state(run / "vae.pt", device)
    if state is None:
        raise FileNotFoundError(f"{run / 'vae.pt'} not found: train the vae stage first")
    enc = nets.Encoder(batchnorm=state.get("encoder_batchnorm", True)).to(device)
    dec = nets.Decoder().to(device)
    enc.load_state_dict(state["encoder"])
    dec.load_state_dict(state["decoder"])
    return enc.eval(), dec.eval()

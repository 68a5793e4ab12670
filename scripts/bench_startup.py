"""Start-up and memory of one-photo runs (issue #24's targets; a benchmark, not a test).

Prints, medians of --repeats fresh processes: wall time of `stoic --help`, of `stoic neutralize`
on one 800 px photo, and of the same with a 12000 x 12000 photo, and each one's peak RSS.

    python scripts/bench_startup.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The child reads its own high-water mark (VmHWM, reset at exec): ru_maxrss would start at this
# script's peak, which holds the 12000 px test photo.
CHILD = ("import sys\nfrom stoic_cli.cli import app\n"
         "try:\n    app(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
         "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
         "print('RSS', int(hwm) / 1024, file=sys.stderr)\n")


def run(args: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    rss = [float(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("RSS ")]
    if res.returncode != 0 or not rss:
        raise SystemExit(f"{' '.join(args)} failed: {res.stderr[-500:]}")
    return wall, rss[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        face = Image.open(REPO / "tests" / "data" / "london" / "011_smiling.jpg").convert("RGB")
        face.resize((800, 800)).save(tmp / "p800.jpg", quality=95)
        big = Image.new("RGB", (12000, 12000), (128, 128, 128))
        big.paste(face.resize((3000, 3000)), (4500, 4500))
        big.save(tmp / "p12000.jpg", quality=90)
        cases = {"stoic --help": ["--help"],
                 "neutralize 800 px": ["neutralize", str(tmp / "p800.jpg"), "-o", str(tmp / "o"), "--overwrite",
                                       "--device", "cpu"],
                 "neutralize 12000 px": ["neutralize", str(tmp / "p12000.jpg"), "-o", str(tmp / "o"), "--overwrite",
                                         "--device", "cpu"]}
        print(f"{'case':24} {'wall s (median)':>16} {'peak RSS MB':>12}")
        for name, args in cases.items():
            runs = [run(args) for _ in range(opts.repeats)]
            print(f"{name:24} {statistics.median(w for w, _ in runs):16.2f} {statistics.median(r for _, r in runs):12.0f}")


if __name__ == "__main__":
    main()

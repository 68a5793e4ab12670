"""Face detection speed and memory: facenet-pytorch's MTCNN (torch) vs MTCNN on ONNX Runtime
(stoic_cli.runtime.detector), on one London photo upscaled to 800 px.

  python scripts/bench_detection.py [--threads N] [--repeats 5]

Prints the median ms per photo of each (after a warm-up) and the peak RSS of a fresh process
that imports only the detector in question and detects once. The fresh processes run first:
on Linux a child's ru_maxrss starts at its parent's peak, so they are started while this one is
still small (VmHWM, the child's own high-water mark, is printed beside it as a check)."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "tests" / "data" / "london" / "011_smiling.jpg"
SIDE = 800

LOAD = f"""
import cv2
from stoic_cli.face.images import load_photo
rgb = cv2.resize(load_photo({str(PHOTO)!r}).rgb, ({SIDE}, {SIDE}), interpolation=cv2.INTER_CUBIC)
"""
DETECTORS = {
    "onnx": "from stoic_cli.runtime.detector import OnnxFaceDetector\n"
            "detector = OnnxFaceDetector(device='cpu', threads={threads})\n",
    "torch": "import torch\ntorch.set_num_threads({threads})\n"
             "from stoic_cli.face.detection import FaceDetector\ndetector = FaceDetector(device='cpu')\n",
}
PEAK = """
import json, resource, sys
faces = detector.detect(rgb)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(json.dumps({"faces": len(faces), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vmhwm_mb": int(hwm[0].split()[1]) / 1024 if hwm else None, "torch_loaded": "torch" in sys.modules}))
"""


def timing(kind: str, threads: int, repeats: int) -> float:
    scope: dict = {}
    exec(LOAD + DETECTORS[kind].format(threads=threads), scope)
    detector, rgb = scope["detector"], scope["rgb"]
    detector.detect(rgb)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        detector.detect(rgb)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def peak_rss(kind: str, threads: int) -> dict:
    code = LOAD + DETECTORS[kind].format(threads=threads) + PEAK
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    print(f"{PHOTO.name} at {SIDE} px, {args.threads} thread(s), median of {args.repeats} after a warm-up")
    for kind in ("onnx", "torch"):  # before this process loads either
        r = peak_rss(kind, args.threads)
        hwm = f", VmHWM {r['vmhwm_mb']:.0f} MB" if r["vmhwm_mb"] else ""
        print(f"  fresh process, {kind} only, one detection: peak RSS {r['peak_rss_mb']:.0f} MB{hwm} "
              f"({r['faces']} face(s), torch imported: {r['torch_loaded']})")
    for kind in ("torch", "onnx"):
        print(f"  {kind:5s} {timing(kind, args.threads, args.repeats):8.1f} ms per photo")

if __name__ == "__main__":
    main()

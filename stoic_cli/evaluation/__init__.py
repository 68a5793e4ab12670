"""Evaluation and benchmarks. Nothing is imported here: the judges (dlib, MediaPipe) are an
optional extra and must never load on the editing path."""

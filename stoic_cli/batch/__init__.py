"""Batch I/O: planning inputs and outputs and running jobs with the skip, atomic-write and report
rules (runner), the editing job every editing command runs (editing), and the same on a Ray
cluster (cluster)."""

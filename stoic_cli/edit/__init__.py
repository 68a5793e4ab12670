"""Latent edits: the code algebra (latent) and the edits the commands apply (edits)."""

"""Rendering and paste-back: the renderer's motion and fill applied to the full-resolution photo."""

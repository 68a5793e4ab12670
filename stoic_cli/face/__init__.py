"""Face geometry: finding faces (MTCNN), the usable-face rule, 5-point alignment, reading and
writing photos."""

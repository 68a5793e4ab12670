"""The neutralizer's change restricted to the expression subspace (stoic_cli.train.neutralizer_stage)."""
from __future__ import annotations

import numpy as np
import pytest

from stoic_cli.train.neutralizer_stage import principal_directions, restrict_change


def test_each_block_weighs_the_same_whatever_its_size():
    many = np.tile([1.0, 0, 0], (100, 1))  # 100 differences along x
    few = np.tile([0, 1.2, 0], (5, 1))  # 5 larger ones along y
    directions, share = principal_directions([many, few], 1)
    assert np.allclose(np.abs(directions), [[0, 1, 0]])
    assert share == pytest.approx(1.44 / 2.44)
    directions, share = principal_directions([many, few, np.zeros((0, 3))], 5)
    assert len(directions) == 3 and share == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no expression differences"):
        principal_directions([np.zeros((0, 3))], 2)


def test_change_is_projected_on_the_expression_directions_only():
    rng = np.random.default_rng(0)
    weight, bias = np.eye(6) + rng.normal(0, 0.3, (6, 6)), rng.normal(0, 1, 6)
    directions = np.array([[1.0, 0, 0, 0]])  # of the last 4 entries (the expression part)
    w2, b2 = restrict_change(weight, bias, directions, 4)
    z = rng.normal(0, 2, (20, 6))
    before, after = z @ weight.T + bias, z @ w2.T + b2
    assert np.allclose(after[:, :2], before[:, :2])  # the person part as the layer had it
    assert np.allclose(after[:, 2], before[:, 2])  # along the direction: the layer's change
    assert np.allclose(after[:, 3:], z[:, 3:])  # across it: no change at all
    full = np.eye(4)
    w3, b3 = restrict_change(weight, bias, full, 4)
    assert np.allclose(w3, weight) and np.allclose(b3, bias)

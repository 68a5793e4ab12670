"""The realism evaluation's sets and arithmetic (the judged run itself is `stoic eval realism`)."""
from __future__ import annotations

import pytest

from tests.conftest import REPO

DATASETS = REPO.parent / "shared" / "datasets"


def test_ratio_and_summaries():
    import math

    from stoic_cli.evaluation.renderer_eval import compact_rate, compact_stat, share_of_way

    assert share_of_way(0.9, 0.1, 0.0) == pytest.approx(0.8 / 0.9)  # smile removed 89 % of the way
    assert share_of_way(0.1, 0.5, 0.9) == pytest.approx(0.5)  # smile added halfway
    assert share_of_way(0.3, 0.1, 0.35) is None  # the real photos barely differ: not measured
    assert share_of_way(None, 0.1, 0.0) is None
    assert compact_stat([1.0, None, 3.0]) == {"n": 2, "mean": 2.0, "median": 2.0}
    assert compact_stat([None, float("nan")]) == {"n": 0}
    assert compact_rate([True, False, None, True])["rate"] == pytest.approx(2 / 3)
    assert compact_rate([None])["n"] == 0 and math.isnan(compact_rate([None])["rate"])


@pytest.mark.skipif(not (DATASETS / "taiwanese").is_dir(), reason="the shared datasets are not here")
def test_held_out_sets_hold_no_training_person():
    from stoic_cli.evaluation.renderer_eval import held_out_shots
    from stoic_cli.train.data import assign_splits, list_lfw, list_taiwanese

    shots = held_out_shots(DATASETS, utk_per_race=1)
    records = list_taiwanese(DATASETS) + list_lfw(DATASETS)
    assign_splits(records)
    trained = {r.person for r in records if r.split == "train"}
    for name in ("taiwanese", "lfw"):
        people = {s.person for s in shots[name]}
        assert len(people) >= 5 and not people & trained, name
        assert {s.expression for s in shots[name]} == {"neutral", "happiness"}
    assert {s.labels["ethnicity"] for s in shots["utkface"]} == {"white", "black", "asian", "indian", "other"}

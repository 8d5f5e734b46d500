from __future__ import annotations

import json

import pytest

from compresskit.models import create_generator, save_model
from compresskit.models.elastic import Subnet
from compresskit.models.io import load_model
from compresskit.passes.select_subnet import SelectSubnetConfig, candidate_subnets, choose
from compresskit.recipe import parse_recipe
from compresskit.runner import run

SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5, "max_objects": 2}


def _subnet(width: int) -> Subnet:
    return Subnet(channels=(width, width, width, width), hidden=(width, width, width), convs=1)


def test_the_choice_is_the_best_aligned_inside_the_quality_budget_else_the_best_aligned():
    a, b, c = _subnet(4), _subnet(8), _subnet(16)
    teacher = {"alignment": 0.7, "kid": 0.2, "diversity": 0.3}
    quality = {a.key(): {"alignment": 0.6, "kid": 0.22, "diversity": 0.29},   # inside
               b.key(): {"alignment": 0.65, "kid": 0.21, "diversity": 0.2},   # too little variety
               c.key(): {"alignment": 0.69, "kid": 0.5, "diversity": 0.3}}    # KID too high
    assert choose([a, b, c], quality, teacher, 0.15, 0.9, 0.1) == (a, True)
    assert choose([a, b, c], quality, teacher, 0.15, 0.9, 0.03) == (a, False), "KID, diversity hold; alignment not"
    assert choose([b, c], quality, teacher, 0.15, 0.9, 0.1) == (c, False), "none inside: the best aligned, marked"


def test_candidates_are_the_uniform_subnets_then_distinct_seeded_random_ones():
    teacher = create_generator(ngf=8, text_hidden=16, fuse_hidden=8).config
    choices = {"width_choices": [0.25, 0.5], "convs_choices": [1, 2]}
    found = candidate_subnets(teacher, choices, 6, seed=3)
    assert found[:4] == [Subnet(channels=(16, 8, 4, 2), hidden=(8, 4, 2), convs=1),
                         Subnet(channels=(16, 8, 4, 2), hidden=(8, 4, 2), convs=2),
                         Subnet(channels=(32, 16, 8, 4), hidden=(16, 8, 4), convs=1),
                         Subnet(channels=(32, 16, 8, 4), hidden=(16, 8, 4), convs=2)]
    assert len(found) == 10 and len(set(found)) == 10
    assert found == candidate_subnets(teacher, choices, 6, seed=3)


def test_a_budget_is_one_of_milliseconds_or_a_speedup():
    with pytest.raises(ValueError, match="exactly one"):
        SelectSubnetConfig()
    with pytest.raises(ValueError, match="exactly one"):
        SelectSubnetConfig(latency_budget_ms=1.0, speedup_vs_teacher_int8=2.0)


@pytest.fixture(scope="module")
def shapes_teacher(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp("t") / "teacher", create_generator(ngf=8, text_hidden=16, fuse_hidden=8),
                      meta={"data": SHAPES})


def test_selection_honours_a_measured_latency_budget_and_reuses_its_latency_table(shapes_teacher, tmp_path):
    supernet = {"supernet": {"schedule": {"steps": 4, "batch_size": 8, "captions": 32},
                             "validation": {"every": 4, "checkpoint_every": 4, "size": 8},
                             "width_choices": [0.125, 0.5], "convs_choices": [1, 2]}}
    select = {"select_subnet": {"speedup_vs_teacher_int8": 1.2, "candidates": 2, "rounds": 2, "calls": 10,
                                "subset_size": 8, "val_n": 60, "max_scored": 3}}
    result = run(parse_recipe({"input": {"model": str(shapes_teacher)}, "steps": [supernet, select]}, "r.yaml"),
                 tmp_path / "run")
    table = json.loads((result.final.path / "selection.json").read_text())
    budget = table["teacher_int8_ms"] / 1.2
    assert table["budget_ms"] == pytest.approx(budget)
    rows = {row["subnet"]: row for row in table["candidates"]}
    assert len(rows) == 6 and all(row["in_budget"] == (row["latency_ms"] <= budget) for row in rows.values())
    chosen = rows[table["chosen"]]
    assert chosen["in_budget"] and "alignment" in chosen and chosen["alignment_metric"] == "attr_accuracy"
    scored = [row for row in rows.values() if "alignment" in row]
    assert all(row["in_budget"] for row in scored), "quality is measured inside the budget only"
    student = load_model(result.final.path)
    assert student.config.channels == [int(c) for c in table["chosen"].split("_")[0][1:].split("-")]
    # the table is measured once per machine and candidate set: a second selection reads it back
    again = run(parse_recipe({"input": {"model": str(shapes_teacher)}, "steps": [supernet, {"select_subnet": {
        **select["select_subnet"], "max_scored": 2}}]}, "r.yaml"), tmp_path / "run2")
    assert json.loads((again.final.path / "selection.json").read_text())["teacher_int8_ms"] == table["teacher_int8_ms"]

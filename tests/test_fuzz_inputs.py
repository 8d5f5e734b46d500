"""Fuzzed recipes, gates files and report JSON: every malformed input is one clear line, never a traceback.

Hypothesis mutates a valid recipe (wrong types, unknown keys, bad step orders, missing files, huge numbers,
unicode, empty documents) 600 times; each must raise a RecipeError whose one-line message names the key
that is wrong. The CLI is checked on a sample of them: that line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compresskit.bench.gate import GateSpec, parse_gates
from compresskit.bench.schema import SCHEMA_VERSION, load_report
from compresskit.errors import ConfigError, RecipeError
from compresskit.recipe import RecipeFile, load_recipe, parse_recipe
from compresskit.registry import PASSES, pass_class
from tests.helpers import run_cli

VALID_STEPS = [{"sanitize": {}}, {"prune": {"ratio": 0.5}}, {"distill": {"schedule": {"steps": 10}}}, {"export_onnx": {}},
               {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 8}}]
FORMAT_ORDER = ["sanitize", "prune", "distill", "export_onnx", "export_openvino", "quantize_nncf"]
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
                derandomize=True)  # the same 600 cases every run: tests are deterministic

text = st.text(min_size=1, max_size=12)  # unicode included
huge = st.sampled_from([10**40, -(10**40), math.inf, -math.inf, math.nan, 2**63])
wrong = st.one_of(st.dictionaries(text, st.integers(), min_size=1, max_size=2), huge,
                  st.lists(st.dictionaries(text, st.integers(), min_size=1), min_size=1, max_size=2))


def base_recipe() -> dict:
    return {"name": "fuzz", "input": {"model": "emoji32-tiny"}, "seed": 0, "threads": 1,
            "steps": [dict(s) for s in VALID_STEPS]}


@st.composite
def broken_recipe(draw) -> tuple[object, str]:
    """(a malformed recipe, a fragment its error must name)."""
    recipe = base_recipe()
    kind = draw(st.sampled_from(["top_value", "top_key", "step_key", "step_value", "pass", "order", "missing",
                                 "empty", "bench", "gate"]))
    if kind == "top_value":
        key = draw(st.sampled_from(["input", "seed", "threads", "steps", "name", "bench", "gates"]))
        recipe[key] = draw(wrong if key != "steps" else st.one_of(st.just([]), wrong))
        return recipe, key
    if kind == "top_key":
        key = draw(text.filter(lambda k: k not in RecipeFile.model_fields))
        recipe[key] = draw(st.integers())
        return recipe, repr(key)  # named as repr: control characters stay escaped on one line
    i = draw(st.integers(0, len(VALID_STEPS) - 1))
    name = FORMAT_ORDER[i]
    if kind == "step_value" and not pass_class(name).Config.model_fields:
        kind = "step_key"  # sanitize has no options: any key is an unknown one
    if kind == "step_key":
        fields = pass_class(name).Config.model_fields
        key = draw(text.filter(lambda k: k not in fields))
        recipe["steps"][i][name] = {key: 1}
        return recipe, f"step {i + 1}"
    if kind == "step_value":
        fields = list(pass_class(name).Config.model_fields)
        key = draw(st.sampled_from(fields))
        recipe["steps"][i][name] = {key: draw(wrong)}
        return recipe, key
    if kind == "pass":
        bogus = draw(text.filter(lambda k: k not in PASSES))
        recipe["steps"][i] = {bogus: {}}
        return recipe, "unknown pass"
    if kind == "order":  # a step moved before the step that makes the format it takes
        j = draw(st.sampled_from([3, 4, 5]))  # export_onnx, export_openvino, quantize_nncf
        moved = recipe["steps"].pop(j)
        recipe["steps"].insert(draw(st.integers(0, j - 1)), moved)
        return recipe, "but receives"
    if kind == "missing":
        recipe["input"] = {"model": "/no/such/" + draw(text).replace("/", "_")}
        return recipe, "input.model"
    if kind == "empty":
        return draw(st.sampled_from([None, "", [], {}, 0, "steps", {"steps": []}])), ""
    if kind == "bench":
        key = draw(st.sampled_from(["threads", "batch_sizes", "warmup", "rounds", "per_round"]))
        recipe["bench"] = {"speed": {key: draw(st.one_of(wrong, st.just([0]), st.just([]), st.just(-1)))}}
        return recipe, key
    gate = {"metric": "kid", "goal": "threshold", "value": 1.0}
    key = draw(st.sampled_from(list(GateSpec.model_fields)))
    gate[key] = draw(st.one_of(wrong, text.filter(lambda t: t not in ("final", "baseline", "kid", "threshold"))))
    recipe["gates"] = [gate]
    return recipe, "unknown candidate" if key == "candidate" and isinstance(gate[key], str) else key


def _one_line(exc: Exception) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message
    return message


@FUZZ
@given(broken_recipe())
def test_every_malformed_recipe_is_a_one_line_recipe_error_naming_the_key(case):
    recipe, fragment = case
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe, "fuzz.yaml")
    message = _one_line(caught.value)
    assert message.startswith("fuzz.yaml") and fragment in message, message


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_bytes_as_a_recipe_file_are_a_recipe_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    _one_line(caught.value)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.one_of(
    st.lists(st.fixed_dictionaries({"metric": st.one_of(text, st.just("kid")), "goal": st.one_of(text, st.just("x"))}),
             min_size=1, max_size=2),
    st.dictionaries(text, st.integers(), max_size=2), wrong, st.just({"gates": []}), st.none()))
def test_every_malformed_gates_file_is_a_one_line_config_error(raw):
    with pytest.raises(ConfigError) as caught:
        parse_gates(raw, "gates.yaml")
    assert _one_line(caught.value).startswith("gates.yaml")


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.one_of(st.text(max_size=50), st.lists(st.integers(), max_size=3),
                 st.fixed_dictionaries({"schema_version": st.just(SCHEMA_VERSION), "candidates": wrong})))
def test_a_malformed_report_json_is_a_one_line_error(tmp_path_factory, content):
    from compresskit.errors import ArtifactError

    path = tmp_path_factory.mktemp("rep") / "report.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(ArtifactError) as caught:
        load_report(path)
    _one_line(caught.value)


CLI_CASES = [
    ({**base_recipe(), "steps": [{"export_openvino": {}}, {"export_onnx": {}}]}, "but receives"),
    ({**base_recipe(), "stepz": []}, "did you mean 'steps'"),
    ({**base_recipe(), "threads": 10**40}, "threads"),
    ({**base_recipe(), "input": {"model": "/nope/ü"}}, "input.model"),
    ({**base_recipe(), "steps": [{"prune": {"ratio": "half"}}]}, "ratio"),
    ({**base_recipe(), "gates": [{"metric": "kid", "goal": "threshold", "value": 1, "candidate": "distil"}]},
     "did you mean 'distill'"),
]


@pytest.mark.parametrize(("recipe", "fragment"), CLI_CASES)
def test_cli_prints_the_line_and_exits_2_without_a_traceback(tmp_path, recipe, fragment):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()

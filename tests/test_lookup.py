"""One wording for an unknown name, in the helper and in the registries that use it."""

from __future__ import annotations

import pytest

from compresskit.data import load_dataset
from compresskit.errors import CompresskitError, DataError, ModelError, RecipeError
from compresskit.lookup import lookup, unknown_name
from compresskit.models import create_generator
from compresskit.registry import pass_class

TABLE = {"sanitize": 1, "prune": 2, "distill": 3}


def test_a_known_name_gives_its_entry():
    assert lookup(TABLE, "prune", "pass") == 2


def test_a_typo_names_the_closest_and_every_known_name_in_table_order():
    with pytest.raises(RecipeError) as info:
        lookup(TABLE, "prnue", "pass", error=RecipeError)
    assert str(info.value) == "unknown pass 'prnue'; did you mean 'prune'? (known: sanitize, prune, distill)"
    assert info.value.exit_code == 2


def test_a_name_close_to_nothing_lists_the_known_ones_only():
    assert unknown_name("pass", "zzz", TABLE) == "unknown pass 'zzz' (known: sanitize, prune, distill)"
    assert unknown_name("pass", "zzz", {}) == "unknown pass 'zzz' (known: none)"


def test_a_hint_follows_the_list_and_the_default_error_is_the_base_class():
    with pytest.raises(CompresskitError) as info:
        lookup(TABLE, "distil", "pass", hint="a plug-in registers through the compresskit.passes entry points")
    assert type(info.value) is CompresskitError
    assert str(info.value) == ("unknown pass 'distil'; did you mean 'distill'? (known: sanitize, prune, distill); "
                               "a plug-in registers through the compresskit.passes entry points")


def test_a_key_path_is_shown_whole_and_matched_by_its_last_part():
    message = unknown_name("key", "ngff", ["ngf", "z_dim"], shown="generator.ngff")
    assert message == "unknown key 'generator.ngff'; did you mean 'ngf'? (known: ngf, z_dim)"


def test_an_unhashable_name_is_unknown_not_a_crash():
    with pytest.raises(DataError, match=r"unknown dataset \['emoji'\] \(known: a\)"):
        lookup({"a": 1}, ["emoji"], "dataset", error=DataError)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: load_dataset("emojj"), DataError, "unknown dataset 'emojj'; did you mean 'emoji'? (known: emoji, shapes)"),
    (lambda: create_generator("dfgna"), ModelError, "unknown generator 'dfgna'; did you mean 'dfgan'? (known: dfgan)"),
    (lambda: pass_class("sanitise"), RecipeError, "unknown pass 'sanitise'; did you mean 'sanitize'? (known: sanitize, "),
])
def test_the_registries_use_the_one_wording(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(message)

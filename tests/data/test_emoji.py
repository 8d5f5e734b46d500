from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

import numpy as np
import pytest

from compresskit.data import build_emoji
from compresskit.data.emoji import base_key, cldr_caption, emoji_catalog, normalise, split_for
from compresskit.data.emoji_sources import STYLES, sequence_key, sequence_key_from_stem
from compresskit.errors import DataError

PYPI = ["twemoji", "openmoji"]


@pytest.mark.parametrize(
    ("text", "name", "caption"),
    [
        ("🏮", ":red_paper_lantern:", "red paper lantern"),
        ("🇱🇦", ":Laos:", "flag: Laos"),
        ("🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", ":England:", "flag: England"),
        ("#️⃣", ":keycap_#:", "keycap: #"),
        ("🏃🏽‍♀️", ":woman_running_medium_skin_tone:", "woman running: medium skin tone"),
        ("🏁", ":chequered_flag:", "chequered flag"),  # a flag emoji that is not a country flag
        (
            "🧑🏻‍❤️‍💋‍🧑🏾",
            ":kiss_person_person_light_skin_tone_medium-dark_skin_tone:",
            "kiss person person: light skin tone, medium-dark skin tone",
        ),
    ],
)
def test_cldr_caption(text, name, caption):
    assert cldr_caption(text, name) == caption


def test_catalog_captions_match_code_points():
    by_key = {e.key: e.caption for e in emoji_catalog()}
    assert by_key["1f3ee"] == "red paper lantern"
    assert by_key["1f3c3-200d-2640"] == "woman running"
    assert by_key["1f3c3-1f3fd-200d-2640"] == "woman running: medium skin tone"
    assert by_key["1f1f1-1f1e6"] == "flag: Laos"
    assert by_key["1f34e"] == "red apple"
    assert "1f3fb" not in by_key  # a bare skin-tone swatch is a component, not an emoji


def test_skin_tone_drop_keeps_only_base_emoji():
    kept, dropped = emoji_catalog("keep"), emoji_catalog("drop")
    assert len(dropped) < len(kept)
    assert not any(e.toned for e in dropped)
    assert {e.key for e in dropped} == {e.key for e in kept if not e.toned}


def test_sequence_keys_agree_between_file_names_and_text():
    assert sequence_key("#️⃣") == sequence_key_from_stem("0023-20E3") == "23-20e3"
    assert sequence_key("🏃‍♀️") == sequence_key_from_stem("1f3c3-200d-2640-fe0f")


def test_sources_render_the_same_emoji_by_code_points():
    for style in PYPI:
        art = STYLES[style].render("🍎")
        pixels = normalise(art, 32)
        assert pixels.shape == (32, 32, 3)
        red_share = np.mean((pixels[..., 0] > 150) & (pixels[..., 1] < 110))
        assert red_share > 0.2, f"{style}: a red apple should be mostly red"


def test_normalise_crops_centres_and_whitens():
    from PIL import Image

    art = Image.new("RGBA", (100, 60), (0, 0, 0, 0))
    art.paste((0, 0, 255, 255), (70, 10, 90, 50))  # a 20x40 blue bar off to the right
    pixels = normalise(art, 32)
    assert pixels[0, 0].tolist() == [255, 255, 255], "transparent becomes white"
    assert pixels[16, 16].tolist() == [0, 0, 255], "the bar keeps its colour"
    rows, cols = np.argwhere(pixels[..., 0] < 128).T
    assert rows.min() == 0 and rows.max() == 31, "content fills the square's long side"
    assert abs((cols.min() + cols.max()) / 2 - 15.5) <= 1, "content is centred horizontally"
    assert 14 <= cols.max() - cols.min() + 1 <= 18, "aspect ratio is kept (20x40 -> 16x32)"


def test_split_holds_out_one_style_of_some_base_emoji_with_all_its_tones():
    # 200 base emoji in three styles, every fifth with its five tone variants; plus one drawn in one style only
    captions, styles, keys = [], [], []
    for i in range(200):
        variants = [("", "")] + ([(f"-1f3f{t}", f": tone {t}") for t in "bcdef"] if i % 5 == 0 else [])
        for style in "abc":
            for key_tail, caption_tail in variants:
                captions.append(f"c{i}{caption_tail}"), styles.append(style), keys.append(f"{i + 0x1f600:x}{key_tail}")
    captions.append("lonely"), styles.append("a"), keys.append("1f9ff")
    splits = split_for(captions, styles, keys, 0.3, 0.1)
    assert splits == split_for(captions, styles, keys, 0.3, 0.1)  # deterministic
    by_base = defaultdict(list)
    for key, style, split in zip(keys, styles, splits):
        by_base[base_key(key)].append((style, split))
    for rows in by_base.values():
        held = {(style, split) for style, split in rows if split != "train"}
        assert len({style for style, _ in held}) <= 1, "one style per base emoji is held out"
        if held:  # every tone variant of the held style goes with it, so no sibling drawing stays in train
            style, split = next(iter(held))
            assert all(s == split for st, s in rows if st == style)
            assert any(s == "train" for st, s in rows if st != style), "the caption stays learnable"
    assert by_base["1f9ff"] == [("a", "train")], "an emoji drawn in one style only is never held out"
    held_bases = Counter(next((s for _, s in rows if s != "train"), "train") for rows in by_base.values())
    assert 40 <= held_bases["eval"] <= 80 and 8 <= held_bases["val"] <= 35, held_bases  # ~30% and ~10% of 200


def test_build_is_deterministic_and_cached(fresh_cache, tmp_path, monkeypatch):
    first = build_emoji(32, styles=PYPI, limit=40)
    assert first.info["built"] is True
    again = build_emoji(32, styles=PYPI, limit=40)
    assert again.info["built"] is False and again.path == first.path

    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path / "other-cache"))
    other = build_emoji(32, styles=PYPI, limit=40)
    digests = lambda ds: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ds.path.iterdir()}  # noqa: E731
    assert digests(first) == digests(other), "same options must give the same bytes"
    assert first.path.name == other.path.name


def test_changed_option_builds_a_new_entry(fresh_cache):
    a = build_emoji(32, styles=PYPI, limit=10)
    b = build_emoji(32, styles=PYPI, limit=10, eval_fraction=0.5)
    c = build_emoji(16, styles=PYPI, limit=10)
    assert len({a.path, b.path, c.path}) == 3
    assert c.images.shape[1:] == (16, 16, 3)


def test_failed_build_leaves_nothing_half_written(fresh_cache, monkeypatch):
    from compresskit.data import store

    def broken_save(self, folder):
        np.save(folder / store.IMAGES_FILE, self.images)
        raise OSError("disk full")

    monkeypatch.setattr(store.CaptionedImages, "save", broken_save)
    with pytest.raises(OSError):
        build_emoji(32, styles=PYPI, limit=5)
    assert list((fresh_cache / "datasets").iterdir()) == []


def test_missing_optional_style_is_a_clear_error(monkeypatch):
    from pathlib import Path

    from compresskit.data import emoji_sources

    missing = emoji_sources.ColorFontSource("noto", "apt-get install fonts-noto-color-emoji",
                                            lambda: Path("/nonexistent.ttf"), lambda: "0", 109)
    monkeypatch.setitem(emoji_sources.STYLES, "noto", missing)
    with pytest.raises(DataError, match="apt-get install fonts-noto-color-emoji"):
        build_emoji(32, styles=["twemoji", "noto"], limit=5)
    with pytest.raises(DataError, match="unknown emoji style 'twemojii'"):
        build_emoji(32, styles=["twemojii"])
    with pytest.raises(DataError, match="unsupported --size 33"):
        build_emoji(33)


@pytest.mark.slow
def test_full_pypi_build_counts_and_split():
    ds = build_emoji(32, styles=PYPI)
    summary = ds.summary()
    assert 7800 <= summary["images"] <= 8000
    assert 3900 <= summary["captions"] <= 4000
    assert summary["styles"] == {"openmoji": summary["captions"], "twemoji": summary["captions"]}
    assert summary["train"] + summary["val"] + summary["eval"] == summary["images"]
    assert 0.15 < summary["eval"] / summary["captions"] < 0.25 and 0.05 < summary["val"] / summary["captions"] < 0.15
    # a held-out (style, base emoji) has no drawing in train (no sibling tone), every held-out caption is
    # drawn in train in the other style, and val and eval hold out different drawings
    train_pairs = {(st, base_key(k)) for st, k, sp in zip(ds.styles, ds.keys, ds.splits) if sp == "train"}
    train_captions = {c for c, sp in zip(ds.captions, ds.splits) if sp == "train"}
    held = defaultdict(set)
    for caption, style, key, split in zip(ds.captions, ds.styles, ds.keys, ds.splits):
        if split != "train":
            assert (style, base_key(key)) not in train_pairs, f"{caption} ({style}) has a near-copy in train"
            assert caption in train_captions, "its caption is still learnable from another style"
            held[split].add((style, base_key(key)))
    assert not held["eval"] & held["val"]
    assert any("skin tone" in c for c, sp in zip(ds.captions, ds.splits) if sp == "eval"), "tone variants held out too"
    corners = ds.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.mean(corners.min(axis=(1, 2)) >= 235) > 0.8, "most images sit on white"

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from compresskit.errors import ModelError
from compresskit.metrics.align_train import train_aligner
from compresskit.metrics.alignment import alignment_scores, load_aligner


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 384, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_images_that_match_their_captions_rank_first():
    captions = unit(300, 0)
    ids = torch.arange(200)
    scores = alignment_scores(captions[ids], ids, captions)
    assert scores["r_precision"] == 1.0 and scores["caption_similarity"] == pytest.approx(1.0)


def test_unrelated_vectors_score_near_chance():
    captions = unit(300, 0)
    scores = alignment_scores(unit(2000, 1), torch.randint(0, 300, (2000,)), captions)
    assert scores["r_precision"] < 0.03 and abs(scores["caption_similarity"]) < 0.02


def test_the_true_caption_is_never_its_own_distractor():
    captions = unit(101, 0)  # 100 others: every draw must avoid the true caption
    ids = torch.arange(101)
    noisy = F.normalize(captions + 0.05 * unit(101, 3), dim=1)
    assert alignment_scores(noisy, ids, captions)["r_precision"] == 1.0


def test_too_few_captions_for_99_distractors():
    with pytest.raises(ModelError, match="needs more than 99 distinct captions"):
        alignment_scores(unit(5, 0), torch.arange(5), unit(50, 0))


def test_training_learns_and_round_trips(tmp_path):
    figures = train_aligner(tmp_path / "align", epochs=8, limit=300)  # 3 steps an epoch
    assert figures["real_train_subset"]["r_precision"] > 5 * figures["chance"]
    encoder = load_aligner(tmp_path / "align")
    assert encoder.meta["epochs"] == 8
    assert (tmp_path / "align" / "MODEL_CARD.md").read_text().startswith("# emoji32-align")


def test_a_folder_without_an_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load the alignment encoder"):
        load_aligner(tmp_path)

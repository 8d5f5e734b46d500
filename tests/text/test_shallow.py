"""The shallow encoder's training batches: sub-batches of similar lengths give the padded batch's gradient."""

import pytest
import torch

from compresskit.text.encoder import mean_pool
from compresskit.text.shallow import cut_encoder, load_minilm, pad_rows, split_by_length


def test_split_by_length_cuts_where_padding_is_least_and_keeps_every_row():
    lengths = torch.tensor([3, 4, 4, 5, 12, 13])
    rows = torch.tensor([5, 0, 3, 0, 4, 1, 2])  # repeats are kept
    parts = split_by_length(rows, lengths)
    assert sorted(torch.cat(parts).tolist()) == sorted(rows.tolist())
    assert [lengths[p].tolist() for p in parts] == [[3, 3, 4, 4, 5], [12, 13]]  # 5*5 + 2*13 = 51 padded tokens
    assert [p.tolist() for p in split_by_length(torch.tensor([2]), lengths)] == [[2]]


def test_sub_batches_give_the_padded_batchs_loss_and_gradient():
    torch.manual_seed(0)
    tokenizer, bert = load_minilm()
    student = cut_encoder(bert, 1).eval()  # no dropout: the two ways must agree exactly up to float error
    captions = ["red apple", "a grinning face with big eyes and a tongue out", "sun", "cat face with tears of joy"]
    ids = [tokenizer(c)["input_ids"] for c in captions]
    lengths = torch.tensor([len(i) for i in ids])
    rows = torch.tensor([1, 0, 2, 3, 0, 1])
    targets = torch.nn.functional.normalize(torch.randn(len(captions), 384), dim=-1)

    def grads():
        return [p.grad.clone() for p in student.parameters() if p.grad is not None]

    student.zero_grad()
    input_ids, mask = pad_rows(ids, rows, tokenizer.pad_token_id)
    assert input_ids.shape == (6, int(lengths.max()))
    pooled = mean_pool(student(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask)
    whole = (1 - (pooled * targets[rows]).sum(1)).mean()
    whole.backward()
    padded = grads()

    student.zero_grad()
    split = 0.0
    for part in split_by_length(rows, lengths):
        input_ids, mask = pad_rows(ids, part, tokenizer.pad_token_id)
        pooled = mean_pool(student(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask)
        loss = (1 - (pooled * targets[part]).sum(1)).sum() / len(rows)
        loss.backward()
        split += loss.item()
    assert abs(split - whole.item()) < 1e-5
    for a, b in zip(padded, grads()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 3, 20])
def test_a_short_distillation_runs_whatever_its_length(steps):
    from compresskit.text.shallow import distill_shallow_encoder

    student = distill_shallow_encoder(["red apple", "cat face", "sun"], layers=1, steps=steps, batch_size=4)
    assert len(student.encoder.layer) == 1 and not student.training


def test_the_distillation_trains_without_dropout_and_still_learns(monkeypatch):
    """Dropout off (the targets are fixed vectors: nothing to regularise against), and gradients still flow."""
    import compresskit.text.shallow as shallow

    flags, start, cut = [], [], shallow.cut_encoder

    def recording_cut(bert, layers):
        student = cut(bert, layers)
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.register_forward_hook(lambda m, args, out: flags.append(m.training))
        start.extend(p.detach().clone() for p in student.encoder.parameters())
        return student

    monkeypatch.setattr(shallow, "cut_encoder", recording_cut)
    student = shallow.distill_shallow_encoder(["red apple", "cat face", "sun"], layers=1, steps=3, batch_size=4)
    assert flags and not any(flags)  # every dropout module ran, and ran inactive
    assert any(not torch.equal(a, b) for a, b in zip(start, student.encoder.parameters()))

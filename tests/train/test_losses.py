"""The closed-form feature MSE (``adapted_mse``) against the direct one: ``F.mse_loss(adapter(maps), teacher)``."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compresskit.train.losses import Drawn, FeatureLoss, MapTarget, adapted_mse


def _maps(seed: int, channels: int, layout: torch.memory_format) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, channels, 5, 7, generator=g).to(memory_format=layout)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_closed_form_feature_mse_has_the_direct_forms_value_and_gradients(layout):
    torch.manual_seed(0)
    adapter = nn.Conv2d(4, 12, 1)
    teacher = _maps(1, 12, layout) * 3 + 1  # an offset and scale like real activations
    student = _maps(2, 4, layout)
    grads = []
    for closed in (False, True):
        maps = student.clone().requires_grad_()
        adapter.zero_grad(set_to_none=True)
        if closed:
            loss = FeatureLoss(nn.ModuleDict({"b": adapter}), ["b"])(Drawn(maps, {"b": maps}),
                                                                     Drawn(teacher, {"b": teacher}), {})
        else:
            loss = F.mse_loss(adapter(maps), teacher)
        loss.backward()
        grads.append((loss.detach(), maps.grad, adapter.weight.grad, adapter.bias.grad))
    for direct, closed in zip(*grads):
        torch.testing.assert_close(closed, direct, rtol=1e-5, atol=1e-6)


def test_a_sub_network_reads_the_adapters_first_channels_and_a_kept_teacher_batch_serves_again():
    torch.manual_seed(0)
    adapter = nn.Conv2d(8, 12, 1)
    teacher_maps = _maps(1, 12, torch.channels_last)
    teacher = Drawn(teacher_maps, {"b": teacher_maps})
    loss = FeatureLoss(nn.ModuleDict({"b": adapter}), ["b"], sliced=True)
    for width in (3, 8, 5):  # the second call of a width-3 map would fail if the first call's rows were kept wrong
        maps = _maps(width, width, torch.channels_last)
        expected = F.mse_loss(F.conv2d(maps, adapter.weight[:, :width], adapter.bias), teacher_maps)
        torch.testing.assert_close(loss(Drawn(maps, {"b": maps}), teacher, {}), expected, rtol=1e-5, atol=1e-6)
    assert list(teacher._targets) == ["b"]  # the teacher's rows and sums computed once


def test_the_closed_form_stays_in_fp32_under_bf16_autocast():
    adapter = nn.Conv2d(4, 12, 1)
    teacher, student = _maps(1, 12, torch.channels_last) + 2, _maps(2, 4, torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = adapted_mse(student, adapter.weight, adapter.bias, MapTarget.of(teacher))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, F.mse_loss(adapter(student), teacher), rtol=1e-5, atol=1e-6)

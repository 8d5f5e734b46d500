from __future__ import annotations

import random

import pytest
import torch

from compresskit.models import DFGenerator, create_generator
from compresskit.models.elastic import Subnet, elastic_forward, extract, from_factors, largest, sample, subnet_config
from compresskit.passes.students import inherit_from_teacher, slim_config


def _supernet(seed: int = 0):
    torch.manual_seed(seed)
    return create_generator(ngf=8, text_hidden=16, fuse_hidden=8)  # channels [64, 32, 16, 8], two convs a block


@pytest.mark.parametrize("convs", [1, 2])
@pytest.mark.parametrize("factors", [[1, 1, 1, 1], [0.5, 0.25, 0.75, 0.5], [0.125, 0.125, 0.125, 0.125]])
def test_an_extracted_subnet_draws_what_the_supernet_draws_with_those_widths(factors, convs):
    supernet = _supernet()
    for p in supernet.parameters():  # fusion gains start at identity: random weights so every slice matters
        torch.nn.init.normal_(p, std=0.2)
    subnet = from_factors(supernet.config, factors, convs)
    z, text = torch.randn(3, 100, generator=torch.Generator().manual_seed(1)), torch.randn(3, 384)
    student = extract(supernet.eval(), subnet)
    assert student.config.channels == list(subnet.channels) and student.config.convs_per_block == convs
    assert len(student.blocks) == 3 and hasattr(student.blocks[0], "conv1") == (convs == 2)
    with torch.no_grad():
        torch.testing.assert_close(student(z, text), elastic_forward(supernet, subnet, z, text), rtol=1e-5, atol=1e-5)


def test_the_largest_subnet_is_the_supernet_itself():
    supernet = _supernet().eval()
    z, text = torch.randn(2, 100), torch.randn(2, 384)
    with torch.no_grad():
        torch.testing.assert_close(elastic_forward(supernet, largest(supernet.config), z, text), supernet(z, text))


def test_subnet_training_reaches_only_the_shared_slices():
    supernet = _supernet().train()
    subnet = from_factors(supernet.config, [0.5] * 4, 1)
    elastic_forward(supernet, subnet, torch.randn(2, 100), torch.randn(2, 384)).mean().backward()
    grad = supernet.blocks[0].conv0.weight.grad
    assert grad[:16, :32].abs().sum() > 0
    assert grad[16:].abs().sum() == 0 and grad[:, 32:].abs().sum() == 0, "channels past the subnet's stay untouched"
    assert supernet.blocks[0].conv1.weight.grad is None, "a one-conv subnet skips the second conv"


def test_a_subnet_wider_than_the_supernet_is_refused():
    config = _supernet().config
    with pytest.raises(ValueError, match="wider than the supernet"):
        subnet_config(config, Subnet(channels=(65, 32, 16, 8), hidden=(32, 16, 8), convs=2))
    with pytest.raises(ValueError, match="stages"):
        subnet_config(config, Subnet(channels=(64, 32, 16), hidden=(32, 16), convs=2))


def test_random_subnets_are_seeded_and_inside_the_choices():
    config = _supernet().config
    draws = [sample(config, [0.25, 0.5], [1, 2], random.Random(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    for subnet in (sample(config, [0.25, 0.5], [1, 2], random.Random(s)) for s in range(20)):
        assert all(c in (w // 4, w // 2) for c, w in zip(subnet.channels, config.channels))


def test_an_importance_ordered_supernet_from_its_teacher_keeps_the_teachers_function_at_full_width():
    teacher = _supernet(3).eval()
    supernet = DFGenerator(slim_config(teacher.config, 1.0)).eval()
    z, text = torch.randn(4, 100), torch.randn(4, 384)
    inherit_from_teacher(supernet, teacher, (z, text), by_importance=True)
    with torch.no_grad():  # a permutation of every stage's channels: the same function
        torch.testing.assert_close(supernet(z, text), teacher(z, text), rtol=1e-4, atol=1e-5)

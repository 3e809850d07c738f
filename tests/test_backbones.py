import pytest
import torch
import torchvision

from workbench.nn.backbones import (
    get_backbone,
    list_backbones,
    patch_size_for,
    prefers_channels_last,
)


@pytest.mark.parametrize(
    "name,size,dim",
    [
        ("resnet18", 64, 512),
        ("resnet18-small", 32, 512),
        ("vit-tiny", 32, 192),
    ],
)
def test_backbone_shapes(name, size, dim):
    model, d = get_backbone(name, input_size=size)
    assert d == dim
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, dim)


def test_resnet50_dim_and_torchvision_keys():
    model, d = get_backbone("resnet50")
    assert d == 2048
    tv = torchvision.models.resnet50()
    missing, unexpected = tv.load_state_dict(model.state_dict(), strict=False)
    assert unexpected == [] and set(missing) == {"fc.weight", "fc.bias"}


def test_small_stem():
    model, _ = get_backbone("resnet18-small", input_size=32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)


def test_vit_any_resolution():
    model, d = get_backbone("vit-small", input_size=64)
    assert patch_size_for(64) == 8 and d == 384
    with torch.no_grad():  # local crops of another size go through interpolated pos-embeddings
        assert model(torch.randn(2, 3, 24, 24)).shape == (2, 384)
    assert patch_size_for(224) == 14 and patch_size_for(32) == 4


def test_user_module_and_unknown_name():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    m, d = get_backbone(net, input_size=16)
    assert m is net and d == 8
    with pytest.raises(ValueError, match="resnet19") as e:
        get_backbone("resnet19")
    assert "resnet18" in str(e.value)
    assert "vit-tiny" in list_backbones()


def test_conv_nets_prefer_channels_last_and_vits_do_not():
    assert prefers_channels_last(get_backbone("resnet18", input_size=32)[0])
    assert prefers_channels_last(get_backbone("resnet18-small", input_size=32)[0])
    assert not prefers_channels_last(get_backbone("vit-tiny", input_size=32)[0])
    assert not prefers_channels_last(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2)))

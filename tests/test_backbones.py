import pytest
import torch
import torchvision
from torch import nn

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


@pytest.mark.parametrize("name,dim,max_params", [("mobilenet_v3_small", 576, 1.0e6),
                                                 ("mobilenet_v3_large", 960, 3.1e6)])  # fmt: skip
def test_mobilenet_students_are_small_and_keep_a_4x4_map_at_32px(name, dim, max_params):
    resnet, _ = get_backbone("resnet18", input_size=32)
    model, d = get_backbone(name, input_size=32)
    n_params = sum(p.numel() for p in model.parameters())
    assert d == dim and n_params <= max_params
    assert n_params <= sum(p.numel() for p in resnet.parameters()) / 3  # a third of ResNet-18
    assert name in list_backbones() and prefers_channels_last(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.features(x).shape[-2:] == (4, 4)  # stock strides would leave 1x1
        assert model(x).shape == (2, dim)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, dim)
    stock, _ = get_backbone(name, input_size=224)  # large inputs keep torchvision's strides
    with torch.no_grad():
        assert stock.features(torch.randn(1, 3, 224, 224)).shape[-2:] == (7, 7)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_batchnorm_tracks_short_runs(name):
    # torchvision's 0.01 leaves running statistics near their initial values after the tens of
    # steps of a short run, and eval-mode features (kNN) collapse; PyTorch's default follows.
    model, _ = get_backbone(name, input_size=32)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.momentum == 0.1 for bn in bns)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_export_loads_into_torchvision(name):
    model, _ = get_backbone(name, input_size=32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # "trained" weights, to check they are the ones that load
    tv = getattr(torchvision.models, name)()
    missing, unexpected = tv.load_state_dict(model.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("classifier.") for k in missing) and missing
    ours = dict(model.state_dict())
    assert all(torch.equal(v, ours[k]) for k, v in tv.state_dict().items() if k in ours)


def test_a_mobilenet_student_trained_by_distillation_exports_torchvision_weights(
    digits_small, tmp_path
):
    import workbench as wb

    torch.manual_seed(0)
    teacher, _ = get_backbone("resnet18-small", input_size=16)
    run = wb.train(
        digits_small, method="distillation", model="mobilenet_v3_small", out=tmp_path / "d",
        epochs=1, max_steps=2, batch_size=32, input_size=16, method_args={"teacher": teacher},
    )  # fmt: skip
    assert run.status == "finished", run.events
    assert run.config["feature_dim"] == 576
    exported = torch.load(run.backbone_path)
    tv = torchvision.models.mobilenet_v3_small()
    missing, unexpected = tv.load_state_dict(exported, strict=False)
    assert unexpected == [] and all(k.startswith("classifier.") for k in missing)
    student = wb.load_run(run.out).backbone
    assert all(torch.equal(v, exported[k]) for k, v in student.state_dict().items())
    with torch.no_grad():
        assert student(torch.zeros(2, 3, 16, 16)).shape == (2, 576)

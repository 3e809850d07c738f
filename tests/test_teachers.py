"""Teachers for distillation: local-file ViT, run:, torchvision, torch.hub (DINOv2) and offline."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

import workbench as wb
from workbench.methods.distillation import Distillation, DistillationConfig
from workbench.nn.backbones import ViTBackbone
from workbench.nn.teachers import (
    DINOV2_MODELS,
    TeacherUnavailableError,
    dinov2_repo_dir,
    dinov2_weights_url,
    load_teacher,
)

FAST = dict(model="resnet18", batch_size=64, input_size=16)


def _tiny_vit(seed: int = 0, patch: int = 4) -> ViTBackbone:
    torch.manual_seed(seed)
    return ViTBackbone(16, patch, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)


def _frozen_and_eval(module: nn.Module) -> None:
    assert not module.training
    assert all(not p.requires_grad for p in module.parameters())


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- a ViT teacher from a local file: both methods train ----------------------------------------


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "tiny_vit.pt"
    torch.save(_tiny_vit(seed=1).state_dict(), path)
    return path


def test_module_teacher_with_local_weights_is_frozen(vit_file: Path) -> None:
    teacher, dim = load_teacher(_tiny_vit(seed=2), weights=str(vit_file))
    assert dim == 32 and teacher.patch_size == 4  # type: ignore[union-attr]
    _frozen_and_eval(teacher)
    assert _same_state(teacher.state_dict(), torch.load(vit_file))
    assert teacher(torch.zeros(3, 3, 16, 16)).shape == (3, 32)


@pytest.mark.slow  # 4 epochs x 2 methods: ~40 s on a quiet 2-core CPU
@pytest.mark.parametrize("method", ["distillation", "distillationv1"])
def test_both_methods_train_from_a_vit_teacher_file(
    method: str, vit_file: Path, digits_small: wb.ImageDataset, tmp_path: Path
) -> None:
    teacher, dim = load_teacher(_tiny_vit(seed=3), weights=str(vit_file))
    args = {"teacher": teacher, "teacher_dim": dim, "hidden_dim": 256}
    run = wb.train(
        digits_small, method=method, out=tmp_path / method, epochs=4, method_args=args, **FAST
    )
    assert run.status == "finished", run.events
    losses = [h["loss"] for h in run.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    assert _same_state(teacher.state_dict(), torch.load(vit_file))  # never trained
    _frozen_and_eval(teacher)
    student = wb.load_run(run.out).backbone
    assert student(torch.zeros(2, 3, 16, 16)).shape == (2, 512)
    exported = torch.load(run.backbone_path)
    assert _same_state(student.state_dict(), exported)
    assert not any(k.startswith(("teacher", "vit.")) for k in exported)  # teacher not exported


# --- run: ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_run(digits_small: wb.ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> wb.Run:
    out = tmp_path_factory.mktemp("runs") / "dino-vit"
    return wb.train(
        digits_small, method="dino", model="vit-tiny", out=out, epochs=1, max_steps=1,
        batch_size=16, input_size=16, val_fraction=0, transform_args={"local_count": 2},
    )  # fmt: skip


def test_run_teacher_is_the_exported_backbone(vit_run: wb.Run) -> None:
    teacher, dim = load_teacher(f"run:{vit_run.out}")
    assert dim == vit_run.config["feature_dim"] == 192
    assert teacher.patch_size == 4  # type: ignore[union-attr]
    _frozen_and_eval(teacher)
    assert _same_state(teacher.state_dict(), torch.load(vit_run.backbone_path))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(teacher(x), wb.load_run(vit_run.out).backbone(x), atol=1e-5)


def test_train_with_a_run_teacher_spec(
    vit_run: wb.Run, digits_small: wb.ImageDataset, tmp_path: Path
) -> None:
    args = {"teacher": f"run:{vit_run.out}", "hidden_dim": 128}
    run = wb.train(
        digits_small, method="distillation", out=tmp_path / "d", epochs=1, max_steps=2,
        method_args=args, val_fraction=0, **FAST,
    )  # fmt: skip
    assert run.status == "finished", run.events
    assert run.config["method_args"]["teacher"] == f"run:{vit_run.out}"
    assert _same_state(
        wb.load_run(vit_run.out).backbone.state_dict(), torch.load(vit_run.backbone_path)
    )


def test_run_teacher_errors(vit_run: wb.Run, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_teacher(f"run:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="drop teacher_weights"):
        load_teacher(f"run:{vit_run.out}", weights="x.pt")


# --- torchvision ------------------------------------------------------------------------------


def test_torchvision_teacher_from_local_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)  # full torchvision file, classifier included
    teacher, dim = load_teacher("torchvision:resnet18", weights=str(path))
    assert dim == 512 and isinstance(teacher.fc, nn.Identity)  # type: ignore[union-attr]
    _frozen_and_eval(teacher)
    ref.fc = nn.Identity()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(teacher(x), ref.eval()(x), atol=1e-6)
    # a classifier-free file (what workbench exports) loads too
    torch.save(ref.state_dict(), tmp_path / "headless.pth")
    again, _ = load_teacher("torchvision:resnet18", weights=str(tmp_path / "headless.pth"))
    assert _same_state(again.state_dict(), teacher.state_dict())


def test_torchvision_teacher_errors(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="do not fit torchvision 'resnet18'"):
        load_teacher("torchvision:resnet18", weights=str(tmp_path / "r34.pth"))
    with pytest.raises(ValueError, match="needs weights"):
        load_teacher("torchvision:resnet18")
    with pytest.raises(ValueError, match="Unknown torchvision model 'resnet19'"):
        load_teacher("torchvision:resnet19", weights="x.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_teacher("torchvision:resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="Valid names"):
        load_teacher("torchvision:resnet18", weights="IMAGENET_NOPE")


def test_unknown_specs_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown teacher 'dino-v3'.*run:<run folder>"):
        load_teacher("dino-v3")
    with pytest.raises(ValueError, match=r"Unknown DINOv2 teacher 'dinov2/vitx14'.*vitb14"):
        load_teacher("dinov2/vitx14")


# --- torch.hub: the real loading code, from a fake hub cache ----------------------------------

HUBCONF = textwrap.dedent(
    """
    import torch
    from workbench.nn.backbones import ViTBackbone

    dependencies = ["torch"]
    URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"


    def dinov2_vits14(pretrained=True, **kwargs):
        torch.manual_seed(123)
        model = ViTBackbone(28, 14, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
        model.embed_dim = 32
        if pretrained:  # as DINOv2's hubconf does: cached in <hub dir>/checkpoints
            model.load_state_dict(torch.hub.load_state_dict_from_url(URL, map_location="cpu"))
        return model
    """
)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub dir under a tmp TORCH_HOME; every network fetch fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    hub = tmp_path / "torch_home" / "hub"
    torch.hub.set_dir(str(hub))

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution (no network in tests)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    return hub


def _fake_dinov2_repo(hub: Path) -> Path:
    repo = hub / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(HUBCONF)
    assert repo == dinov2_repo_dir()
    return repo


def test_dinov2_from_hub_cache_runs_the_real_loading_code(
    hub_dir: Path, digits_small: wb.ImageDataset, tmp_path: Path
) -> None:
    _fake_dinov2_repo(hub_dir)
    pretrained = ViTBackbone(28, 14, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
    ckpt = hub_dir / "checkpoints" / "dinov2_vits14_pretrain.pth"
    ckpt.parent.mkdir()
    torch.save(pretrained.state_dict(), ckpt)
    assert dinov2_weights_url("vits14").endswith(ckpt.name)

    teacher, dim = load_teacher("dinov2/vits14")
    assert dim == 32 and teacher.patch_size == 14  # type: ignore[union-attr]
    _frozen_and_eval(teacher)
    assert _same_state(teacher.state_dict(), pretrained.state_dict())
    # the distillation method feeds it a multiple of the patch size, at least an 8x8 token grid
    student, sdim = wb.get_backbone("resnet18", input_size=16)
    method = Distillation(student, sdim, DistillationConfig(teacher="dinov2/vits14"), input_size=16)
    assert method.teacher_input_size == 8 * 14 and method.teacher_dim == 32
    cfg = DistillationConfig(teacher="dinov2/vits14", teacher_input_size=30)
    assert Distillation(student, sdim, cfg, input_size=16).teacher_input_size == 28
    # spatial by default: the patch tokens on the 8x8 grid (one block here: the ViT has one)
    assert method.teacher_features(torch.rand(2, 3, 16, 16)).shape == (2, 32, 8, 8)
    cfg = DistillationConfig(teacher="dinov2/vits14", spatial=False)
    pooled = Distillation(student, sdim, cfg, input_size=16)
    assert pooled.teacher_features(torch.rand(2, 3, 16, 16)).shape == (2, 32)
    # and through wb.train, by name
    run = wb.train(
        digits_small, method="distillation", out=tmp_path / "d", epochs=1, max_steps=2,
        method_args={"teacher": "dinov2/vits14", "hidden_dim": 64}, val_fraction=0, **FAST,
    )  # fmt: skip
    assert run.status == "finished", run.events


def test_dinov2_local_weights_skip_the_download(hub_dir: Path, tmp_path: Path) -> None:
    _fake_dinov2_repo(hub_dir)  # no checkpoints/: pretrained=True would need the network
    local = ViTBackbone(28, 14, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in local.state_dict().items()}}, path)
    teacher, dim = load_teacher("dinov2/vits14", weights=str(path))
    assert dim == 32
    assert _same_state(teacher.state_dict(), local.state_dict())
    with pytest.raises(TeacherUnavailableError, match=r"weights.*teacher_weights="):
        load_teacher("dinov2/vits14")  # cached code, no cached weights, offline


def test_offline_without_cache_says_how_to_supply_weights(hub_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TeacherUnavailableError) as err:
        load_teacher("dinov2/vitb14")
    msg = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert "offline" in msg and "teacher_weights=" in msg
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth" in msg
    assert str(hub_dir) in msg and "facebookresearch_dinov2_main" in msg
    assert "run:<run folder>" in msg
    # weights given but no code cached: the message says only the code is missing
    path = tmp_path / "w.pth"
    torch.save({}, path)
    with pytest.raises(TeacherUnavailableError, match="only the architecture is missing"):
        load_teacher("dinov2/vitb14", weights=str(path))
    with pytest.raises(FileNotFoundError, match="dinov2_vitb14_pretrain.pth"):
        load_teacher("dinov2/vitb14", weights=str(tmp_path / "missing.pth"))
    # a distillation config naming DINOv2 fails the same clear way
    student, sdim = wb.get_backbone("resnet18", input_size=16)
    with pytest.raises(TeacherUnavailableError, match="teacher_weights="):
        Distillation(student, sdim, DistillationConfig(teacher="dinov2"), input_size=16)


def test_dinov2_specs_cover_the_family() -> None:
    assert {"vits14", "vitb14", "vitl14", "vitg14"} <= set(DINOV2_MODELS)
    assert dinov2_weights_url("vitl14_reg").endswith(
        "dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"
    )

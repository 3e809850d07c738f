"""Engine decisions: world size, schedules, precision, clipping, normalisation, resume, devices.

Most tests stop ``wb.train`` right where the Trainer would start (``captured``): everything
``train`` decided is then on record without a single training step.
"""

import json
import math

import numpy as np
import pytest
import torch
from test_train import StopAfter
from torch import nn

import workbench as wb
from workbench.methods import METHODS, SimCLR

FAST = dict(model="resnet18", batch_size=64, input_size=16, epochs=2)


class TrainerReached(Exception):
    """Raised by the fake Trainer: ``train`` got as far as building it."""


@pytest.fixture
def captured(monkeypatch):
    """Record the SSLModule's and the Trainer's arguments; stop ``train`` at the Trainer."""
    import lightning

    from workbench.training import module as module_mod

    seen: dict = {}
    original_init = module_mod.SSLModule.__init__

    def module_init(self, method, **kw):
        seen["module"] = kw
        seen["method"] = method
        original_init(self, method, **kw)

    class FakeTrainer:
        def __init__(self, **kw):
            seen["trainer"] = kw
            raise TrainerReached

    monkeypatch.setattr(module_mod.SSLModule, "__init__", module_init)
    monkeypatch.setattr(lightning, "Trainer", FakeTrainer)
    return seen


def _until_trainer(ds, out, **kw):
    with pytest.raises(TrainerReached):
        wb.train(ds, out=out, **{**FAST, **kw})
    return json.loads((out / "config.json").read_text())


@pytest.fixture
def four_gpus(monkeypatch):
    """A machine with four CUDA GPUs of compute capability ``capability[0]`` (default 8.0)."""
    from lightning.fabric.accelerators import cuda as fabric_cuda
    from lightning.fabric.utilities import device_parser

    capability = [(8, 0)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability[0])
    monkeypatch.setattr(fabric_cuda, "num_cuda_devices", lambda: 4)
    monkeypatch.setattr(device_parser, "num_cuda_devices", lambda: 4, raising=False)
    return capability


# -- item 2: the world size comes from Lightning's device parsing ------------------------------


@pytest.mark.parametrize("devices", [-1, [0, 1, 2, 3], "4", "0,1,2,3"])
def test_world_size_scales_lr_and_shortens_schedules(
    devices, digits_small, tmp_path, captured, four_gpus
):
    cfg = _until_trainer(digits_small, tmp_path / "r", method="simclr", devices=devices)
    n_train, bs = cfg["num_train"], cfg["batch_size"]
    assert bs == 52  # ceil(205 images / 4 devices): reduced to the per-device share
    assert captured["module"]["lr"] == pytest.approx(SimCLR.base_lr["sgd"] * bs * 4 / 256)
    steps_per_epoch = math.ceil(n_train / 4) // bs
    assert captured["module"]["max_steps"] == 2 * steps_per_epoch == cfg["max_steps"]
    assert cfg["world_size"] == 4


def test_world_size_on_cpus_and_bad_devices():
    from workbench.training.api import world_size_for

    assert world_size_for("cpu", 2) == 2
    assert world_size_for("cpu", "3", num_nodes=2) == 6
    assert world_size_for("cpu", 1) == 1
    with pytest.raises(ValueError, match="devices="):
        world_size_for("cpu", "two")


# -- item 3: max_steps never stretches the schedules --------------------------------------------


def test_max_steps_beyond_the_epochs_keeps_the_real_schedule(digits_small, tmp_path, captured):
    cfg = _until_trainer(digits_small, tmp_path / "r", method="simclr", max_steps=1000)
    steps = 2 * (cfg["num_train"] // 64)  # 2 epochs of full batches
    assert captured["module"]["max_steps"] == steps == cfg["max_steps"]
    assert captured["module"]["warmup_steps"] <= steps


def test_schedule_is_resolved_from_the_steps_that_run():
    from workbench.training.api import resolve_schedule

    s = resolve_schedule(1000, 100, 1, epochs=5, max_steps=None, warmup_epochs=1.0)
    assert s == {"steps_per_epoch": 10, "max_steps": 50, "warmup_steps": 6}
    assert resolve_schedule(1000, 100, 1, 5, max_steps=20, warmup_epochs=1.0)["max_steps"] == 20
    assert resolve_schedule(1000, 100, 1, 5, max_steps=10**6, warmup_epochs=1)["max_steps"] == 50
    # 2 ranks: the sampler pads to ceil(1001 / 2) = 501 images each, 5 full batches of 100
    assert resolve_schedule(1001, 100, 2, 1, None, 1.0)["steps_per_epoch"] == 5
    with pytest.raises(ValueError, match="max_steps=0"):
        resolve_schedule(1000, 100, 1, 5, max_steps=0, warmup_epochs=1.0)


# -- item 4: DINO clips gradients at 3.0 and ramps the weight decay 10x -------------------------


def test_dino_clips_gradients_and_schedules_weight_decay(digits_small, tmp_path, captured):
    cfg = _until_trainer(digits_small, tmp_path / "r", method="dino")
    assert captured["trainer"].get("gradient_clip_val") == 3.0
    assert captured["trainer"]["gradient_clip_algorithm"] == "norm"
    assert cfg["grad_clip_norm"] == 3.0 == cfg["method_args"]["grad_clip_norm"]
    assert cfg["weight_decay_end"] == pytest.approx(10 * cfg["weight_decay"])
    assert captured["module"]["weight_decay_end"] == pytest.approx(cfg["weight_decay_end"])


def test_distillation_clips_at_one_and_simclr_not_at_all(digits_small, tmp_path, captured):
    teacher, _ = wb.get_backbone("resnet18", input_size=16)
    cfg = _until_trainer(
        digits_small, tmp_path / "d", method="distillation", method_args={"teacher": teacher}
    )
    assert captured["trainer"].get("gradient_clip_val") == 1.0 and cfg["grad_clip_norm"] == 1.0
    cfg = _until_trainer(digits_small, tmp_path / "s", method="simclr")
    assert captured["trainer"].get("gradient_clip_val") is None and cfg["grad_clip_norm"] is None


def test_weight_decay_follows_the_cosine():
    from workbench.training.module import cosine_between

    assert cosine_between(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_between(50, 100, 0.04, 0.4) == pytest.approx(0.22)
    assert cosine_between(100, 100, 0.04, 0.4) == pytest.approx(0.4)


# -- item 5: the monitor and embed() normalise exactly as training did --------------------------


def test_unnormalised_training_is_monitored_and_embedded_unnormalised(digits_small, tmp_path):
    run = wb.train(digits_small, out=tmp_path / "r", transform_args={"normalize": False},
                   max_steps=1, val_fraction=0.0, **{**FAST, "epochs": 1})  # fmt: skip
    assert run.config["mean"] == [0, 0, 0] and run.config["std"] == [1, 1, 1]
    assert run.config["normalize"] is False
    emb = wb.embed(run, digits_small.subset(np.arange(8)))
    from workbench.training.data import decode_to_tensor

    x = decode_to_tensor(digits_small, np.arange(8), 16).float() / 255.0  # what training saw
    with torch.no_grad():
        ref = run.backbone(x).flatten(1).numpy()
    np.testing.assert_allclose(emb.features, ref, rtol=1e-4, atol=1e-5)


def test_kNN_monitor_uses_the_training_normalisation(digits_small, tmp_path, captured, monkeypatch):
    from torchvision.transforms import v2

    from workbench.augment import MultiView
    from workbench.training import callbacks

    seen = {}
    original = callbacks.EvalSet.__init__

    def eval_init(self, bank, bank_labels, query, query_labels, mean, std):
        seen["mean"], seen["std"] = list(mean), list(std)
        original(self, bank, bank_labels, query, query_labels, mean, std)

    monkeypatch.setattr(callbacks.EvalSet, "__init__", eval_init)
    view = v2.Compose([v2.RandomResizedCrop(16), v2.ToImage(), v2.ToDtype(torch.float32, True)])
    _until_trainer(digits_small, tmp_path / "mv", transform_args=MultiView([("a", view)] * 2))
    assert seen == {"mean": [0, 0, 0], "std": [1, 1, 1]}  # no v2.Normalize in the user's views
    _until_trainer(digits_small, tmp_path / "off", transform_args={"normalize": False})
    assert seen == {"mean": [0, 0, 0], "std": [1, 1, 1]}
    cfg = _until_trainer(digits_small, tmp_path / "on")
    assert seen["mean"] == pytest.approx(cfg["mean"]) and cfg["mean"] != [0, 0, 0]


# -- item 6: resume continues the data order, the draws and the collapse baseline ---------------


class RecordingSimCLR(SimCLR):
    """Records a checksum of every batch's first view (data order and augmentation draws)."""

    seen: list[float] = []

    def training_step_loss(self, views, **kw):
        RecordingSimCLR.seen.append(round(float(views[0].double().sum()), 3))
        return super().training_step_loss(views, **kw)


def test_resume_continues_order_draws_and_baseline(digits_small, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "simclr", RecordingSimCLR)
    args = {**FAST, "method": "simclr", "num_workers": 0}
    RecordingSimCLR.seen = []
    straight = wb.train(digits_small, out=tmp_path / "a", **args)
    full = list(RecordingSimCLR.seen)
    per_epoch = straight.config["steps_per_epoch"]
    assert full[:per_epoch] != full[per_epoch:]  # each epoch has its own order and draws

    RecordingSimCLR.seen = []
    first = wb.train(digits_small, out=tmp_path / "b", callbacks=[StopAfter(per_epoch)], **args)
    assert first.status == "stopped" and RecordingSimCLR.seen == full[:per_epoch]
    from workbench.eval.collapse import BASELINE_KEYS

    baselines = {k: first.history[0][k] for k in BASELINE_KEYS}
    assert all(v is not None for v in baselines.values()), baselines
    RecordingSimCLR.seen = []
    resumed = wb.train(digits_small, out=tmp_path / "b", resume=True, **args)
    assert resumed.status == "finished"
    assert RecordingSimCLR.seen == full[per_epoch:]  # epoch 1's batches, not epoch 0's again
    # #16 item 5: one value of each baseline (std, ranks, kNN before step 1) across the resume
    for key, value in baselines.items():
        assert [h[key] for h in resumed.history] == [value, value], key


# -- item 1: a custom backbone reloads with its trained weights ---------------------------------


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)


def test_custom_backbone_reloads_trained_weights(digits_small, tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    run = wb.train(digits_small, out=tmp_path / "r", val_fraction=0.0,
                   **{**FAST, "model": net, "epochs": 1})  # fmt: skip
    assert run.config["model"] == "custom"
    loaded = wb.load_run(run.out).backbone.state_dict()
    exported = torch.load(run.backbone_path)
    assert set(loaded) == set(exported)
    for k in exported:
        torch.testing.assert_close(loaded[k], exported[k])
    assert not torch.equal(loaded["conv.weight"], initial["conv.weight"])  # trained, not initial


# -- item 8: the feature-size probe runs on the module's device ---------------------------------


def test_feature_probe_runs_on_the_modules_device():
    from workbench.nn.teachers import feature_dim_of

    net = TinyNet().to("meta")  # stands in for a module already on a GPU: no CPU inputs there
    assert wb.get_backbone(net, input_size=16)[1] == 8
    assert feature_dim_of(net, input_size=16) == 8


# -- item 9: native bf16 only; embed in float32 --------------------------------------------------


def test_auto_precision_uses_bf16_only_where_it_is_native(four_gpus):
    from workbench.training import api

    four_gpus[0] = (7, 0)  # V100: is_bf16_supported() says True, but bf16 is emulated
    assert api._resolve_device("gpu", 1, "auto")[2] == "16-mixed"
    four_gpus[0] = (7, 5)  # T4
    assert api._resolve_device("auto", 1, "auto")[2] == "16-mixed"
    four_gpus[0] = (8, 0)  # A100
    assert api._resolve_device("gpu", 1, "auto")[2] == "bf16-mixed"
    four_gpus[0] = (9, 0)  # H100
    assert api._resolve_device("gpu", 1, "auto")[2] == "bf16-mixed"


def test_embed_is_float32_by_default(monkeypatch):
    from workbench.eval import embedding

    calls = []
    real = torch.autocast

    def recording_autocast(device_type, *a, **kw):
        calls.append(kw.get("enabled", True))
        return real("cpu", enabled=False)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    cuda = torch.device("cuda")
    monkeypatch.setattr(embedding.torch.Tensor, "to", lambda self, *a, **k: self)
    net = TinyNet()
    monkeypatch.setattr(net, "to", lambda *a, **k: net)
    embedding.embed_tensors(net, [torch.rand(2, 3, 8, 8)], cuda)
    assert calls == [False]
    embedding.embed_tensors(net, [torch.rand(2, 3, 8, 8)], cuda, bf16=True)
    assert calls == [False, True]


# -- item 10: DINO's and the distillation head's logits are float32 under autocast --------------


def test_dino_and_distillation_heads_run_in_float32_under_autocast():
    from workbench.methods.distillation import Distillation
    from workbench.nn.heads import DINOProjectionHead

    head = DINOProjectionHead(32, 64, 16, 128)
    teacher, _ = wb.get_backbone("resnet18", input_size=16)
    student, dim = wb.get_backbone("resnet18", input_size=16)
    cfg = Distillation.make_config(teacher=teacher)
    dist = Distillation(student, dim, cfg, input_size=16)
    x = torch.randn(4, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(x).dtype == torch.float32
        assert dist.projection_head(torch.randn(4, dim)).dtype == torch.float32


# -- item 12: every rank draws its own augmentation parameters ----------------------------------


def test_batched_views_draw_per_rank_and_reproducibly():
    from workbench.augment.batched import BatchedViews

    rec = wb.recipe("simclr", input_size=16)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)

    def views(rank, epoch=0):
        aug = BatchedViews(rec, seed=0)
        aug.set_epoch(epoch, rank)
        torch.manual_seed(0)  # the default generator, alike on every rank
        return aug(images)[0]

    assert not torch.equal(views(0), views(1))
    torch.testing.assert_close(views(1), views(1))
    assert not torch.equal(views(0, epoch=0), views(0, epoch=1))


# -- item 14: MoCo keys with shuffled BatchNorm --------------------------------------------------


def test_moco_keys_use_shuffled_split_batchnorm():
    from workbench.methods.moco import MoCo

    torch.manual_seed(0)
    backbone, dim = wb.get_backbone("resnet18", input_size=16)
    moco = MoCo(backbone, dim, MoCo.make_config(), dataset_size=256)
    x = torch.randn(16, 3, 16, 16)

    def plain_keys(x):  # one BatchNorm batch: the keys' statistics are the queries'
        return moco.projection_head_momentum(moco.backbone_momentum(x).flatten(1))

    plain = plain_keys(x)
    keys = moco._key(x)
    assert keys.shape == plain.shape
    assert not torch.allclose(keys, plain, atol=1e-4)  # statistics from a shuffled half
    moco.backbone_momentum.eval()
    moco.projection_head_momentum.eval()
    torch.testing.assert_close(moco._key(x), plain_keys(x), atol=1e-5, rtol=1e-4)  # same order
    assert moco.criterion.gather_distributed  # under DDP all ranks' keys enter the queue


# -- item 15: the memory format is measured once per CPU model and torch version ---------------


def test_memory_format_is_measured_once_then_cached(tmp_path, monkeypatch):
    from workbench.training import memory_format as mf

    monkeypatch.setenv(mf.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def fake_measure(backbone, input_size, rounds=mf.ROUNDS):
        calls.append(input_size)
        return {"nchw_s": 0.10, "channels_last_s": 0.12}  # NCHW wins here (as on AMX)

    monkeypatch.setattr(mf, "measure_step_seconds", fake_measure)
    net = TinyNet()
    first = mf.choose_channels_last(net, "cpu", 16)
    assert first["source"] == "measured" and first["channels_last"] is False
    assert torch.__version__ in first["key"] and mf.cpu_model() in first["key"]
    again = mf.choose_channels_last(net, "cpu", 16)
    assert again["source"] == "cache" and again["channels_last"] is False and calls == [16]
    monkeypatch.setattr(torch, "__version__", "9.9.9")  # a new torch measures again
    assert mf.choose_channels_last(net, "cpu", 16)["source"] == "measured" and len(calls) == 2
    # The same model name with other units (an AVX2-only and an AVX-512 EPYC): measured again.
    other = "amx" if mf.cpu_kind() != "amx" else "avx2"
    monkeypatch.setattr(mf, "cpu_kind", lambda: other)
    assert mf.choose_channels_last(net, "cpu", 16)["source"] == "measured" and len(calls) == 3
    assert mf.choose_channels_last(net, "gpu", 16) == {"channels_last": True, "source": "rule"}
    assert mf.choose_channels_last(net, "cpu", 16, world_size=2)["source"] == "rule"
    assert json.loads((tmp_path / "cache" / mf.CACHE_FILE).read_text())  # the user's cache dir


def test_memory_format_measurement_is_real_and_leaves_the_rng(digits_small, tmp_path, captured):
    from workbench.training import memory_format as mf

    net = TinyNet()
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    times = mf.measure_step_seconds(net, 16, rounds=2)
    assert torch.equal(torch.rand(1), before)  # the run's seeding is untouched
    assert times["nchw_s"] > 0 and times["channels_last_s"] > 0
    cfg = _until_trainer(digits_small, tmp_path / "r")
    assert cfg["memory_format"]["source"] in ("measured", "cache")
    assert cfg["channels_last"] == cfg["memory_format"]["channels_last"]

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from workbench.data import load_dataset
from workbench.eval import Embeddings, embed
from workbench.eval.embedding import eval_transform, resolve_device


class SizeRecorder(nn.Module):
    """Tiny backbone that remembers the input shapes it saw."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def digits50():
    return load_dataset("digits").subset(range(50))


def test_embed_module_on_digits(digits50):
    model = SizeRecorder().train()
    emb = embed(model, digits50, batch_size=16)
    assert isinstance(emb, Embeddings) and len(emb) == 50
    assert emb.features.shape == (50, 6) and emb.features.dtype == np.float32
    np.testing.assert_array_equal(emb.labels, digits50.labels)
    assert emb.class_names == digits50.class_names and emb.paths == digits50.paths
    assert model.training, "the model's training mode must be restored"
    assert model.shapes[0] == (16, 3, 32, 32)  # digits' native 32 px, batches of 16
    assert emb.meta["input_size"] == 32 and emb.meta["device"] == "cpu"
    again = embed(model, digits50, batch_size=50)
    np.testing.assert_allclose(again.features, emb.features, atol=1e-5)
    # features really depend on the image: different digits, different vectors
    assert np.abs(emb.features[0] - emb.features[1]).max() > 1e-4


def test_embed_run_like_object_uses_its_config(digits50):
    class FakeRun:
        backbone = SizeRecorder()
        config = {"input_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
        out = "fake-run"

    progress = []
    emb = embed(FakeRun(), "shapes", batch_size=64, progress=lambda d, t: progress.append((d, t)))
    assert FakeRun.backbone.shapes[0][-2:] == (16, 16)
    assert emb.meta["mean"] == [0.5, 0.5, 0.5] and emb.meta["source"] == "run fake-run"
    assert progress[-1][0] == progress[-1][1] == len(emb)
    emb2 = embed(FakeRun(), digits50, input_size=24)  # explicit argument wins over the run's
    assert FakeRun.backbone.shapes[-1][-2:] == (24, 24) and len(emb2) == 50


def test_embed_from_pickled_module_file(tmp_path, digits50):
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.save(model, tmp_path / "model.pt")
    emb = embed(str(tmp_path / "model.pt"), digits50)
    np.testing.assert_allclose(emb.features, embed(model, digits50).features, atol=1e-5)


def test_embed_bad_sources(tmp_path, digits50):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="not an nn.Module.*load_state_dict"):
        embed(tmp_path / "sd.pt", digits50)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        embed(tmp_path / "missing.pt", digits50)
    with pytest.raises(ValueError, match="Cannot embed with a int"):
        embed(3, digits50)
    with pytest.raises(ValueError, match="batch_size"):
        embed(SizeRecorder(), digits50, batch_size=0)
    with pytest.raises(ValueError, match="Valid choices"):
        resolve_device("tpu")


def test_embed_with_dataloader_workers(digits50):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    ds = load_dataset("shapes", n=40)
    a = embed(model, ds, num_workers=2, batch_size=8)
    b = embed(model, ds, num_workers=0)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)
    t = pickle.loads(pickle.dumps(eval_transform(20)))
    assert t(ds[0][0]).shape == (3, 20, 20)


def test_eval_transform_resizes_and_centre_crops():
    from PIL import Image

    img = Image.new("RGB", (60, 30), (255, 0, 0))
    x = eval_transform(16, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x[0].min() == pytest.approx(1.0) and x[1].abs().max() == 0


def test_embeddings_save_load_roundtrip(tmp_path):
    e = Embeddings(
        np.arange(12, dtype=np.float64).reshape(4, 3),
        labels=np.array([0, 1, 1, 0]),
        paths=["a.png", "b.png", "c.png", "d.png"],
        class_names=["cat", "dog"],
        meta={"model": "x", "input_size": 32},
    )
    assert e.features.dtype == np.float32 and len(e) == 4 and e.dim == 3
    p = e.save(tmp_path / "emb")
    assert p.suffix == ".npz"
    back = Embeddings.load(p)
    np.testing.assert_array_equal(back.features, e.features)
    np.testing.assert_array_equal(back.labels, e.labels)
    assert back.paths == e.paths and back.class_names == e.class_names and back.meta == e.meta
    unl = Embeddings(np.ones((2, 3)), labels=np.array([-1, -1]))
    assert unl.labels is None and unl.paths == ["[0]", "[1]"]
    assert Embeddings.load(unl.save(tmp_path / "u.npz")).labels is None


def test_embeddings_validation(tmp_path):
    with pytest.raises(ValueError, match="5 feature rows but 4 labels"):
        Embeddings(np.ones((5, 2)), labels=np.zeros(4))
    with pytest.raises(ValueError, match="3 feature rows but 2 paths"):
        Embeddings(np.ones((3, 2)), paths=["a", "b"])
    with pytest.raises(ValueError, match="shape \\(N, D\\)"):
        Embeddings(np.ones(3))
    with pytest.raises(FileNotFoundError):
        Embeddings.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not an Embeddings archive"):
        Embeddings.load(tmp_path / "other.npz")


def test_random_init_like_rebuilds_the_weights_a_run_started_from(digits50):
    """The demo's and the explorer's random-init map is the backbone whose kNN the run recorded
    as knn_acc_init: the same architecture and, from the run's seed, the same weights."""
    from workbench.eval import random_init_like
    from workbench.training.api import resolve_config

    plan = resolve_config(digits50, model="resnet18", input_size=16, seed=3, epochs=1)
    start = {k: v.clone() for k, v in plan.backbone.state_dict().items()}
    rebuilt = random_init_like(plan.backbone, plan.config).state_dict()
    assert start.keys() == rebuilt.keys()
    assert all(torch.equal(start[k], rebuilt[k]) for k in start)
    other = random_init_like(plan.backbone, plan.config, seed=4).state_dict()
    assert not all(torch.equal(start[k], other[k]) for k in start)

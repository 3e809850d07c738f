import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.data import read_image
from workbench.data.images import ImageReadError


def test_digits_is_real_sklearn_data():
    ds = wb.load_dataset("digits")
    assert len(ds) == 1797
    img, label = ds[0]
    assert img.mode == "RGB" and img.size == (32, 32)
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.class_names == [str(i) for i in range(10)]
    assert label == ds.labels[0]
    assert wb.load_dataset("digits", image_size=16)[5][0].size == (16, 16)


def test_shapes_deterministic_and_label_by():
    a = wb.load_dataset("shapes", n=40, seed=3)
    b = wb.load_dataset("shapes", n=40, seed=3)
    c = wb.load_dataset("shapes", n=40, seed=4)
    assert all(np.array_equal(np.asarray(a[i][0]), np.asarray(b[i][0])) for i in range(40))
    assert not np.array_equal(np.asarray(a[0][0]), np.asarray(c[0][0]))
    by_color = wb.load_dataset("shapes", n=40, seed=3, label_by="color")
    assert np.array_equal(a.labels, np.array(a.meta["shape"]))
    assert np.array_equal(by_color.labels, np.array(a.meta["color"]))
    assert by_color.class_names[0] == "red" and a.class_names[0] == "circle"
    # the images are the same, only the label changes
    assert np.array_equal(np.asarray(a[7][0]), np.asarray(by_color[7][0]))
    with pytest.raises(ValueError, match="label_by='texture'"):
        wb.load_dataset("shapes", label_by="texture")


def test_shapes_colour_is_visible():
    ds = wb.load_dataset("shapes", n=60, seed=0, label_by="color", image_size=32)
    red = ds.class_names.index("red")
    blue = ds.class_names.index("blue")

    def redness(i):
        a = np.asarray(ds[i][0]).astype(float)
        return (a[..., 0] - a[..., 2]).max()

    reds = [redness(i) for i in range(60) if ds.labels[i] == red]
    blues = [redness(i) for i in range(60) if ds.labels[i] == blue]
    assert min(reds) > max(blues)


def test_photos():
    ds = wb.load_dataset("photos")
    assert len(ds) == 2 and ds.labels is None
    assert ds[0][1] == -1 and ds[0][0].mode == "RGB" and max(ds[0][0].size) == 640


def _make_images(root: Path) -> None:
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "deeper").mkdir(parents=True)
    Image.new("RGB", (20, 30), "red").save(root / "cats" / "a.jpg")
    Image.new("L", (40, 40), 128).save(root / "cats" / "gray.png")
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(root / "dogs" / "rgba.png")
    Image.new("P", (16, 16)).save(root / "dogs" / "palette.gif")
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    Image.fromarray(arr).save(root / "dogs" / "sixteen.png")
    Image.new("CMYK", (24, 24), (0, 255, 0, 0)).save(root / "dogs" / "deeper" / "cmyk.jpg")
    Image.new("RGB", (5, 5), "green").save(root / "dogs" / "tiny.bmp")
    # bad files
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "cats" / "notes.png").write_text("this is not an image")
    good = root / "cats" / "a.jpg"
    data = good.read_bytes()
    (root / "dogs" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "dogs" / "readme.txt").write_text("hello")


def test_folder_mixed_good_and_bad(tmp_path):
    _make_images(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.warns(UserWarning, match="could not be read") as rec:
        ds = wb.load_dataset(tmp_path)
    assert len(rec) == 1  # one warning listing every bad file
    assert len(ds) == 7
    assert ds.class_names == ["cats", "dogs"]
    assert sorted(np.unique(ds.labels).tolist()) == [0, 1]
    reasons = {Path(s.path).name: s.reason for s in ds.skipped}
    assert set(reasons) == {"empty.jpg", "notes.png", "truncated.jpg", "readme.txt"}
    assert "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    for i in range(len(ds)):
        img, _ = ds[i]
        assert img.mode == "RGB"
    # RGBA transparent pixels composite on white; 16-bit is rescaled, not clipped
    rgba = ds[[Path(p).name for p in ds.paths].index("rgba.png")][0]
    assert np.asarray(rgba)[0, 0].tolist() == [255, 255, 255]
    sixteen = np.asarray(ds[[Path(p).name for p in ds.paths].index("sixteen.png")][0])
    assert sixteen.max() == 255 and sixteen.min() == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_unlabelled_folder_and_path_list(tmp_path):
    for i in range(3):
        Image.new("RGB", (10, 10), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    ds = wb.load_dataset(tmp_path)
    assert ds.labels is None and len(ds) == 3 and ds[0][1] == -1
    ds2 = wb.load_dataset([tmp_path / "0.png", str(tmp_path / "2.png")])
    assert len(ds2) == 2


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        wb.load_dataset(str(missing))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        wb.load_dataset([tmp_path / "nope.png"])


def test_empty_folder_lists_extensions(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.jpg.*\.png") as e:
        wb.load_dataset(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="digitz") as e:
        wb.load_dataset("digitz")
    assert "digits" in str(e.value) and "shapes" in str(e.value)


def test_large_image_decoded_at_reduced_size(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (8000, 8000), (10, 200, 30)).save(big, quality=50)
    import tracemalloc

    tracemalloc.start()
    img = read_image(big, max_side=1024)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(img.size) <= 1024
    assert peak < 100 * 1024**2  # full decode would be 192 MB
    png = tmp_path / "big.png"
    Image.new("RGB", (3000, 1000), "blue").save(png)
    assert read_image(png, max_side=512).size == (512, 171)


def test_small_image_works_with_large_crop(tmp_path):
    Image.new("RGB", (5, 5), "green").save(tmp_path / "tiny.png")
    ds = wb.load_dataset(tmp_path)
    from workbench.training.data import square_uint8

    assert square_uint8(ds[0][0], 32).shape == (3, 32, 32)


def test_read_image_reasons(tmp_path):
    p = tmp_path / "zero.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(p)
    q = tmp_path / "bogus.jpg"
    q.write_bytes(struct.pack("<4I", 1, 2, 3, 4))
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(q)


def test_torchvision_missing_root_is_actionable(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        wb.load_dataset(f"cifar10:{tmp_path}")


def test_torchvision_dataset_from_local_files(tmp_path):
    # MNIST's raw idx format written by hand: the real torchvision loader reads it.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = (np.arange(5 * 28 * 28) % 255).astype(np.uint8).reshape(5, 28, 28)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, 5, 28, 28) + imgs.tobytes()
        )
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, 5) + labels.tobytes()
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = wb.load_dataset(f"mnist:{tmp_path}")
    assert len(ds) == 5 and ds.labels.tolist() == [3, 1, 4, 1, 5]
    assert ds[0][0].mode == "RGB" and ds[0][0].size == (28, 28)


def test_stratified_split_keeps_proportions():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = wb.stratified_split(labels, val_fraction=0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert np.bincount(labels[va]).tolist() == [10, 6, 4]
    tr2, va2 = wb.stratified_split(labels, val_fraction=0.2, seed=0)
    assert np.array_equal(va, va2)
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        wb.stratified_split(labels, val_fraction=1.5)

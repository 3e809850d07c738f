import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import workbench as wb
from workbench.augment import (
    INVARIANCES,
    METHOD_NAMES,
    MultiView,
    RandomRotation90,
    Recipe,
    ViewSpec,
    describe_params,
    make_transform,
    recipe,
    sample_views,
)
from workbench.augment.recipes import EDITABLE_FIELDS
from workbench.augment.transforms import blur_kernel_size, torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # tiny images: intra-op threads only contend on a busy 2-core machine (see torch_threads)
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def img() -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    arr[:30] //= 3  # some structure: a dark top half
    return Image.fromarray(arr, "RGB")


# The issue's defaults table: per group (count, size, crop_scale, cj_prob, cj base
# (b, c, s, h), cj_strength, gray, blur, solarize). All groups: hflip 0.5, blur sigma (0.1, 2).
SIMCLR_CJ = (0.8, 0.8, 0.8, 0.2)
MOCO_CJ = (0.4, 0.4, 0.4, 0.1)
BYOL_CJ = (0.4, 0.4, 0.2, 0.1)
DINO_CJ = (0.8, 0.8, 0.4, 0.2)
TABLE = {
    "simclr": {"view": (2, 224, (0.08, 1.0), 0.8, SIMCLR_CJ, 1.0, 0.2, 0.5, 0.0)},
    "moco": {"view": (2, 224, (0.2, 1.0), 0.8, MOCO_CJ, 1.0, 0.2, 0.5, 0.0)},
    "simsiam": {"view": (2, 224, (0.2, 1.0), 0.8, MOCO_CJ, 1.0, 0.2, 0.5, 0.0)},
    "byol": {
        "view1": (1, 224, (0.08, 1.0), 0.8, BYOL_CJ, 1.0, 0.2, 1.0, 0.0),
        "view2": (1, 224, (0.08, 1.0), 0.8, BYOL_CJ, 1.0, 0.2, 0.1, 0.2),
    },
    "barlowtwins": {
        "view1": (1, 224, (0.08, 1.0), 0.8, BYOL_CJ, 1.0, 0.2, 1.0, 0.0),
        "view2": (1, 224, (0.08, 1.0), 0.8, BYOL_CJ, 1.0, 0.2, 0.1, 0.2),
    },
    "vicreg": {"view": (2, 224, (0.08, 1.0), 0.8, DINO_CJ, 0.5, 0.2, 0.5, 0.1)},
    "dino": {
        "global1": (1, 224, (0.4, 1.0), 0.8, DINO_CJ, 0.5, 0.2, 1.0, 0.0),
        "global2": (1, 224, (0.4, 1.0), 0.8, DINO_CJ, 0.5, 0.2, 0.1, 0.2),
        "local": (6, 96, (0.05, 0.4), 0.8, DINO_CJ, 0.5, 0.2, 0.5, 0.0),
    },
    "distillation": {"view": (1, 224, (0.14, 1.0), 0.8, DINO_CJ, 0.5, 0.2, 1.0, 0.0)},
    "distillationv1": {"view": (1, 224, (0.14, 1.0), 0.8, DINO_CJ, 0.5, 0.2, 1.0, 0.0)},
}


def test_every_method_has_a_table_row() -> None:
    assert sorted(TABLE) == sorted(METHOD_NAMES)


@pytest.mark.parametrize("method", sorted(TABLE))
def test_defaults_table(method: str) -> None:
    rec = recipe(method)
    assert [g.name for g in rec.groups] == list(TABLE[method])
    for g in rec.groups:
        count, size, scale, cj_prob, base, strength, gray, blur, sol = TABLE[method][g.name]
        assert (g.count, g.size, g.crop_scale) == (count, size, scale)
        assert g.cj_prob == cj_prob
        assert (g.cj_brightness, g.cj_contrast, g.cj_saturation, g.cj_hue) == base
        assert g.cj_strength == strength
        assert (g.gray_prob, g.blur_prob, g.solarize_prob) == (gray, blur, sol)
        assert g.hflip_prob == 0.5
        assert (g.vflip_prob, g.rr_prob, g.rotation_prob) == (0.0, 0.0, 0.0)
        assert g.blur_sigma == (0.1, 2.0)
        assert g.crop_ratio == (3 / 4, 4 / 3)
        assert g.solarize_threshold == 0.5
        assert g.kind == ("local" if g.name == "local" else "global")
    assert rec.mean == (0.485, 0.456, 0.406) and rec.std == (0.229, 0.224, 0.225)
    assert rec.normalize is True


def test_distillationv1_is_distillation() -> None:
    assert recipe("distillationv1").groups == recipe("distillation").groups


def test_view_names_and_sizes() -> None:
    rec = recipe("dino")
    assert rec.n_views == 8
    assert rec.view_names == ["global1", "global2"] + ["local"] * 6
    assert rec.view_sizes == [224, 224] + [96] * 6
    assert recipe("simclr").view_names == ["view", "view"]
    assert recipe("byol").view_names == ["view1", "view2"]
    assert recipe("distillation").n_views == 1


@pytest.mark.parametrize("method", sorted(TABLE))
def test_transform_views_count_size_dtype(method: str, img: Image.Image) -> None:
    t = make_transform(method, input_size=32)
    views = t(img)
    assert len(views) == t.recipe.n_views == len(t)
    assert t.view_names == t.recipe.view_names
    for v, size in zip(views, t.recipe.view_sizes):
        assert isinstance(v, torch.Tensor)
        assert v.dtype == torch.float32
        assert tuple(v.shape) == (3, size, size)
    assert all(torch.isfinite(v).all() for v in views)


def test_full_size_dino_views(img: Image.Image) -> None:
    views = make_transform("dino")(img)
    assert [tuple(v.shape) for v in views] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 6


def test_views_are_normalised_unless_disabled(img: Image.Image) -> None:
    plain = make_transform("simclr", input_size=32, normalize=False)(img)
    assert all(0.0 <= float(v.min()) and float(v.max()) <= 1.0 for v in plain)
    normed = make_transform("simclr", input_size=32, cj_prob=0.0, gray_prob=0.0)(img)
    assert min(float(v.min()) for v in normed) < -0.5  # (0 - 0.485) / 0.229 ~ -2.1 reachable


def test_overrides_apply_everywhere_and_per_group() -> None:
    rec = recipe("byol", cj_prob=0.0, view2_solarize_prob=0.5, rr_prob=0.25)
    assert [g.cj_prob for g in rec.groups] == [0.0, 0.0]
    assert [g.rr_prob for g in rec.groups] == [0.25, 0.25]
    assert [g.solarize_prob for g in rec.groups] == [0.0, 0.5]
    # a group key wins over the same field for every group
    rec = recipe("dino", blur_prob=0.3, global1_blur_prob=0.9, local_count=4)
    assert [g.blur_prob for g in rec.groups] == [0.9, 0.3, 0.3]
    assert rec.n_views == 6
    assert recipe("simclr", count=4).n_views == 4
    assert recipe("dino", local_count=0).view_names == ["global1", "global2"]
    rec = recipe("simclr", crop_scale=[0.3, 0.9], mean=[0.5, 0.5, 0.5], std=(0.2, 0.2, 0.2))
    assert rec.groups[0].crop_scale == (0.3, 0.9)
    assert rec.mean == (0.5, 0.5, 0.5) and rec.std == (0.2, 0.2, 0.2)


def test_issue_example_overrides(img: Image.Image) -> None:
    t = wb.make_transform("simclr", input_size=128, cj_prob=0.0, rr_prob=0.5)
    g = t.recipe.groups[0]
    assert (g.size, g.cj_prob, g.rr_prob) == (128, 0.0, 0.5)
    assert [tuple(v.shape) for v in t(img)] == [(3, 128, 128)] * 2


@pytest.mark.parametrize(
    ("input_size", "local"), [(224, 96), (128, 55), (64, 27), (32, 14), (16, 8)]
)
def test_input_size_scales_local_crops(input_size: int, local: int) -> None:
    rec = recipe("dino", input_size=input_size, local_count=6)  # <= 64 px drops them by default
    assert rec.view_sizes == [input_size] * 2 + [local] * 6


def test_input_size_keeps_explicit_local_size() -> None:
    rec = recipe("dino", input_size=128, local_size=64)
    assert rec.view_sizes == [128, 128] + [64] * 6
    assert recipe("simclr", input_size=96).view_sizes == [96, 96]


def test_make_transform_accepts_a_recipe_and_overrides() -> None:
    base = recipe("dino", local_count=2)
    t = make_transform(base, input_size=64)
    assert t.recipe.view_sizes == [64, 64, 27, 27]
    assert make_transform(base).recipe is base


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"Unknown method 'simclrr'.*'simclr'"):
        recipe("simclrr")
    with pytest.raises(ValueError, match="dino"):
        make_transform("nope")
    with pytest.raises(ValueError, match="method name or a Recipe"):
        make_transform(3)  # type: ignore[arg-type]


def test_unknown_override_names_key_and_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'cj_prb'.*Did you mean.*'cj_prob'") as err:
        recipe("simclr", cj_prb=0.5)
    assert "input_size" in str(err.value) and "hflip_prob" in str(err.value)
    with pytest.raises(ValueError, match=r"'local_count'.*\['view'\]"):
        recipe("simclr", local_count=2)
    with pytest.raises(ValueError, match="name"):
        recipe("simclr", name="x")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cj_prob": 1.5}, "cj_prob"),
        ({"view2_solarize_prob": -0.1}, "solarize_prob"),
        ({"hflip_prob": "often"}, "hflip_prob"),
        ({"crop_scale": (0.9, 0.2)}, "crop_scale"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"crop_scale": 0.5}, "crop_scale"),
        ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"),
        ({"blur_sigma": (2.0, 0.1)}, "blur_sigma"),
        ({"size": 4}, "size"),
        ({"size": 32.5}, "size"),
        ({"input_size": 4}, "input_size"),
        ({"local_count": -1}, "count"),
        ({"global1_count": 0}, "count"),
        ({"cj_hue": 0.6}, "cj_hue"),
        ({"cj_strength": -1.0}, "cj_strength"),
        ({"rotation_degrees": 270.0}, "rotation_degrees"),
        ({"solarize_threshold": 2.0}, "solarize_threshold"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"normalize": "yes"}, "normalize"),
    ],
)
def test_invalid_values_name_the_field(overrides: dict, field: str) -> None:
    method = "dino" if any(k.startswith(("local", "global")) for k in overrides) else "byol"
    with pytest.raises(ValueError, match=field):
        recipe(method, **overrides)


def test_local_group_may_be_empty_but_not_global() -> None:
    assert recipe("dino", local_count=0).n_views == 2
    with pytest.raises(ValueError, match="count >= 1"):
        ViewSpec(name="g", kind="global", count=0)
    with pytest.raises(ValueError, match="kind"):
        ViewSpec(kind="medium")


def test_to_dict_from_dict_roundtrip_through_json() -> None:
    rec = recipe("dino", input_size=64, local_count=3, global2_solarize_prob=0.4, normalize=False)
    d = json.loads(json.dumps(rec.to_dict()))
    assert Recipe.from_dict(d) == rec
    with pytest.raises(ValueError, match="colour"):
        Recipe.from_dict({**d, "colour": 1})
    with pytest.raises(ValueError, match="cj_probability"):
        Recipe.from_dict({**d, "groups": [{**d["groups"][0], "cj_probability": 0.1}]})


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("simclr", {}),
        ("simclr", {"cj_prob": 0.0, "rr_prob": 0.5, "input_size": 128}),
        ("dino", {"input_size": 128}),
        ("dino", {"input_size": 96, "local_size": 40, "local_count": 2}),
        ("dino", {"global1_blur_prob": 0.5, "solarize_threshold": 0.6}),
        ("byol", {"view2_solarize_prob": 0.0, "crop_scale": (0.2, 0.9), "normalize": False}),
        ("vicreg", {"size": 64, "mean": (0.5, 0.5, 0.5)}),
    ],
)
def test_overrides_rebuild_the_recipe(method: str, overrides: dict) -> None:
    rec = recipe(method, **overrides)
    assert recipe(method, **rec.overrides()) == rec
    code = rec.to_code()
    ns: dict = {"wb": wb}
    exec(f"t = {code}", ns)
    assert ns["t"].recipe == rec


def test_overrides_are_compact() -> None:
    assert recipe("simclr").overrides() == {}
    assert recipe("dino", input_size=128).overrides() == {"input_size": 128}
    assert recipe("byol", cj_prob=0.5).overrides() == {"cj_prob": 0.5}
    assert recipe("byol", view2_blur_prob=0.3).overrides() == {"view2_blur_prob": 0.3}
    assert recipe("dino").to_code() == "wb.make_transform('dino')"


def test_seed_makes_views_reproducible_and_leaves_global_rng(img: Image.Image) -> None:
    t = make_transform("dino", input_size=32)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, pa = t.call_with_params(img, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # caller's random state untouched
    b, pb = t.call_with_params(img, seed=7)
    c, _ = t.call_with_params(img, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and pa == pb
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("method", ["simclr", "byol", "dino", "vicreg"])
def test_params_replay_matches_plain_torchvision(method: str, img: Image.Image) -> None:
    # call_with_params(seed=None) walks the same v2 ops as __call__ (v2.Compose): same output
    t = make_transform(method, input_size=24, rr_prob=0.5, rotation_prob=0.5, vflip_prob=0.5)
    for s in range(3):
        torch.manual_seed(s)
        plain = t(img)
        torch.manual_seed(s)
        replay, params = t.call_with_params(img)
        assert all(torch.equal(x, y) for x, y in zip(plain, replay))
        assert [p["name"] for p in params] == t.view_names


def test_sampled_params_are_reported(img: Image.Image) -> None:
    t = make_transform(
        "simclr", input_size=24, crop_scale=(0.2, 0.5), cj_prob=0.0, solarize_prob=1.0
    )
    _, params = t.call_with_params(img, seed=0)
    for view in params:
        ops = {r["op"]: r for r in view["ops"]}
        assert "ColorJitter" not in ops  # probability 0: the op is not even in the pipeline
        assert ops["RandomSolarize"]["applied"] is True
        crop = ops["RandomResizedCrop"]
        assert 0.2 * 0.97 <= crop["area"] <= 0.5 * 1.03
        assert 3 / 4 * 0.95 <= crop["aspect"] <= 4 / 3 * 1.05
    lines = describe_params(params[0])
    assert lines[0].startswith("crop ") and "sol" in lines[-1]


def test_per_op_seeds_isolate_one_op(img: Image.Image) -> None:
    # In previews each op has its own seeded stream, so switching one op on changes only it:
    # a flip probability of 1 gives exactly the mirrored view of the same crop.
    base = dict(input_size=24, cj_prob=0.0, gray_prob=0.0, blur_prob=0.0, normalize=False)
    v0, _ = make_transform("simclr", hflip_prob=0.0, **base).call_with_params(img, seed=3)
    v1, _ = make_transform("simclr", hflip_prob=1.0, **base).call_with_params(img, seed=3)
    assert all(torch.equal(a.flip(-1), b) for a, b in zip(v0, v1))
    v2_, _ = make_transform("simclr", hflip_prob=0.0, rr_prob=1.0, **base).call_with_params(
        img, seed=3
    )
    assert all(
        any(torch.equal(torch.rot90(a, k, dims=(1, 2)), b) for k in (1, 2, 3))
        for a, b in zip(v0, v2_)
    )


def test_grayscale_and_solarize_effects(img: Image.Image) -> None:
    off = dict(input_size=24, cj_prob=0.0, blur_prob=0.0, normalize=False)
    for v in make_transform("simclr", gray_prob=1.0, **off)(img):
        assert torch.allclose(v[0], v[1]) and torch.allclose(v[1], v[2])
    for v in make_transform("simclr", gray_prob=0.0, solarize_prob=1.0, **off)(img):
        assert float(v.max()) <= 0.5 + 1e-6  # every pixel >= 0.5 was inverted


def test_random_rotation90_is_exact() -> None:
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).view(2, 5, 5)
    rot = RandomRotation90()
    for _ in range(10):
        params = rot.make_params([x])
        k = params["angle"] // 90
        assert k in (1, 2, 3)
        assert torch.equal(rot.transform(x, params), torch.rot90(x, k, dims=(1, 2)))


def test_blur_kernel_covers_three_sigma_and_fits() -> None:
    assert blur_kernel_size(2.0, 224) == 13
    assert blur_kernel_size(2.0, 8) == 13 and blur_kernel_size(10.0, 8) == 15
    for sigma in (0.1, 1.0, 2.0, 5.0):
        for size in (8, 27, 224):
            k = blur_kernel_size(sigma, size)
            assert k % 2 == 1 and k // 2 < size


def test_user_composed_multiview(img: Image.Image) -> None:
    norm = v2.Normalize([0.5] * 3, [0.25] * 3)
    big = v2.Compose(
        [v2.RandomResizedCrop(32), v2.ToImage(), v2.ToDtype(torch.float32, True), norm]
    )
    small = v2.Compose([v2.RandomResizedCrop(16), v2.ToImage(), v2.ToDtype(torch.float32, True)])
    mv = MultiView([("big", big), ("big", big), ("small", small)])
    views = mv(img)
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)]
    assert mv.view_names == ["big", "big", "small"]
    assert mv.mean == (0.5, 0.5, 0.5) and mv.std == (0.25, 0.25, 0.25)
    a, pa = mv.call_with_params(img, seed=1)
    b, _ = mv.call_with_params(img, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert pa[0]["ops"][0]["op"] == "RandomResizedCrop"
    with pytest.raises(ValueError, match="at least one"):
        MultiView([])
    with pytest.raises(ValueError, match="not callable"):
        MultiView([("a", 3)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"\(name: str, callable\)"):
        MultiView([big])  # type: ignore[list-item]


def test_transform_pickles_for_dataloader_workers(img: Image.Image) -> None:
    t = make_transform("dino", input_size=32, rr_prob=0.5)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.recipe == t.recipe
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t2(img)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_transform_accepts_uint8_tensors(img: Image.Image) -> None:
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    views = make_transform("byol", input_size=24)(x)
    assert [tuple(v.shape) for v in views] == [(3, 24, 24)] * 2


def test_invariance_families_cover_every_augmentation_field() -> None:
    assert list(INVARIANCES) == ["shape", "texture", "colour"]
    covered = [f for ops in INVARIANCES.values() for op in ops for f in op.fields]
    expected = [f for f in EDITABLE_FIELDS if f not in ("count", "size")]
    assert sorted(covered) == sorted(expected)
    for ops in INVARIANCES.values():
        for op in ops:
            assert op.help and "\n" not in op.help


def test_recipe_invariance_groups_follow_the_recipe() -> None:
    simclr = {f: [op.name for op in ops] for f, ops in recipe("simclr").invariance_groups().items()}
    assert "solarization" not in simclr["colour"] and "vertical flip" not in simclr["shape"]
    assert {"random resized crop", "horizontal flip"} <= set(simclr["shape"])
    assert simclr["texture"] == ["gaussian blur"]
    byol = recipe("byol").invariance_groups()
    assert "solarization" in [op.name for op in byol["colour"]]
    none = recipe("simclr", cj_prob=0.0, gray_prob=0.0).invariance_groups()
    assert none["colour"] == []


def test_sample_views_rows(img: Image.Image) -> None:
    rows = sample_views([img, img.convert("L")], "dino", n_views=3, seed=0)
    assert len(rows) == 2
    assert rows[0].names == ["global1", "global2", "local"]
    assert rows[0].kinds == ["global", "global", "local"]
    assert [v.shape for v in rows[0].views] == [(224, 224, 3), (224, 224, 3), (96, 96, 3)]
    assert rows[0].views[0].dtype == np.uint8 and rows[0].original.shape == (60, 80, 3)
    with pytest.raises(ValueError, match="n_views"):
        sample_views([img], "simclr", n_views=0)


def test_blur_sigma_scales_with_input_size() -> None:
    r = wb.recipe("simclr", input_size=32)
    assert r.groups[0].blur_sigma == pytest.approx((0.1 * 32 / 224, 2.0 * 32 / 224))
    d = wb.recipe("dino", input_size=112)
    local = d.group("local")
    assert local.blur_sigma == pytest.approx((0.1 * local.size / 96, 2.0 * local.size / 96))
    explicit = wb.recipe("simclr", input_size=32, blur_sigma=(0.5, 1.0))
    assert explicit.groups[0].blur_sigma == (0.5, 1.0)
    assert wb.recipe("simclr", **r.overrides()) == r
    assert wb.recipe("simclr", **explicit.overrides()) == explicit


@pytest.mark.parametrize("method", sorted(wb.list_methods()))
def test_small_image_profile(method: str) -> None:
    """At <= 64 px every method drops blur; SimCLR halves colour strength (B.9), DINO drops
    its local crops."""
    small = wb.recipe(method, input_size=32)
    large = wb.recipe(method, input_size=96)
    assert all(g.blur_prob == 0.0 for g in small.groups)
    assert [g.blur_prob for g in large.groups] == [g.blur_prob for g in wb.recipe(method).groups]
    expected_cj = 0.5 if method == "simclr" else wb.recipe(method).groups[0].cj_strength
    assert small.groups[0].cj_strength == expected_cj
    expected_views = 2 if method == "dino" else wb.recipe(method).n_views
    assert small.n_views == expected_views
    assert large.n_views == wb.recipe(method).n_views
    # Explicit keys win, and "Copy as code" still round-trips.
    kept = wb.recipe(method, input_size=32, blur_prob=0.3, cj_strength=1.0)
    assert all(g.blur_prob == 0.3 and g.cj_strength == 1.0 for g in kept.groups)
    for r in (small, kept):
        assert wb.recipe(method, **r.overrides()) == r
    if method == "dino":  # the user can still ask for local crops at 32 px
        multi = wb.recipe(method, input_size=32, local_count=6)
        assert multi.view_sizes == [32, 32] + [14] * 6
        assert wb.recipe(method, **multi.overrides()) == multi

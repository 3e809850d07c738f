"""Frozen teachers for distillation: DINOv2 via torch.hub, earlier runs, torchvision, any module.

A teacher maps images (B, 3, H, W) to features (B, D) (the CLS token or pooled features). Every
teacher returned by :func:`load_teacher` is frozen (``requires_grad=False``), in eval mode, and
keeps its ``patch_size`` attribute when it has one, so the distillation method can resize its
input to a multiple of it (DINOv2: 14).
Spatial distillation reads the teacher's feature map instead, through
:func:`workbench.nn.backbones.feature_map` (the ViTs' ``get_intermediate_layers``, a CNN's map
before its global pool).

Specs:

- ``"dinov2/vits14" | "dinov2/vitb14" | "dinov2/vitl14" | "dinov2/vitg14"`` (and the ``_reg``
  variants) through ``torch.hub.load("facebookresearch/dinov2", ...)`` [0], the real loading
  code; ``weights=<file>`` loads a local state dict instead of downloading the weights.
- ``"run:<run folder>"``: the exported backbone of an earlier ``wb.train`` run.
- ``"torchvision:<name>"``: a torchvision classification model without its classifier, with a
  local weights file (or a torchvision weights name such as ``"DEFAULT"``, downloaded once).
- An ``nn.Module`` (``feature_dim`` measured with one forward pass when None).

:func:`teacher_normalization` says which input normalisation each teacher was trained with.

- [0]: DINOv2, 2023, https://arxiv.org/abs/2304.07193, https://github.com/facebookresearch/dinov2
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.augment.recipes import IMAGENET_MEAN, IMAGENET_STD
from workbench.nn.utils import module_device

DINOV2_REPO = "facebookresearch/dinov2"
DINOV2_REF = "main"  # the repo's default branch; naming it skips torch.hub's network probe
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
# spec suffix -> feature dim (the CLS token width)
DINOV2_MODELS: dict[str, int] = {
    "vits14": 384,
    "vitb14": 768,
    "vitl14": 1024,
    "vitg14": 1536,
    "vits14_reg": 384,
    "vitb14_reg": 768,
    "vitl14_reg": 1024,
    "vitg14_reg": 1536,
}
DEFAULT_DINOV2 = "dinov2/vitb14"


class TeacherUnavailableError(RuntimeError):
    """A named teacher cannot be loaded here (offline, not cached); the message says what to do."""


def list_teachers() -> dict[str, str]:
    """Teacher specs with a one-line description."""
    out = {
        f"dinov2/{k}": f"DINOv2 ViT ({d}-d, patch 14), torch.hub" for k, d in DINOV2_MODELS.items()
    }
    out["run:<run folder>"] = "the exported backbone of an earlier wb.train run"
    out["torchvision:<model name>"] = "a torchvision classifier without its head (local weights)"
    return out


def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter and switch to eval mode."""
    for p in module.parameters():
        p.requires_grad = False
    return module.eval()


def feature_dim_of(module: nn.Module, input_size: int = 224) -> int:
    """Measure a module's feature size with one forward pass on zeros (B=2)."""
    size = int(getattr(module, "image_size", 0) or input_size)
    patch = getattr(module, "patch_size", None)
    if isinstance(patch, int) and patch > 1:
        size = math.ceil(size / patch) * patch
    was = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(2, 3, size, size, device=module_device(module)))
    module.train(was)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"Teacher {type(module).__name__} returned {type(out).__name__}, not a tensor of "
            "features (B, D). Wrap it in an nn.Module whose forward returns the pooled/CLS "
            "features."
        )
    return int(out.flatten(1).shape[1])


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file: a state dict, or a checkpoint holding one.

    Checkpoints wrapping the weights under ``state_dict``, ``model``, ``teacher`` or
    ``backbone`` are unwrapped, and the ``module.`` (DDP) and ``backbone.`` prefixes shared by
    every key are removed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file does not hold a state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Teacher weights file {str(path)!r} does not exist. Pass the path of a local "
            "state dict (.pt/.pth) as weights= (teacher_weights= in method_args)."
        )
    state: Any = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "teacher", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} does not hold a state dict (name -> tensor); got "
            f"{type(state).__name__}. Save one with torch.save(model.state_dict(), path)."
        )
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _load_into(module: nn.Module, path: str | Path, what: str) -> None:
    state = load_state_dict_file(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"Weights {str(path)!r} do not fit {what}: {str(e).splitlines()[0]} "
            f"{_key_diff(module, state)} Check that the file is for this architecture."
        ) from e


def _key_diff(module: nn.Module, state: dict[str, Any]) -> str:
    want, have = set(module.state_dict()), set(state)
    missing, extra = sorted(want - have), sorted(have - want)
    return (
        f"(missing {len(missing)} keys, e.g. {missing[:3]}; "
        f"unexpected {len(extra)}, e.g. {extra[:3]})"
    )


def load_teacher(
    spec: str | nn.Module,
    weights: str | None = None,
    feature_dim: int | None = None,
    *,
    input_size: int = 224,
) -> tuple[nn.Module, int]:
    """Load a frozen teacher and its feature dimension.

    Args:
        spec: ``"dinov2/vitb14"`` (also ``vits14``, ``vitl14``, ``vitg14``, ``*_reg``;
            ``"dinov2"`` = vitb14), ``"run:<run folder>"``, ``"torchvision:<model name>"``, or an
            ``nn.Module``.
        weights: Local weights file (state dict) to load instead of downloading. Required for
            ``torchvision:`` unless it is a torchvision weights name (``"DEFAULT"``,
            ``"IMAGENET1K_V2"``, ...); not allowed for ``run:`` (the run holds its weights).
        feature_dim: Feature size of a module teacher; measured with one forward pass when None.
        input_size: Image side used to measure ``feature_dim`` of a module teacher.

    Returns:
        (teacher, feature_dim): the teacher maps (B, 3, H, W) to (B, feature_dim); frozen, in eval
        mode, with ``patch_size`` when it has one.

    Raises:
        ValueError: Unknown spec or model name, or weights that do not fit the architecture.
        FileNotFoundError: A missing weights file or run folder.
        TeacherUnavailableError: A DINOv2/torchvision download is needed but fails (offline);
            the message says where to put the files.
    """
    if isinstance(spec, nn.Module):
        module = spec
        if weights is not None:
            _load_into(module, weights, type(spec).__name__)
        dim = feature_dim if feature_dim is not None else feature_dim_of(module, input_size)
        return freeze(module), int(dim)
    if not isinstance(spec, str):
        raise ValueError(
            f"Teacher spec {spec!r} ({type(spec).__name__}) is not a string or an nn.Module. "
            f"Valid: {sorted(list_teachers())} or a frozen nn.Module."
        )
    name = spec.strip()
    if name.startswith("run:"):
        if weights is not None:
            raise ValueError(
                f"teacher_weights={weights!r} given with teacher {spec!r}: a run teacher uses "
                "the run's exported backbone; drop teacher_weights."
            )
        return _load_run_teacher(name[len("run:") :])
    if name.lower().startswith("dinov2"):
        return _load_dinov2(name, weights)
    if name.startswith("torchvision:"):
        return _load_torchvision(name[len("torchvision:") :], weights)
    raise ValueError(
        f"Unknown teacher {spec!r}. Valid: {sorted(list_teachers())}, or pass an nn.Module "
        "(with teacher_dim) in method_args={'teacher': module}."
    )


def teacher_normalization(spec: str | nn.Module) -> tuple[list[float], list[float]] | None:
    """The (mean, std) a teacher's inputs were normalised with when it was trained.

    DINOv2 and torchvision models were trained on ImageNet-normalised images; a ``run:``
    teacher on what its run recorded in config.json (``mean``, ``std``; [0, 0, 0] and [1, 1, 1]
    for a run without normalisation). For an ``nn.Module`` the answer is unknown: None, and it
    sees the student's views as they are.
    """
    if isinstance(spec, nn.Module):
        return None
    name = str(spec).strip()
    if name.startswith("run:"):
        from workbench.eval.embedding import run_normalization
        from workbench.runs import load_run

        return run_normalization(load_run(name[len("run:") :]).config)
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


# --- run: -----------------------------------------------------------------------------------


def _load_run_teacher(folder: str) -> tuple[nn.Module, int]:
    from workbench.runs import load_run

    if not folder:
        raise ValueError("Teacher 'run:' needs a folder: 'run:<path of a wb.train run folder>'.")
    run = load_run(folder)
    module = run.backbone
    dim = run.config.get("feature_dim")
    if dim is None:
        dim = feature_dim_of(module, int(run.config.get("input_size", 224)))
    return freeze(module), int(dim)


# --- DINOv2 via torch.hub -----------------------------------------------------------------------


def dinov2_weights_url(variant: str) -> str:
    """The official download URL of a DINOv2 backbone, e.g. for ``"vitb14"``."""
    arch = variant.replace("_reg", "")
    suffix = "_reg4" if variant.endswith("_reg") else ""
    return f"{DINOV2_URL}/dinov2_{arch}/dinov2_{arch}{suffix}_pretrain.pth"


def dinov2_repo_dir() -> Path:
    """Where torch.hub caches the DINOv2 code: ``<hub dir>/facebookresearch_dinov2_main``."""
    return Path(torch.hub.get_dir()) / f"{DINOV2_REPO.replace('/', '_')}_{DINOV2_REF}"


def _dinov2_variant(spec: str) -> str:
    rest = spec[len("dinov2") :].lstrip("/_:")
    variant = rest or DEFAULT_DINOV2.split("/")[1]
    if variant not in DINOV2_MODELS:
        raise ValueError(
            f"Unknown DINOv2 teacher {spec!r}. Valid: {[f'dinov2/{k}' for k in DINOV2_MODELS]}."
        )
    return variant


def _offline_help(variant: str, weights: str | None) -> str:
    url = dinov2_weights_url(variant)
    hub = torch.hub.get_dir()
    fname = url.rsplit("/", 1)[1]
    code = (
        f"(1) the DINOv2 code: on a machine with internet run `git clone "
        f"https://github.com/{DINOV2_REPO}` and copy the folder to {str(dinov2_repo_dir())!r} "
        f"(or run torch.hub.load('{DINOV2_REPO}', 'dinov2_{variant}') there and copy {hub!r})"
    )
    if weights is not None:
        return f"With teacher_weights given, only the architecture is missing. Supply {code}."
    return (
        f"Supply {code}, and (2) the weights: download {url} and pass "
        f"teacher_weights='/path/to/{fname}' (or put it at "
        f"{str(Path(hub) / 'checkpoints' / fname)!r}). The hub folder is torch.hub.get_dir(), "
        "set with $TORCH_HOME or torch.hub.set_dir(). Offline alternative: pretrain a teacher "
        "here and pass teacher='run:<run folder>'."
    )


def _load_dinov2(spec: str, weights: str | None) -> tuple[nn.Module, int]:
    from urllib.error import URLError

    variant = _dinov2_variant(spec)
    entry = f"dinov2_{variant}"
    if weights is not None and not Path(weights).expanduser().is_file():
        raise FileNotFoundError(
            f"teacher_weights={weights!r} does not exist. Download {dinov2_weights_url(variant)} "
            "on a machine with internet and pass its local path."
        )
    try:
        model = torch.hub.load(
            f"{DINOV2_REPO}:{DINOV2_REF}",
            entry,
            source="github",
            trust_repo=True,
            skip_validation=True,  # the GitHub API check costs a request and rate-limits
            verbose=False,
            pretrained=weights is None,
        )
    except (URLError, ConnectionError, TimeoutError) as e:
        where = "weights" if dinov2_repo_dir().is_dir() else "code"
        raise TeacherUnavailableError(
            f"Cannot load teacher {spec!r}: downloading the DINOv2 {where} failed "
            f"({type(e).__name__}: {e}); this machine looks offline. "
            + _offline_help(variant, weights)
        ) from e
    except OSError as e:  # socket errors that are not URLError (e.g. DNS failure)
        if isinstance(e, FileNotFoundError):
            raise
        raise TeacherUnavailableError(
            f"Cannot load teacher {spec!r} ({type(e).__name__}: {e}). "
            + _offline_help(variant, weights)
        ) from e
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"torch.hub entry {entry!r} returned {type(model).__name__}, not a module."
        )
    if weights is not None:
        _load_into(model, weights, f"DINOv2 {variant}")
    if getattr(model, "patch_size", None) is None:
        setattr(model, "patch_size", 14)  # noqa: B010 (nn.Module typing refuses int attributes)
    dim = getattr(model, "embed_dim", None) or feature_dim_of(model, 28)
    return freeze(model), int(dim)


# --- torchvision ----------------------------------------------------------------------------


class _FixedInputSize(nn.Module):
    """Resizes inputs to the one resolution a model accepts (torchvision ViTs: image_size)."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, D) of images (B, 3, H, W), resized to ``size`` x ``size`` first."""
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model(x)


def _strip_classifier(model: nn.Module, name: str) -> nn.Module:
    """Replace the final Linear classifier by Identity, so the model returns pooled features."""
    for attr in ("fc", "heads", "head", "classifier"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(head, nn.Sequential):
            linear = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linear:
                if attr == "heads":  # torchvision ViT: heads = (head[, pre_logits, act])
                    setattr(model, attr, nn.Identity())
                else:
                    head[linear[-1]] = nn.Identity()
                return model
    raise ValueError(
        f"torchvision model {name!r} has no Linear classifier in fc/heads/head/classifier to "
        "strip. Build it yourself and pass the nn.Module as the teacher."
    )


def _load_torchvision(name: str, weights: str | None) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    valid = tvm.list_models(module=tvm)
    if name not in valid:
        raise ValueError(f"Unknown torchvision model {name!r}. Valid: {valid}")
    if weights is None:
        raise ValueError(
            f"Teacher 'torchvision:{name}' needs weights: a local state dict file "
            f"(teacher_weights='/path/to/{name}.pth') or a torchvision weights name "
            f"(teacher_weights='DEFAULT'), downloaded once to {torch.hub.get_dir()!r}. A "
            "randomly initialised teacher teaches nothing."
        )
    local = Path(weights).expanduser()
    if local.is_file():
        model = tvm.get_model(name, weights=None)
        full = set(model.state_dict())
        _strip_classifier(model, name)
        head_keys = full - set(model.state_dict())
        state = load_state_dict_file(local)
        state = {k: v for k, v in state.items() if k not in head_keys}  # the file may hold fc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(
                f"Weights {str(local)!r} do not fit torchvision {name!r}: "
                f"{str(e).splitlines()[0]} {_key_diff(model, state)}"
            ) from e
    elif os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise FileNotFoundError(
            f"teacher_weights={weights!r} does not exist. Pass the path of a local state dict "
            f"for torchvision {name!r}, or a torchvision weights name such as 'DEFAULT'."
        )
    else:
        try:
            enum = tvm.get_model_weights(name)
            wts = enum["DEFAULT"] if weights == "DEFAULT" else enum[weights]
        except KeyError:
            names = ["DEFAULT", *[w.name for w in tvm.get_model_weights(name)]]
            raise ValueError(
                f"teacher_weights={weights!r} is neither a file nor a weights name of {name!r}. "
                f"Valid names: {names}"
            ) from None
        try:
            model = tvm.get_model(name, weights=wts)
        except OSError as e:
            raise TeacherUnavailableError(
                f"Downloading {wts.url} for teacher 'torchvision:{name}' failed "
                f"({type(e).__name__}: {e}). Download it on a machine with internet and pass "
                f"teacher_weights='/path/to/{wts.url.rsplit('/', 1)[1]}', or put it in "
                f"{str(Path(torch.hub.get_dir()) / 'checkpoints')!r}."
            ) from e
        _strip_classifier(model, name)
    module: nn.Module = model
    size = getattr(model, "image_size", None)
    if isinstance(size, int):  # torchvision ViTs accept exactly image_size
        module = _FixedInputSize(model, size)
    dim = feature_dim_of(module, int(size or 64))
    return freeze(module), dim

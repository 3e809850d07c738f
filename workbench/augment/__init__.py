"""Per-method view recipes (paper defaults) and the multi-view transforms built from them.

``recipe(method, **overrides)`` returns a :class:`Recipe` (no torch needed);
``make_transform(method_or_recipe, **overrides)`` returns a :class:`MultiView` that maps a PIL
image to its list of view tensors. The torch-side names load on first use.

Example:
    >>> import workbench as wb
    >>> wb.recipe("dino", input_size=128, local_count=4).view_sizes
    [128, 128, 55, 55, 55, 55]
"""

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr
from workbench.augment.recipes import (
    FIELD_INFO,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INVARIANCES,
    METHOD_DEFAULTS,
    METHOD_NAMES,
    FieldInfo,
    InvarianceOp,
    Recipe,
    ViewSpec,
    apply_overrides,
    recipe,
    valid_override_keys,
)

_EXPORTS = {
    "MultiView": "transforms",
    "ViewTransform": "transforms",
    "RandomRotation90": "transforms",
    "build_view": "transforms",
    "make_transform": "transforms",
    "sample_views": "preview",
    "PreviewRow": "preview",
    "describe_params": "preview",
}
__getattr__ = lazy_getattr(__name__, _EXPORTS)

__all__ = [
    "FIELD_INFO",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INVARIANCES",
    "METHOD_DEFAULTS",
    "METHOD_NAMES",
    "FieldInfo",
    "InvarianceOp",
    "MultiView",
    "PreviewRow",
    "RandomRotation90",
    "Recipe",
    "ViewSpec",
    "ViewTransform",
    "apply_overrides",
    "build_view",
    "describe_params",
    "make_transform",
    "recipe",
    "sample_views",
    "valid_override_keys",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.augment.preview import PreviewRow, describe_params, sample_views
    from workbench.augment.transforms import (
        MultiView,
        RandomRotation90,
        ViewTransform,
        build_view,
        make_transform,
    )

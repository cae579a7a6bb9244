"""Recipes: what ``python -m hep_keras.fit <model>`` needs to know about each model.

A recipe is a module satisfying :class:`~hep_keras.training.recipes.base.Recipe`. They are imported lazily so
that ``fit compressor`` never pays for the image models and vice versa.
"""

from __future__ import annotations

import importlib
from typing import Any

from hep_keras.training.config import COMMON_DEFAULTS
from hep_keras.training.recipes.base import Recipe

#: model name on the command line -> module implementing the recipe
RECIPES: dict[str, str] = {
    "vae": "hep_keras.training.recipes.vae",
    "ae": "hep_keras.training.recipes.ae",
    "diffusion": "hep_keras.training.recipes.diffusion",
    "compressor": "hep_keras.training.recipes.compressor",
}


def check_recipe(module: Any) -> Recipe:
    """Return ``module`` if it satisfies :class:`Recipe`; ``TypeError`` naming every missing member otherwise."""
    members = [*Recipe.__annotations__, *(name for name in vars(Recipe) if not name.startswith("_"))]
    missing = sorted(name for name in members if not hasattr(module, name))
    if missing:
        raise TypeError(
            f"{getattr(module, '__name__', module)!s} is not a hep_keras recipe: missing {', '.join(missing)}"
        )
    return module


def get_recipe(name: str) -> Recipe:
    """Import, check and return the recipe module for ``name`` (one of :data:`RECIPES`)."""
    return check_recipe(importlib.import_module(RECIPES[name]))


def recipe_defaults(recipe: Recipe) -> dict[str, Any]:
    """Common defaults overlaid with the recipe's own keys."""
    return {**COMMON_DEFAULTS, **recipe.DEFAULTS}

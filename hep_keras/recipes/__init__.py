"""Recipes: what ``python -m hep_keras.fit <model>`` needs to know about each model.

A recipe is a module with the attributes documented in :mod:`hep_keras.recipes.base`. They are imported
lazily so that ``fit compressor`` never pays for the image models and vice versa.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: model name on the command line -> module implementing the recipe
RECIPES: dict[str, str] = {
    "vae": "hep_keras.recipes.vae",
    "ae": "hep_keras.recipes.ae",
    "diffusion": "hep_keras.recipes.diffusion",
    "compressor": "hep_keras.recipes.compressor",
}


def get_recipe(name: str) -> ModuleType:
    """Import and return the recipe module for ``name`` (one of :data:`RECIPES`)."""
    return importlib.import_module(RECIPES[name])

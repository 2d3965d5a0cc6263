"""A push's recipes written as one batch: the objects, then their index rows.

``Vault.push`` and the light push (``vault.lightpush``) write them with this one function, so
both leave the same objects and rows. It imports nothing at run time beyond the standard library:
the light path must not load the vault stack to reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from weightvault.core.manifest import FileRecipe, Manifest
    from weightvault.vault.keyring import Domain
    from weightvault.vault.store import Store


class RecipeRows(Protocol):
    """The index's side (``RegistryIndex`` or ``LightIndex``): recipe rows in one transaction."""

    def put_recipes(
        self, recipes: Sequence[tuple[str, int, bytes]], created: datetime | None = None
    ) -> None: ...


def put_push_recipes(
    store: Store, index: RecipeRows, recipes: Sequence[FileRecipe], dom: Domain | None, manifest: Manifest
) -> list[str]:
    """Write the recipe objects of a push as one batch (each is its own durable object; one
    at a time, a 10,000-file push waited on 10,000 fsyncs or requests in a row), then index
    them, and the manifest's inline recipes, in one transaction. An encrypted model's objects
    are sealed by its domain, each named by its keyed hash. Returns the names of the recipe
    objects."""
    objects: dict[str, tuple[int, bytes]] = {}
    names: list[str] = []
    inline = {f.sha256 for f in manifest.files if f.chunks is not None}
    rows: dict[str, tuple[int, bytes]] = {}
    for recipe in recipes:
        if recipe.sha256 in inline:
            rows[recipe.sha256] = (recipe.size, recipe.to_bytes())
            continue
        if dom is None:
            name, body = recipe.sha256, recipe.to_bytes()
        else:
            name = dom.recipe_name(recipe.sha256)
            body = objects[name][1] if name in objects else dom.seal_recipe(name, recipe.to_bytes())
        objects[name] = (recipe.size, body)
        names.append(name)
    store.put_recipe_objects({n: body for n, (_size, body) in objects.items()})
    rows.update(objects)
    index.put_recipes([(n, size, body) for n, (size, body) in rows.items()])
    return names

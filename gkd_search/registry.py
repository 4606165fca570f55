"""The plugin manager: built-ins first, then the ``gkd_search`` entry points.

Autoloading entry points is switched off by ``GKD_SEARCH_DISABLE_PLUGIN_AUTOLOAD=1``; single
plugins (built-in or third-party) are blocked by name with ``GKD_SEARCH_BLOCK_PLUGINS=a,b`` or
``get_plugin_manager(blocked=[...])`` (the CLI's ``--block-plugin``).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pluggy

from . import __version__, hookspecs
from .errors import PluginError, PluginWarning, UnknownComponentError
from .validation import validate_component

ENTRY_POINT_GROUP = "gkd_search"
DISABLE_AUTOLOAD_ENV = "GKD_SEARCH_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "GKD_SEARCH_BLOCK_PLUGINS"

#: Built-in plugins, registered through the same hooks as third-party ones.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gkd_search.datasets.planetoid",
    "gkd_search.datasets.amazon",
    "gkd_search.datasets.coauthor",
    "gkd_search.datasets.own_graph",
    "gkd_search.datasets.pyg_any",
    "gkd_search.datasets.synthetic",
    "gkd_search.datasets.hetero",
    "gkd_search.datasets.ogb",
    "gkd_search.families.gcn",
    "gkd_search.families.sage",
    "gkd_search.families.gat",
    "gkd_search.families.mlp",
    "gkd_search.families.gcnii",
    "gkd_search.families.sgc",
    "gkd_search.families.appnp",
    "gkd_search.families.rgcn",
    "gkd_search.methods.none",
    "gkd_search.methods.softkd",
    "gkd_search.methods.glnn",
    "gkd_search.methods.fitnets",
    "gkd_search.methods.at",
    "gkd_search.losses.lsp",
    "gkd_search.losses.gsp",
    "gkd_search.losses.gcrd",
    "gkd_search.methods.lsp",
    "gkd_search.methods.gsp",
    "gkd_search.methods.gcrd",
    "gkd_search.methods.graphakd",
    "gkd_search.methods.abkd",
    "gkd_search.methods.stride",
    "gkd_search.methods.infgrand",
)

COMPONENT_HOOKS = {
    "method": "gkd_methods",
    "family": "gkd_families",
    "loss": "gkd_structural_losses",
    "dataset": "gkd_datasets",
}
OBSERVER_HOOKS = ("gkd_trial_finished", "gkd_search_finished")


def _blocked_from_env() -> list[str]:
    return [name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()]


def get_plugin_manager(
    *,
    autoload: Optional[bool] = None,
    blocked: Iterable[str] = (),
    strict: bool = False,
) -> pluggy.PluginManager:
    """Build the plugin manager: hookspecs, built-ins, then entry points of group ``gkd_search``.

    Args:
        autoload: load third-party entry points; default: unless
            ``GKD_SEARCH_DISABLE_PLUGIN_AUTOLOAD`` is set.
        blocked: plugin names (built-in module names or entry-point names) not to register.
        strict: raise :class:`PluginError` when an entry point fails to import instead of
            skipping it with a warning.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in [*blocked, *_blocked_from_env()]:
        pm.set_blocked(name)
    for module_name in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_name):
            pm.register(importlib.import_module(module_name), name=module_name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        load_entry_points(pm, strict=strict)
    pm.check_pending()
    return pm


def load_entry_points(pm: pluggy.PluginManager, *, strict: bool = False) -> list[str]:
    """Register every ``gkd_search`` entry point not blocked; return the names skipped."""
    skipped = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        dist = getattr(ep, "dist", None)
        dist_label = f"{dist.name} {dist.version}" if dist else "unknown distribution"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the others
            message = f"plugin {ep.name!r} from {dist_label} failed to import: {type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(message) from exc
            warnings.warn(message + " (skipped)", PluginWarning, stacklevel=2)
            skipped.append(ep.name)
            continue
        pm.register(plugin, name=ep.name)
        pm._gkd_dist = getattr(pm, "_gkd_dist", {})  # type: ignore[attr-defined]
        pm._gkd_dist[ep.name] = dist_label  # type: ignore[attr-defined]
    return skipped


def notify(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of an observer hook (``gkd_trial_finished``,
    ``gkd_search_finished``) in pluggy's order; one that raises is reported as a warning naming
    its plugin, and the others and the search go on."""
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:  # an observer's bug must not end a search
            warnings.warn(f"plugin {impl.plugin_name!r}: {hook_name} raised {type(exc).__name__}: {exc} (ignored)",
                          PluginWarning, stacklevel=2)


@dataclass
class Provided:
    """One component and where it came from."""

    kind: str
    name: str
    component: Any
    plugin: str
    distribution: str


@dataclass
class Registry:
    """Every component, by kind and name, flattened from the plugins' hooks."""

    pm: pluggy.PluginManager
    components: dict[str, dict[str, Provided]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Any:
        table = self.components[kind]
        if name not in table:
            raise UnknownComponentError(kind, name, list(table))
        return table[name].component

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    @property
    def methods(self) -> dict[str, Any]:
        return {n: p.component for n, p in self.components["method"].items()}

    @property
    def families(self) -> dict[str, Any]:
        return {n: p.component for n, p in self.components["family"].items()}

    @property
    def datasets(self) -> dict[str, Any]:
        return {n: p.component for n, p in self.components["dataset"].items()}

    @property
    def losses(self) -> dict[str, Any]:
        return {n: p.component for n, p in self.components["loss"].items()}

    def provided(self) -> list[Provided]:
        return [p for kind in COMPONENT_HOOKS for p in sorted(self.components[kind].values(), key=lambda p: p.name)]

    def observers(self) -> list[Provided]:
        """Every implementation of an observer hook, as ``Provided(kind="observer", name=<hook>)``."""
        found = []
        for hook_name in OBSERVER_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                found.append(Provided("observer", hook_name, impl.function, impl.plugin_name,
                                      _distribution_of(self.pm, impl.plugin_name)))
        return found


def _distribution_of(pm: pluggy.PluginManager, plugin_name: str) -> str:
    dists = getattr(pm, "_gkd_dist", {})
    if plugin_name in dists:
        return dists[plugin_name]
    return f"gkd-search {__version__}"


def build_registry(pm: Optional[pluggy.PluginManager] = None) -> Registry:
    """Call every component hook once and index the results; reject duplicate names and
    components that break the contract (:mod:`gkd_search.validation`)."""
    pm = pm or get_plugin_manager()
    registry = Registry(pm=pm)
    for kind, hook_name in COMPONENT_HOOKS.items():
        table: dict[str, Provided] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            distribution = _distribution_of(pm, plugin_name)
            where = f"plugin {plugin_name!r} ({distribution})"
            try:
                components = impl.function() or []
            except Exception as exc:  # e.g. an abstract method left out: the class cannot be instantiated
                raise PluginError(f"{where}: {hook_name}() raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(components, (list, tuple)):
                raise PluginError(f"{where}: {hook_name}() must return a list, got {type(components).__name__}")
            for component in components:
                name = getattr(component, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {plugin_name!r} returned a {kind} without a 'name': {component!r}")
                if name in table:
                    raise PluginError(
                        f"{kind} {name!r} is provided twice: by plugin {table[name].plugin!r} and by "
                        f"plugin {plugin_name!r}; block one with --block-plugin NAME"
                    )
                validate_component(kind, component, where)
                table[name] = Provided(kind, name, component, plugin_name, distribution)
        registry.components[kind] = table
    return registry

"""Policy kinds by name (``policy.kind``): a registry of builders, as verl registers its
advantage estimators.

A builder takes the roles' specs and the ``[policy]`` config section and returns the policies
of every role plus, for ``policy.shared``, the one module that holds all their parameters::

    @register_policy_kind("mlp")
    def build_mlp(specs: dict[str, RoleSpec], config, seed: int) -> Built: ...

``config`` is read by attribute (``hidden``, ``shared``, and whatever the kind documents).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policies.base import Built, RoleSpec
from policies.mlp import MLPPolicy, shared_policies
from policies.relevance import relevance_from_text

__all__ = ["Built", "RoleSpec", "build_policies", "policy_kinds", "register_policy_kind"]


Builder = Callable[[dict[str, RoleSpec], Any, int], Built]
_KINDS: dict[str, Builder] = {}


def register_policy_kind(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn(specs, config, seed) -> Built`` as policy kind ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _KINDS:
            raise ValueError(f"policy kind {name!r} is already registered")
        _KINDS[name] = fn
        return fn

    return deco


def policy_kinds() -> tuple[str, ...]:
    """Names of the registered policy kinds."""
    return tuple(_KINDS)


def build_policies(kind: str, specs: dict[str, RoleSpec], config: Any, seed: int) -> Built:
    """Build the policies of ``specs`` (role -> spec, ``main`` first) with kind ``kind``."""
    if kind not in _KINDS:
        raise ValueError(f"policy.kind = {kind!r} is not a policy kind; allowed: {policy_kinds()}")
    return _KINDS[kind](specs, config, seed)


@register_policy_kind("mlp")
def _build_mlp(specs: dict[str, RoleSpec], config: Any, seed: int) -> Built:
    """Small torch MLPs (:class:`policies.mlp.MLPPolicy`); ``config.shared`` puts every role
    around one shared trunk. Roles with a text face count only the action components their
    chosen tool uses (:func:`policies.relevance.relevance_from_text`)."""
    rel = {r: relevance_from_text(s.text) for r, s in specs.items() if s.text is not None}
    spaces = {r: (s.observation_space, s.action_space) for r, s in specs.items()}
    if config.shared:
        module, pols = shared_policies(spaces, config.hidden, seed, rel)
        return Built(pols, module)
    pols = {
        r: MLPPolicy(o, a, hidden=config.hidden, seed=seed * 1000 + 17 * i, relevance=rel.get(r))
        for i, (r, (o, a)) in enumerate(spaces.items())
    }
    return Built(pols)


@register_policy_kind("lm")
def _build_lm(specs: dict[str, RoleSpec], config: Any, seed: int) -> Built:
    """Hugging Face causal LMs acting through each role's text face
    (:class:`policies.lm.LMPolicy`; keys in :mod:`policies.lm_build`). Imported on first use,
    so ``import policies`` does not import ``transformers``."""
    from policies.lm_build import build_lm

    return build_lm(specs, config, seed)

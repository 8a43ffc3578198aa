"""Policies for every role: the protocol, the registry of policy kinds, small torch MLPs."""

from policies.base import Policy, TokenBatch
from policies.mlp import ID_FIELDS, MLPPolicy, ObsEncoder, SharedPolicyModule, shared_policies
from policies.registry import (
    Built,
    RoleSpec,
    build_policies,
    policy_kinds,
    register_policy_kind,
)
from policies.relevance import relevance_from_text

__all__ = [
    "ID_FIELDS",
    "Built",
    "MLPPolicy",
    "ObsEncoder",
    "Policy",
    "RoleSpec",
    "SharedPolicyModule",
    "TokenBatch",
    "build_policies",
    "policy_kinds",
    "register_policy_kind",
    "relevance_from_text",
    "shared_policies",
]

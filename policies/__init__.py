"""Policies for every role: the protocol and small torch MLP policies (language models later)."""

from policies.base import Policy
from policies.mlp import MLPPolicy, ObsEncoder, SharedPolicyModule, shared_policies
from policies.relevance import relevance_from_text

__all__ = [
    "MLPPolicy",
    "ObsEncoder",
    "Policy",
    "SharedPolicyModule",
    "relevance_from_text",
    "shared_policies",
]

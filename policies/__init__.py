"""Policies for every role: the protocol and small torch MLP policies (language models later)."""

from policies.base import Policy
from policies.mlp import MLPPolicy, ObsEncoder, SharedPolicyModule, shared_policies

__all__ = ["MLPPolicy", "ObsEncoder", "Policy", "SharedPolicyModule", "shared_policies"]

"""Check your own GRPO math against ours: advantages, alignment, policy loss.

Conventions differ silently between frameworks (population vs sample std, eps inside or outside
the root, a std floor or none, per-group vs per-batch scaling, what a group of one or a constant
group gets). Like Gymnasium's ``env_checker`` for environments, these checkers run a user's
function on hand-computed worked cases, edge cases and random cases, and return a
:class:`Report` (each case with expected and got) instead of crashing on bad output:

- :func:`check_group_advantages` ``fn(rewards, group_ids) -> advantages`` under declared
  conventions (``ddof``, ``eps``, ``scale``, ``std_floor``, or a named :class:`Convention`);
- :func:`detect_convention` "which GRPO is this?": the paper's, TRL's (v1.9.0), verl's
  (v0.7.0), mean only, ..., or none, and where it departs first;
- :func:`check_alignment` ``fn(rollout_ids, n_rollouts, target, seed) -> index`` by properties
  over random call patterns (hypothesis);
- :func:`check_policy_loss` ``fn(logp, logp_old, advantages, mask) -> loss``: clipping,
  aggregation modes, gradients against finite differences;
- :mod:`sim.testing.strategies`: hypothesis strategies for users' own tests (needs hypothesis).

Example:
    >>> from sim.advantages import group_advantages
    >>> report = check_group_advantages(group_advantages, convention="paper")
    >>> report.passed, len(report.failures)
    (True, 0)
    >>> detect_convention(group_advantages).name
    'paper'

The shell form is ``mgrpo check-math MODULE:FUNCTION --kind advantages|alignment|loss``.
"""

from sim.testing.advantages import ConventionMatch, check_group_advantages, detect_convention
from sim.testing.alignment import check_alignment
from sim.testing.conventions import CONVENTIONS, Convention, get_convention, reference_advantages
from sim.testing.loss import check_policy_loss
from sim.testing.report import CaseResult, CheckFailed, Report

__all__ = [
    "CONVENTIONS",
    "CaseResult",
    "CheckFailed",
    "Convention",
    "ConventionMatch",
    "Report",
    "check_alignment",
    "check_group_advantages",
    "check_policy_loss",
    "detect_convention",
    "get_convention",
    "reference_advantages",
]

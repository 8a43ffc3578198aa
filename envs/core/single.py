"""A single-episode Gymnasium env over a :class:`HierarchicalVectorEnv` with ``num_envs=1``.

Single == batched by construction: the single env is the batched env with N = 1; a seeded reset
gives its episode the key a batched env gives an episode of that seed, an unseeded one continues
the slot's stream (:mod:`envs.core.streams`), as the batched env does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.core import rendering
from envs.core.vector import HierarchicalVectorEnv, SubPolicy


class HierarchicalEnv(gym.Env):
    """Base of single main-agent envs. Subclasses set ``vector_class``.

    ``reset(seed=s, options={"query": q})`` (or ``{"puzzle": name}`` where the env has named
    puzzles); ``step(action)`` with ``action`` ``(n_comp,)``.
    The final ``info`` holds ``correct``, ``format_ok``, ``calls`` (role -> d_k),
    ``category_errors``, ``sim_time``, ``turns``, ``query`` and ``sub_trajectories``;
    earlier steps return ``info = {}``.

    ``render_mode`` (Gymnasium's convention, see :mod:`envs.core.rendering`): ``"ansi"`` makes
    :meth:`render` return the text face's prompt of the current observation; a mode the env
    does not offer is accepted here and refused by :meth:`render`.
    """

    vector_class: ClassVar[type[HierarchicalVectorEnv]]
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": rendering.RENDER_MODES,
        "render_fps": rendering.RENDER_FPS,
    }

    def __init__(self, *, render_mode: str | None = None, **kwargs: Any) -> None:
        self.render_mode = rendering.check_render_mode(render_mode)
        self.vec = self.vector_class(num_envs=1, **kwargs)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.text = self.vec.text
        self.subagent_roles = self.vec.subagent_roles
        self.subagent_spaces = self.vec.subagent_spaces
        self._row = np.zeros(1, dtype=np.int64)

    def set_subagent(self, role: str, policy: SubPolicy | None) -> None:
        """See :meth:`HierarchicalVectorEnv.set_subagent`."""
        self.vec.set_subagent(role, policy)

    def subagent_env(self, role: str, *, render_mode: str | None = None) -> gym.Env:
        """See :meth:`HierarchicalVectorEnv.subagent_env`."""
        return self.vec.subagent_env(role, render_mode=render_mode)

    def render(self) -> str | None:
        """``render_mode="ansi"``: the text face's prompt of the current observation."""
        return rendering.render(self, self._render_ansi)

    def _render_ansi(self) -> str:
        if self.vec._last_obs is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self.text.render(self._first(self.vec._last_obs))

    @staticmethod
    def _first(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0, ...] for k, v in obs.items()}  # 0-d arrays for scalar fields

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        q = None if options is None else options.get("query")
        if options is not None and options.get("puzzle") is not None:
            if q is not None:
                raise ValueError('give options["puzzle"] or options["query"], not both')
            q = self.vec.puzzle_query(options["puzzle"])
        if q is not None and (int(q) < 0 or int(q) != q):
            raise ValueError(f'options["query"] must be a non-negative int, got {q!r}')
        queries = None if q is None else np.array([int(q)], dtype=np.int64)
        self.vec._reset_rows(self._row, None if seed is None else [seed], queries)
        return self._first(self.vec._obs()), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict[str, Any]]:
        obs, rew, term, trunc, _ = self.vec.step(np.asarray(action)[None])
        info = self.vec.final_infos[0] if self.vec.done[0] else {}
        return self._first(obs), float(rew[0]), bool(term[0]), bool(trunc[0]), dict(info or {})

"""``render_mode`` as Gymnasium's convention has it, for every env of the protocol.

Every constructor accepts ``render_mode`` (default None) and stores it as ``self.render_mode``;
``metadata["render_modes"]`` lists what the envs offer: ``"ansi"``, the text face's rendering of
the current observation (the Qwen3 chat prompt an agent sees). A mode an env does not offer
(``"rgb_array"``, ``"human"``) is accepted at construction, because clients such as
Stable-Baselines3's ``make_vec_env`` pass ``render_mode="rgb_array"`` to every env and fall back
only on a ``TypeError``; ``gym.make`` warns about it then, and ``render()`` raises
``gymnasium.error.UnsupportedMode`` naming the modes on offer (Gymnasium's error "raised when the
user requests a rendering mode not supported by the environment"). ``render()`` without a mode
warns and returns None, as Gymnasium's own envs do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gymnasium import error, logger

RENDER_MODES = ["ansi"]
"""the modes every env of the protocol offers (``metadata["render_modes"]``)"""
RENDER_FPS = 4
"""``metadata["render_fps"]`` (Gymnasium's checker asks for one when any mode is offered; the
value only matters to video recorders, as for Gymnasium's text envs)"""


def check_render_mode(render_mode: Any) -> str | None:
    """``render_mode`` if it is None or a string (any mode is accepted at construction)."""
    if render_mode is not None and not isinstance(render_mode, str):
        raise ValueError(f"render_mode must be a string or None, got {render_mode!r}")
    return render_mode


def render(env: Any, ansi: Callable[[], Any]) -> Any:
    """What ``env.render()`` returns for ``env.render_mode``: ``ansi()`` for ``"ansi"``."""
    mode = env.render_mode
    if mode is None:
        logger.warn(
            f"{type(env).__name__}.render() was called without a render mode; make the env with "
            f"render_mode set to one of {RENDER_MODES}, e.g. "
            f'gym.make("{_spec_id(env)}", render_mode="ansi")'
        )
        return None
    if mode not in RENDER_MODES:
        raise error.UnsupportedMode(
            f"{type(env).__name__} was made with render_mode={mode!r}, which it does not offer; "
            f"it renders in the modes {RENDER_MODES} (ansi: the text face's chat prompt of the "
            "current observation)"
        )
    return ansi()


def _spec_id(env: Any) -> str:
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None) or "mgrpo/RubiksLogic-v0"

"""Optuna storages of a sweep: RDB URLs (heartbeats, retries of stale trials) and
``journal:PATH``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from experiments.sweep.config import SweepConfig

__all__ = ["StorageError", "default_storage", "open_storage", "redact", "retry_callback"]


class StorageError(RuntimeError):
    """The storage URL is invalid or the storage cannot be reached."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for printing)."""
    if url.startswith("journal:") or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - printing only
        return url.split("://")[0] + "://***"


def default_storage(out: Path) -> str:
    """``sqlite:///OUT/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def retry_callback() -> tuple[type, str]:
    """Optuna's retry callback for stale trials and the RDBStorage keyword that takes it."""
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        return RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
    except ImportError:  # Optuna < 4.9
        from optuna.storages import RetryFailedTrialCallback

        return RetryFailedTrialCallback, "failed_trial_callback"


def open_storage(url: str, sweep: SweepConfig):
    """An Optuna storage for ``url``: an RDB URL (heartbeats and retries on) or ``journal:PATH``.

    Raises :class:`StorageError` with a one-line reason when the URL is invalid, its driver is
    missing or the database cannot be reached.
    """
    import optuna
    from optuna.storages import RDBStorage

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :])
        if not str(path) or not path.parent.is_dir():
            raise StorageError(
                f"journal storage {url!r}: the folder {str(path.parent)!r} does not exist; "
                "use journal:PATH with PATH a file in an existing folder"
            )
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise StorageError(f"journal storage {url!r}: {e}") from e
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; use e.g. sqlite:///study.db, "
            "postgresql+psycopg://user@host/db or journal:PATH"
        )
    dialect = url.split("://")[0].split("+")[0]
    connect_args: dict[str, Any] = {}
    if dialect == "sqlite":
        connect_args = {"timeout": 60}  # seconds a writer waits for the lock (several workers)
    elif dialect in ("postgresql", "mysql"):
        connect_args = {"connect_timeout": 10}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            retry, keyword = retry_callback()
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                heartbeat_interval=sweep.heartbeat_interval,
                grace_period=sweep.grace_period,
                **{keyword: retry(max_retry=sweep.max_retry)},
            )
        except ModuleNotFoundError as e:
            extra = " (pip install 'psycopg[binary]')" if dialect == "postgresql" else ""
            raise StorageError(
                f"storage {redact(url)!r} needs the Python module {e.name!r}{extra}"
            ) from e
        except Exception as e:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
            msg = str(getattr(e, "orig", None) or e).strip().splitlines()
            reason = msg[0] if msg else type(e).__name__
            raise StorageError(f"cannot open storage {redact(url)!r}: {reason}") from e

"""Where a study lives: Optuna's relational storage, a SQLite file in the search folder by default or a PostgreSQL
URL that workers on many machines share, with heartbeats so that a killed worker's trial is failed and retried."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning

from ..errors import ConfigError

STORAGE_SCHEMES = ("sqlite", "postgresql")
STUDY_DB = "study.db"


class SearchError(ConfigError):
    """A search that cannot start as asked (storage, study, machine): one line, exit 2."""


def storage_url(storage: str | None, out: Path) -> tuple[str, bool]:
    """The storage URL (default: ``sqlite:///OUT/study.db``) and whether it is shared beyond this folder."""
    if storage is None:
        return f"sqlite:///{(out / STUDY_DB).resolve()}", False
    scheme = storage.split(":", 1)[0].split("+", 1)[0]
    if scheme not in STORAGE_SCHEMES or "://" not in storage:
        raise SearchError(f"--storage {storage!r} is not a study storage URL; give sqlite:///PATH/study.db or "
                          "postgresql://USER@HOST:PORT/DB")
    return storage, scheme != "sqlite"


def open_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """Optuna's relational storage with a heartbeat, a stale trial's parameters queued once more."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), _schema_lock(url):
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat and retry: stable since Optuna 2.9
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                **_retry_stale())
    except ImportError as exc:
        raise SearchError(f"the storage {url.split(':', 1)[0]} needs a driver ({exc}); for PostgreSQL: "
                          "pip install 'compresskit[postgres]'") from None
    except Exception as exc:  # sqlalchemy's OperationalError and kin: the server is not there, wrong password
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchError(f"cannot open the study storage {safe_url(url)}: {first}") from None


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, one worker at a time opens the storage: Optuna creates its tables on first use, and workers
    started together on an empty database would race to create them (a duplicate-key error for all but one).
    A session-level advisory lock, held while the storage is opened, makes the others wait, then find the tables."""
    if url.startswith("sqlite"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
    finally:
        engine.dispose()


_LOCK_KEY = 0x636B5354  # "ckST": compresskit's study-schema lock, one number shared by every worker


def _retry_stale() -> dict:
    """A heartbeat-stale (killed) trial queued once more: Optuna >= 4.9's callback, or the older one."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}


def safe_url(url: str) -> str:
    """A URL without its password, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url

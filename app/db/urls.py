"""Database URLs: one DATABASE_URL (the owner) and the ce_app URL derived from it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from app.config import Settings

APP_ROLE = "ce_app"


def _with_driver(url: str | URL, driver: str) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername=f"postgresql+{driver}")


def owner_url(settings: Settings, driver: str = "psycopg") -> URL:
    """The migration/owner connection (sync psycopg by default, asyncpg on request)."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not resolved; call resolve_database_url() first")
    return _with_driver(settings.database_url, driver)


def app_url(settings: Settings, driver: str = "asyncpg") -> URL:
    """The run-time connection as ce_app: APP_DATABASE_URL, else DATABASE_URL as ce_app."""
    if settings.app_database_url:
        return _with_driver(settings.app_database_url, driver)
    return owner_url(settings, driver).set(
        username=APP_ROLE, password=settings.ce_app_db_password.get_secret_value()
    )


def libpq_url(url: URL) -> str:
    """A plain postgresql:// URL (for psycopg pools, pg_dump and procrastinate)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_database_url(settings: Settings) -> Settings:
    """DATABASE_URL when set; otherwise start (or find) the embedded server under DATA_DIR."""
    if settings.database_url:
        return settings
    from app.db.embedded import embedded_database_url

    return settings.model_copy(update={"database_url": embedded_database_url(settings.data_dir)})

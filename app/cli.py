"""ce-email: the service's command line (serve, migrate, sandbox, dev fixtures, ...)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer

from app.config import Settings, check_production_safety, get_settings
from app.db.migrate import run_migrations
from app.db.urls import ensure_database_url, owner_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

cli = typer.Typer(help="CE-07 email integration service", no_args_is_help=True)
dev = typer.Typer(help="Development fixtures (refused when CE_ENV=production)")
cli.add_typer(dev, name="dev")
audit = typer.Typer(help="The access audit's hash chain: seal and verify")
cli.add_typer(audit, name="audit")
retention = typer.Typer(help="Email retention: purge mail past email_retention_days")
cli.add_typer(retention, name="retention")


def _settings() -> Settings:
    return ensure_database_url(get_settings())


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@cli.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head) as the DATABASE_URL owner."""
    settings = _settings()
    run_migrations(settings)
    typer.echo("migrated")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = False,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="also run the job worker in this process")
    ] = False,
) -> None:
    """Serve the HTTP API."""
    import os

    import uvicorn

    from app.logs import configure_logging

    settings = _settings()
    check_production_safety(settings)
    if migrate_first:
        run_migrations(settings)
    # The resolved URL (the embedded server's when none was given) for the factory's process.
    os.environ["DATABASE_URL"] = str(settings.database_url)
    if with_worker:
        os.environ["RUN_WORKER_IN_PROCESS"] = "1"
    get_settings.cache_clear()  # the app factory reads the environment set above
    configure_logging(settings.log_level)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # paths carry tokens; app.http logs route templates instead
        log_config=None,
        # a connection that never finishes must not keep a stopping server alive; the
        # lifespan shutdown (flushing buffered opens) still runs after this
        timeout_graceful_shutdown=15,
    )


@cli.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="jobs at once")] = None,
) -> None:
    """Run background jobs (syncs, push renewal, polling, sends) until stopped."""
    from app.db.engine import create_database
    from app.jobs.worker import run_worker
    from app.logs import configure_logging

    settings = _settings()
    check_production_safety(settings)
    configure_logging(settings.log_level)

    async def main() -> None:
        from app.context import ServiceContext

        db = create_database(settings)
        ctx = ServiceContext.build(settings, db.engine)
        try:
            await run_worker(settings, ctx, concurrency=concurrency)
        finally:
            await ctx.aclose()
            await db.dispose()

    asyncio.run(main())


@cli.command()
def sandbox(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8025,
) -> None:
    """Serve the provider sandbox alone (same /_sandbox paths as in-process)."""
    import uvicorn

    from app.logs import configure_logging
    from app.sandbox_mount import standalone_sandbox_app

    settings = get_settings()
    if settings.is_production:
        _fail("the sandbox is refused when CE_ENV=production")
    configure_logging(settings.log_level)
    uvicorn.run(
        standalone_sandbox_app(settings), host=host, port=port, access_log=False, log_config=None
    )


def _run(fn: Callable[[AsyncEngine, Settings], Awaitable[T]], *, as_owner: bool) -> T:
    """Run `fn` with an engine on the database, as its owner or as the service's role."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.db.urls import app_url

    settings = _settings()
    url = owner_url(settings, "asyncpg") if as_owner else app_url(settings, "asyncpg")

    async def main() -> T:
        engine = create_async_engine(url)
        try:
            return await fn(engine, settings)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _run_with_owner(fn: Callable[[AsyncEngine, Settings], Awaitable[T]]) -> T:
    return _run(fn, as_owner=True)


def _emit(payload: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")


def _dev_guard() -> None:
    if get_settings().is_production:
        _fail("development fixtures are refused when CE_ENV=production")


@cli.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every vault secret under the first key of VAULT_KEYS (all orgs)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.accounts.vault import KeyRing, rotate_all

    ring = KeyRing(get_settings().vault_keys.get_secret_value())

    async def run(engine: AsyncEngine, _settings: Settings) -> tuple[int, int, int]:
        async with AsyncSession(engine) as session, session.begin():
            return await rotate_all(session, ring)

    rotated, current, unreadable = _run_with_owner(run)
    _emit(
        {
            "rotated": rotated,
            "already_current": current,
            "unreadable": unreadable,
            "primary_key_id": ring.primary_key_id,
        }
    )
    if unreadable:
        raise typer.Exit(code=1)


@cli.command()
def demo(
    port: Annotated[int | None, typer.Option(help="port to serve on (default: a free one)")] = None,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="stop when the walkthrough is done")
    ] = False,
) -> None:
    """The whole flow on the embedded database and the sandbox, then keep serving."""
    import os

    from app.dev.demo import DemoFailed, run_demo
    from app.logs import configure_logging

    settings = _settings()
    if settings.is_production:
        _fail("the demo is refused when CE_ENV=production")
    # JSON logs on stderr; quiet unless LOG_LEVEL asks (the walkthrough is on stdout)
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"))
    try:
        asyncio.run(run_demo(settings, port=port, keep_serving=not exit_after))
    except DemoFailed as exc:
        _fail(str(exc))


@dev.command("seed-org")
def dev_seed_org(name: Annotated[str, typer.Option(help="organisation name")]) -> None:
    """Create an org with an admin and a member; print their ids and 24 h tokens."""
    _dev_guard()
    from app.dev.fixtures import seed_org

    _emit(_run_with_owner(lambda engine, s: seed_org(engine, s, name)))


@dev.command("add-contact")
def dev_add_contact(
    org: Annotated[UUID, typer.Option(help="org id")],
    email: Annotated[list[str], typer.Option(help="address (repeat for several)")],
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a CE-01 contact with one or more addresses."""
    _dev_guard()
    from app.dev.fixtures import add_contact

    try:
        _emit(_run_with_owner(lambda engine, s: add_contact(engine, s, org, email, name)))
    except ValueError as exc:
        _fail(str(exc))


@dev.command("add-partner")
def dev_add_partner(
    org: Annotated[UUID, typer.Option(help="org id")],
    domain: Annotated[list[str], typer.Option(help="domain (repeat for several)")],
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a CE-02 partner with one or more domains."""
    _dev_guard()
    from app.dev.fixtures import add_partner

    try:
        _emit(_run_with_owner(lambda engine, s: add_partner(engine, s, org, domain, name)))
    except ValueError as exc:
        _fail(str(exc))


@dev.command("add-document")
def dev_add_document(
    org: Annotated[UUID, typer.Option(help="org id")],
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Store a file as a PF-11 document of the org."""
    _dev_guard()
    from app.dev.fixtures import add_document

    _emit(_run_with_owner(lambda engine, s: add_document(engine, s, org, file)))


@dev.command("database-url")
def dev_database_url() -> None:
    """Print the resolved owner DATABASE_URL (starts the embedded server when unset)."""
    _dev_guard()
    sys.stdout.write(str(_settings().database_url) + "\n")


def _run_as_app(fn: Callable[[AsyncEngine, Settings], Awaitable[T]]) -> T:
    """Runs with the service's own role (ce_app, org by org under RLS): sealing and
    verifying need nothing the service itself lacks, so the command can do no more than
    the periodic job, and an operator needs no owner credentials to check the chain."""
    return _run(fn, as_owner=False)


@audit.command("seal")
def audit_seal() -> None:
    """Seal every org's unsealed audit rows into new blocks now (what the periodic job does),
    then apply the audit retention."""
    from dataclasses import asdict

    from app.audit.jobs import purge_all, seal_all

    async def seal_then_purge(engine: AsyncEngine, _: Settings) -> Any:
        report = await seal_all(engine)
        report.purged_blocks, report.purged_rows = await purge_all(engine)
        return report

    report = _run_as_app(seal_then_purge)
    payload = asdict(report)
    payload["org_ids"] = [str(o) for o in report.org_ids]
    _emit(payload)


@audit.command("verify")
def audit_verify(
    org: Annotated[UUID | None, typer.Option(help="only this org (default: every org)")] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            help="with --org: a head printed by an earlier verify (SEQ:HASH), recorded "
            "outside the database; that block must still be in the chain with that hash"
        ),
    ] = None,
) -> None:
    """Recompute each org's hash chain; name the first block that no longer matches (exit 1).
    Prints each org's head (SEQ:HASH): kept outside the database, it lets a later verify
    (--anchor) see that the newest blocks were deleted with their rows."""
    from app.audit.jobs import verify_all
    from app.audit.service import Anchor

    recorded = None
    if anchor is not None:
        seq, _, digest = anchor.partition(":")
        if org is None or not seq.isdigit() or len(digest) != 64:
            raise typer.BadParameter("--anchor is SEQ:HASH (64 hex digits) and needs --org")
        recorded = Anchor(int(seq), digest.lower())
    reports = _run_as_app(lambda engine, _: verify_all(engine, org, recorded))
    broken = [r for r in reports if not r.intact]
    for r in reports:
        if r.intact:
            span = f" (blocks {r.first_seq}..{r.last_seq})" if r.blocks else ""
            head = f", head {r.last_seq}:{r.head_hash}" if r.blocks else ""
            typer.echo(f"org {r.org_id}: intact, {r.blocks} blocks{span}, {r.rows} rows{head}")
        else:
            typer.echo(f"org {r.org_id}: BROKEN at block {r.broken_seq}: {r.reason}")
    typer.echo(
        f"{len(reports)} orgs checked, {len(reports) - len(broken)} intact, {len(broken)} broken"
    )
    if broken:
        raise typer.Exit(code=1)


@retention.command("run")
def retention_run(
    org: Annotated[UUID | None, typer.Option(help="only this org (default: every org)")] = None,
) -> None:
    """Purge mail past each org's email_retention_days now (what the daily job does), one
    receipt per account; prints a JSON summary."""
    from app.retention.jobs import run_retention

    report = _run_as_app(lambda engine, settings: run_retention(engine, settings, org_id=org))
    _emit(
        {
            "orgs": report.orgs,
            "accounts": report.accounts,
            "receipts": [str(r) for r in report.receipts],
            "counts": report.counts.as_dict(),
            "files_removed": report.files_removed,
        }
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

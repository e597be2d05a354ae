"""The procrastinate app and every task it runs: the one place that knows all job domains.

Domain services queue work through `app.jobs.queue.enqueue` (task names as strings) and
never import this module, so the domains' jobs can import their services without a cycle.
"""

from __future__ import annotations

import procrastinate

from app.accounts.jobs import blueprint as accounts_blueprint
from app.audit.jobs import blueprint as audit_blueprint
from app.config import Settings
from app.db.urls import app_url, libpq_url
from app.reconcile.jobs import blueprint as reconcile_blueprint
from app.retention.jobs import blueprint as retention_blueprint
from app.send.jobs import blueprint as send_blueprint
from app.sync.jobs import blueprint as sync_blueprint

TASK_NAMESPACE = "ce"


def create_job_app(settings: Settings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(app_url(settings, "psycopg")),
        kwargs={"application_name": "ce-email-jobs"},
        min_size=1,
        max_size=max(2, settings.worker_concurrency + 2),
    )
    return procrastinate.App(connector=connector)


_JOB_APPS: dict[str, procrastinate.App] = {}


def job_app_with_tasks(settings: Settings) -> procrastinate.App:
    """One job app per database per process: adding the blueprint's tasks renames them in
    place (the namespace prefix), so it must happen once."""
    key = libpq_url(app_url(settings, "psycopg"))
    if key not in _JOB_APPS:
        app = create_job_app(settings)
        for blueprint in (
            sync_blueprint,
            send_blueprint,
            accounts_blueprint,
            audit_blueprint,
            reconcile_blueprint,
            retention_blueprint,
        ):
            app.add_tasks_from(blueprint, namespace=TASK_NAMESPACE)
        _JOB_APPS[key] = app
    return _JOB_APPS[key]

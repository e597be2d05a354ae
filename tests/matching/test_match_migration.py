"""Revision 0004 on a database that already holds mail: the participants are backfilled."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.urls import owner_url
from tests.fixtures.database import alembic_config, throwaway_database


def test_upgrade_backfills_existing_mail_and_downgrades(base_settings: Settings) -> None:
    with throwaway_database(base_settings, "ce_email_mig4") as settings:
        _backfill_and_downgrade(settings)


def _backfill_and_downgrade(settings: Settings) -> None:
    config = alembic_config(settings)
    engine = create_engine(owner_url(settings))
    try:
        command.upgrade(config, "0003")
        org, user, account = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO organisations (id, name) VALUES (:o, 'O')"), {"o": org})
            conn.execute(
                text("INSERT INTO users (id, email) VALUES (:u, 'u@x.example')"), {"u": user}
            )
            conn.execute(
                text(
                    "INSERT INTO ce_email_accounts (id, org_id, owner_user_id, provider, "
                    "email_address) VALUES (:a, :o, :u, 'gmail', 'desk@clinic.example')"
                ),
                {"a": account, "o": org, "u": user},
            )
            conn.execute(
                text(
                    "INSERT INTO ce_emails (org_id, account_id, direction, status, from_address, "
                    "to_recipients, occurred_at) VALUES (:o, :a, 'inbound', 'received', "
                    '\'Pat@Example.net\', \'[{"address": "desk@clinic.example"}, '
                    '{"address": "dr@ward.hospital.org"}]\', now())'
                ),
                {"o": org, "a": account},
            )
        command.upgrade(config, "head")
        with engine.connect() as conn:
            addresses, domains = conn.execute(
                text("SELECT participant_addresses, participant_domains FROM ce_emails")
            ).one()
            side = conn.execute(
                text("SELECT kind, value FROM ce_email_participants ORDER BY 1, 2")
            ).all()
            forced = (
                conn.execute(
                    text(
                        "SELECT relforcerowsecurity FROM pg_class WHERE relname IN "
                        "('ce_emails', 'ce_email_accounts', 'ce_email_participants')"
                    )
                )
                .scalars()
                .all()
            )
        assert sorted(addresses) == ["dr@ward.hospital.org", "pat@example.net"]
        assert sorted(domains) == ["example.net", "hospital.org", "ward.hospital.org"]
        assert [tuple(r) for r in side] == [
            ("address", "dr@ward.hospital.org"),
            ("address", "pat@example.net"),
            ("domain", "example.net"),
            ("domain", "hospital.org"),
            ("domain", "ward.hospital.org"),
        ]
        assert forced == [True, True, True], "RLS is forced again after the backfill"
        command.downgrade(config, "0003")
        with engine.connect() as conn:
            columns = conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'ce_emails' AND column_name LIKE 'participant%'"
                )
            ).all()
            assert columns == []
        command.upgrade(config, "head")
    finally:
        engine.dispose()

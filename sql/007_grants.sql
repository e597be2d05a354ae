-- What ce_app may do: data manipulation on the tables it serves, through RLS; nothing on
-- the vault but its three functions.
GRANT USAGE ON SCHEMA public TO ce_app;
GRANT SELECT ON organisations, users TO ce_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    org_memberships, contacts, contact_emails, partners, partner_domains,
    activities, notifications, documents,
    ce_email_accounts, ce_emails, ce_email_links, ce_email_attachments,
    ce_email_tracking_events, ce_module_settings
TO ce_app;

GRANT USAGE ON SCHEMA vault TO ce_app;
REVOKE ALL ON vault.secrets FROM ce_app;
REVOKE ALL ON FUNCTION vault.put_secret(uuid, text, text, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.get_secret(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.delete_secrets(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.put_secret(uuid, text, text, bytea, bytea) TO ce_app;
GRANT EXECUTE ON FUNCTION vault.get_secret(uuid, text) TO ce_app;
GRANT EXECUTE ON FUNCTION vault.delete_secrets(uuid) TO ce_app;
-- ce_vault reaches the tables its foreign keys point at.
GRANT USAGE ON SCHEMA public TO ce_vault;
GRANT REFERENCES ON organisations, ce_email_accounts TO ce_vault;

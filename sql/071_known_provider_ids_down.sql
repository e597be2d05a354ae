DROP FUNCTION IF EXISTS ce_known_provider_ids(uuid, text[]);
REVOKE SELECT (account_id, provider_message_id) ON ce_emails FROM ce_directory;

DROP TABLE IF EXISTS ce_email_tracked_links;

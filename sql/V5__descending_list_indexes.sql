-- The message list reads newest first. MariaDB does not push a condition down into a
-- backward index scan, so with V4's ascending indexes a status or attempts filter looked up
-- every row of the range, and the optimizer could even read the scope's rows from the
-- newest down to the cursor instead of starting at it. Descending indexes (MariaDB 10.8+)
-- are read forwards; status and attempt_count in them let the filters be checked in the
-- index, so only the rows of the page are read from the table. The list query names its
-- index (FORCE INDEX) by scope and filter; see db/src/listing.rs.
ALTER TABLE messages
    DROP INDEX ix_messages_domain,
    DROP INDEX ix_messages_client,
    DROP INDEX ix_messages_sender,
    ADD KEY ix_messages_domain (domain, message_id DESC, status, attempt_count),
    ADD KEY ix_messages_client (domain, client_name, message_id DESC, status, attempt_count),
    ADD KEY ix_messages_sender (sender_hash, message_id DESC, status, attempt_count),
    ADD KEY ix_messages_recent (message_id DESC, status, attempt_count);

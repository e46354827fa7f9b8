-- A cheaper row. `message_id` (a UUIDv7, 36 ASCII characters) becomes the clustered primary
-- key. Before, every row went into six B-trees (the AUTO_INCREMENT `id`, the unique
-- `message_id` and four list indexes) and every secondary index carried both ids; now it goes
-- into five, and the duplicate check of the store's idempotent upsert is the primary key
-- lookup itself. The column stays text, so ids read, compare and sort as the text they are (a
-- UUIDv7's text order is its time order), on MariaDB and MySQL alike; its collation becomes
-- binary (ids are written in lower case), which makes every key comparison a byte compare:
-- under ops/bench MariaDB spent 28 µs a message with it and 30-32 with the case-insensitive
-- default. (MariaDB's 16-byte UUID type measured 26-28, but MySQL has no such type, MariaDB
-- orders version-7 ids by time only from 10.11.5 on, and a partial id compares as NULL.)
--
-- The table is rebuilt, read-only meanwhile (docs/operations.md, "Upgrading"). It comes first:
-- if the process dies during the rebuild, nothing of this migration is applied and it runs
-- again whole at the next start.
ALTER TABLE messages
    DROP COLUMN id,
    DROP INDEX uq_messages_message_id,
    MODIFY message_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ADD PRIMARY KEY (message_id);

-- The re-encryption walk follows the primary key; a rotation under way when this migration
-- runs starts its walk again from the first message (rows already done are skipped by their
-- key id).
ALTER TABLE key_rotations
    DROP COLUMN cursor_id,
    ADD COLUMN cursor_message_id CHAR(36) CHARACTER SET ascii NOT NULL
        DEFAULT '00000000-0000-0000-0000-000000000000' AFTER key_id;

-- A cheaper row. `message_id` (a UUIDv7) becomes the clustered primary key, stored in
-- MariaDB's 16-byte UUID type instead of 36 ASCII characters. Before, every row went into six
-- B-trees (the AUTO_INCREMENT `id`, the unique `message_id` and four list indexes) and every
-- secondary index carried both ids; now it goes into five, each a third smaller, and the
-- duplicate check of the idempotent upsert is the primary key lookup itself.
--
-- The UUID type reads and writes the usual text form ('0192…-7…'), so queries and operators
-- still use message ids as strings. MariaDB keeps a version-7 UUID's bytes in their order
-- (only version-1 UUIDs are stored with their time fields swapped), so the key order is the
-- id's time order, rows are appended at the end of the primary key, and the list indexes'
-- `message_id DESC` still reads newest first.
ALTER TABLE messages
    DROP COLUMN id,
    MODIFY message_id UUID NOT NULL,
    DROP INDEX uq_messages_message_id,
    ADD PRIMARY KEY (message_id);

-- The re-encryption walk follows the primary key; a rotation under way when this migration
-- runs starts its walk again from the first message (rows already done are skipped by their
-- key id).
ALTER TABLE key_rotations
    DROP COLUMN cursor_id,
    ADD COLUMN cursor_message_id UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        AFTER key_id;

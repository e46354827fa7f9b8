-- Re-encryption after a key rotation (`mbctl keys rotate`): one row per key that stored
-- bodies are being (or were) moved to. The store's background task advances `cursor_id`
-- (messages.id) in the same transaction as the rows it re-encrypted, so a killed store resumes
-- where it stopped.
CREATE TABLE key_rotations (
    key_id      INT UNSIGNED NOT NULL PRIMARY KEY,
    cursor_id   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_total  BIGINT UNSIGNED NOT NULL,
    rows_done   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    started_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    finished_at DATETIME(3) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

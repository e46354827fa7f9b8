-- V8: the columns that hold only ASCII tokens written by mb (hex digests, base64 ciphertext)
-- become binary strings. The bytes stored are the same; MariaDB no longer converts every
-- character of them from the connection's utf8mb4 to ascii on each insert (my_convert_fix).
-- VARBINARY, not BINARY: a blanked value of a failed row stays empty instead of zero-padded.
ALTER TABLE messages
    MODIFY client_id VARBINARY(64) NOT NULL,
    MODIFY sender_hash VARBINARY(64) NOT NULL,
    MODIFY body_ciphertext BLOB NOT NULL;

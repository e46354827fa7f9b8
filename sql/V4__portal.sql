-- The portal: who may read which messages, sessions that can be ended, login throttling, and
-- the indexes the message list needs.

-- A message's client by name (`demo` of `demo.example.com`), which stays the same when its
-- certificate is renewed; the fingerprint (client_id) does not.
ALTER TABLE messages
    ADD COLUMN client_name VARCHAR(64) NOT NULL DEFAULT '' AFTER client_id;
UPDATE messages m JOIN clients c ON c.fingerprint = m.client_id SET m.client_name = c.name;

-- The list is newest first, keyset-paginated on message_id (a UUIDv7: time-ordered, so a
-- date range is a message_id range too). Each scope and the sender search has an index that
-- ends in message_id, so a page is one index range read backwards, however deep.
ALTER TABLE messages
    DROP INDEX ix_messages_client_queued,
    DROP INDEX ix_messages_domain_queued,
    DROP INDEX ix_messages_sender,
    ADD KEY ix_messages_domain (domain, message_id),
    ADD KEY ix_messages_client (domain, client_name, message_id),
    ADD KEY ix_messages_sender (sender_hash, message_id);

-- A user reads their client's messages (role user), their domain's (admin) or all (superadmin).
ALTER TABLE users
    ADD COLUMN password_changed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) AFTER password_hash,
    ADD KEY ix_users_domain (domain);

-- One row per signed-in session; a JWT names its session, and a session that is gone (logged
-- out, its user disabled, its password reset) ends the JWT at once.
CREATE TABLE sessions (
    id          BINARY(16) NOT NULL PRIMARY KEY,
    user_id     BIGINT UNSIGNED NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at  DATETIME(3) NOT NULL,
    KEY ix_sessions_user (user_id),
    KEY ix_sessions_expires (expires_at)
) ENGINE = InnoDB;

-- Consecutive failed sign-ins per user name and per client address; checked before any
-- password hashing work.
CREATE TABLE login_failures (
    scope         ENUM('user', 'address') NOT NULL,
    subject       VARCHAR(128) NOT NULL,
    failures      INT UNSIGNED NOT NULL,
    last_failure  DATETIME(3) NOT NULL,
    locked_until  DATETIME(3) NULL,
    PRIMARY KEY (scope, subject)
) ENGINE = InnoDB;

-- Audit rows name the domain they concern, so a domain's administrators see theirs.
ALTER TABLE audit_log
    ADD COLUMN domain VARCHAR(253) CHARACTER SET ascii NULL AFTER target,
    ADD KEY ix_audit_domain (domain, id);

-- mb schema, version 1. Applied by refinery (mb-store at startup, or `mbctl migrate`).
-- Nothing here holds plaintext message content: bodies are AES-256-GCM-SIV ciphertext
-- (`k<key id>:<base64>`), sender numbers an HMAC-SHA256 plus a display mask.

CREATE TABLE messages (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id      CHAR(36) CHARACTER SET ascii NOT NULL,
    client_id       CHAR(64) CHARACTER SET ascii NOT NULL,
    domain          VARCHAR(253) CHARACTER SET ascii NOT NULL,
    sender_hash     CHAR(64) CHARACTER SET ascii NOT NULL,
    sender_mask     VARCHAR(24) CHARACTER SET ascii NOT NULL,
    body_ciphertext TEXT CHARACTER SET ascii NOT NULL,
    key_id          INT UNSIGNED NOT NULL,
    status          ENUM('queued', 'delivered', 'failed') NOT NULL,
    attempt_count   INT UNSIGNED NOT NULL,
    last_error      VARCHAR(512) NULL,
    submitted_at    DATETIME(3) NULL,
    queued_at       DATETIME(3) NOT NULL,
    created_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    delivered_at    DATETIME(3) NULL,
    updated_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_messages_message_id (message_id),
    KEY ix_messages_client_queued (client_id, queued_at),
    KEY ix_messages_domain_queued (domain, queued_at),
    KEY ix_messages_sender (sender_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE clients (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name         VARCHAR(64) NOT NULL,
    domain       VARCHAR(253) CHARACTER SET ascii NOT NULL,
    common_name  VARCHAR(320) NOT NULL,
    fingerprint  CHAR(64) CHARACTER SET ascii NOT NULL,
    serial       VARCHAR(64) CHARACTER SET ascii NOT NULL,
    not_before   DATETIME NOT NULL,
    not_after    DATETIME NOT NULL,
    status       ENUM('active', 'revoked', 'disabled') NOT NULL DEFAULT 'active',
    created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at   DATETIME(3) NULL,
    UNIQUE KEY uq_clients_fingerprint (fingerprint),
    UNIQUE KEY uq_clients_serial (serial),
    KEY ix_clients_name (name, domain)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE users (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username       VARCHAR(64) NOT NULL,
    password_hash  VARCHAR(255) NOT NULL,
    role           ENUM('user', 'admin', 'superadmin') NOT NULL,
    client_name    VARCHAR(64) NULL,
    domain         VARCHAR(253) CHARACTER SET ascii NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_login_at  DATETIME(3) NULL,
    UNIQUE KEY uq_users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE audit_log (
    id      BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    actor   VARCHAR(320) NOT NULL,
    action  VARCHAR(64) NOT NULL,
    target  VARCHAR(320) NOT NULL,
    details TEXT NULL,
    KEY ix_audit_at (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Administrator certificates are scoped: an `admin` certificate administers its own domain's
-- certificates only, a `superadmin` certificate every domain's.
ALTER TABLE clients
    MODIFY COLUMN kind ENUM('client', 'admin', 'superadmin') NOT NULL DEFAULT 'client',
    ADD KEY ix_clients_status (status, kind);

-- The version of the access list ingest polls: bumped inside every transaction that changes a
-- certificate, so its row lock orders the bumps by commit and a poll never sees a version
-- whose changes are not all committed.
CREATE TABLE access_version (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    v  BIGINT UNSIGNED NOT NULL
) ENGINE = InnoDB;
INSERT INTO access_version (id, v) VALUES (1, 1);

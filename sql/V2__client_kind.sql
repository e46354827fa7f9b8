-- Certificates are issued to clients (ingest) and to administrators (the store's /admin API).
ALTER TABLE clients
    ADD COLUMN kind ENUM('client', 'admin') NOT NULL DEFAULT 'client' AFTER domain,
    ADD COLUMN revoked_by VARCHAR(320) NULL AFTER revoked_at;

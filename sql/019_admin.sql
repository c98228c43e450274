-- 019: the admin API's accounts and sessions, and the audit trail (issue 24;
-- /work/wt/ADMIN-API.md, docs/design.md "Admin accounts and the audit trail").
-- One module has SQL on each table: lib/admin_account.c on admin_account,
-- lib/admin_session.c on admin_session, lib/audit.c on audit_log. Times in UTC
-- (UTC_TIMESTAMP). InnoDB with a primary key everywhere (Galera).
--   admin_account: an operator of the admin API, made by `restockctl admin add`.
--     role: viewer (reads) or operator (reads and changes).
--     password_hash: libsodium crypto_pwhash_str (Argon2id, the salt and the
--       limits inside the text); never the password.
--     failures: failed logins in a row (counted in one UPDATE, so that two
--       concurrent wrong logins both count); admin_lockout_failures of them set
--       locked_until (now + admin_lockout_seconds). A right login resets both.
--     disabled: 1 while `restockctl admin disable` holds it (no login, no session).
CREATE TABLE IF NOT EXISTS admin_account (
  account_id    INT UNSIGNED     NOT NULL AUTO_INCREMENT,
  name          VARCHAR(64)      NOT NULL,
  role          VARCHAR(16)      NOT NULL,
  password_hash VARCHAR(255)     NOT NULL,
  failures      INT UNSIGNED     NOT NULL DEFAULT 0,
  locked_until  DATETIME(6)      NULL,
  disabled      TINYINT          NOT NULL DEFAULT 0,
  created_at    DATETIME(6)      NOT NULL,
  last_login_at DATETIME(6)      NULL,
  PRIMARY KEY (account_id),
  UNIQUE KEY uq_admin_account_name (name),
  CONSTRAINT ck_admin_account_role CHECK (role IN ('viewer', 'operator'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

--   admin_session: a login's session. token_hash: SHA-256 of the cookie's token
--     (32 random bytes, base64url), which is stored nowhere, so that a copy of
--     the database opens no session. csrf_token: what X-Restock-CSRF must carry
--     (not a credential alone: it is given back to the session's holder).
--     expires_at: the absolute end (login + admin_session_lifetime); the idle end
--     is last_seen_at + admin_session_idle.
CREATE TABLE IF NOT EXISTS admin_session (
  token_hash   BINARY(32)   NOT NULL,
  account_id   INT UNSIGNED NOT NULL,
  csrf_token   CHAR(43)     NOT NULL,
  created_at   DATETIME(6)  NOT NULL,
  last_seen_at DATETIME(6)  NOT NULL,
  expires_at   DATETIME(6)  NOT NULL,
  remote_addr  VARCHAR(64)  NOT NULL,
  PRIMARY KEY (token_hash),
  KEY ix_admin_session_account (account_id),
  KEY ix_admin_session_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

--   audit_log: every change made through restockctl or the admin API, written in
--     the transaction of the change. actor: "restockctl:<unix user>" or
--     "admin:<account>"; source: "local" (restockctl, with its tty) or the
--     client's address; action: product.set, order.fulfil, …; target: the sku,
--     order id, message id, account name…; before_json/after_json: JSON text,
--     never a secret, password or hash (NULL: nothing before, or after).
CREATE TABLE IF NOT EXISTS audit_log (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  at          DATETIME(6)     NOT NULL,
  actor       VARCHAR(128)    NOT NULL,
  source      VARCHAR(128)    NOT NULL,
  action      VARCHAR(32)     NOT NULL,
  target      VARCHAR(255)    NOT NULL,
  before_json TEXT            NULL,
  after_json  TEXT            NULL,
  PRIMARY KEY (id),
  KEY ix_audit_log_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Append-only: the database itself refuses to change or remove a row, whoever
-- asks. Each trigger's body is one statement, so that it needs no BEGIN … END
-- and no DELIMITER (a command of the mysql client, not of the server): the
-- migration runner (ctl/migrate.c) sends the file as it is, and the server
-- ends each statement at its ';'. DROP first: re-runnable, as every migration.
-- (TRUNCATE and DROP TABLE fire no trigger: the service's database user is
-- given no DROP on it, docs/operations.md says so.)
DROP TRIGGER IF EXISTS audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only: rows are never changed';
DROP TRIGGER IF EXISTS audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only: rows are never deleted';

//! Portal users, their sessions and sign-in throttling, shared by mb-store (the portal's API)
//! and mbctl (`mbctl user …`).
//!
//! * Passwords are argon2id hashes (PHC strings); the plain password is never stored or logged.
//! * A user has a role: `user` (reads one client's messages; needs a client and a domain),
//!   `admin` (a domain's; needs a domain) or `superadmin` (everything).
//! * A session is a row; the portal's JWT names it. Logging out deletes it, and disabling a
//!   user, resetting their password or changing their role deletes all of theirs, so existing
//!   JWTs stop working at once.
//! * Failed sign-ins are counted per user name and per client address; once a count reaches
//!   its limit, sign-ins are refused for the lockout time *before* any password is hashed.

use crate::Db;
use mb_shared::status::Role;
use mysql_async::prelude::*;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Db(#[from] mysql_async::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("no such user `{0}`")]
    NotFound(String),
    #[error("user `{0}` exists already")]
    Exists(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A portal user as stored (without the password hash).
pub use mb_shared::api::UserRecord as User;

const USER_COLUMNS: &str = "users.id, users.username, users.role, users.client_name, \
     users.domain, users.disabled, \
     CAST(UNIX_TIMESTAMP(users.created_at) * 1000 AS SIGNED) AS created_ms, \
     CAST(UNIX_TIMESTAMP(users.last_login_at) * 1000 AS SIGNED) AS last_login_ms";

/// Who a user is and what they may read.
#[derive(Debug, Clone)]
pub struct Profile {
    pub role: Role,
    /// The client (certificate name) a `user` reads.
    pub client_name: Option<String>,
    /// The domain a `user` or `admin` belongs to.
    pub domain: Option<String>,
}

impl Profile {
    /// A profile is complete for its role: a user needs a client and a domain, an admin a
    /// domain, a superadmin neither (and has none).
    pub fn check(&self) -> Result<(), UserError> {
        let name_ok = |s: &Option<String>| {
            s.as_deref().is_some_and(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
        };
        match self.role {
            Role::User if !name_ok(&self.client_name) || !name_ok(&self.domain) => Err(
                UserError::Invalid("a user needs a client and a domain".into()),
            ),
            Role::Admin if !name_ok(&self.domain) || self.client_name.is_some() => Err(
                UserError::Invalid("an admin needs a domain and no client".into()),
            ),
            Role::Superadmin if self.domain.is_some() || self.client_name.is_some() => Err(
                UserError::Invalid("a superadmin has no domain and no client".into()),
            ),
            _ => Ok(()),
        }
    }
}

/// Which users an administrator may see and change: a domain admin the users and admins of
/// their domain, a superadmin everyone.
#[derive(Debug, Clone, Copy)]
pub enum UserScope<'a> {
    All,
    Domain(&'a str),
}

impl UserScope<'_> {
    fn clause(&self) -> (&'static str, Vec<mysql_async::Value>) {
        match self {
            UserScope::All => ("TRUE", vec![]),
            UserScope::Domain(d) => (
                "users.domain = ? AND users.role <> 'superadmin'",
                vec![(*d).into()],
            ),
        }
    }

    /// Whether a user with `profile` is within this scope.
    pub fn allows(&self, profile: &Profile) -> bool {
        match self {
            UserScope::All => true,
            UserScope::Domain(d) => {
                profile.role != Role::Superadmin && profile.domain.as_deref() == Some(d)
            }
        }
    }
}

pub fn check_username(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(
            "a user name is 1 to 64 letters, digits, and - _ . @".into(),
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), UserError> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=1024).contains(&chars) {
        return Err(UserError::Invalid(format!(
            "a password is {MIN_PASSWORD_CHARS} to 1024 characters"
        )));
    }
    Ok(())
}

/// An argon2id hash of `password` with a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, UserError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches `hash`; a malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash to verify against when the user does not exist, so that a sign-in for an unknown
/// name takes as long as one for a known name.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never matches").unwrap_or_default())
}

/// Creates a user; the audit log names `actor`.
pub async fn create(
    db: &Db,
    username: &str,
    password: &str,
    profile: &Profile,
    actor: &str,
) -> Result<User, UserError> {
    check_username(username)?;
    check_password(password)?;
    profile.check()?;
    let hash = hash_password(password)?;
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    let exists: Option<u64> = tx
        .exec_first("SELECT id FROM users WHERE username = ?", (username,))
        .await?;
    if exists.is_some() {
        return Err(UserError::Exists(username.to_owned()));
    }
    tx.exec_drop(
        "INSERT INTO users (username, password_hash, role, client_name, domain) \
         VALUES (?, ?, ?, ?, ?)",
        (
            username,
            &hash,
            profile.role,
            &profile.client_name,
            &profile.domain,
        ),
    )
    .await?;
    crate::audit(
        &mut tx,
        &crate::AuditEntry {
            actor,
            action: "user.create",
            target: username,
            domain: profile.domain.as_deref(),
            details: &format!("role={}", profile.role),
        },
    )
    .await?;
    tx.commit().await?;
    find(db, username)
        .await?
        .ok_or_else(|| UserError::NotFound(username.to_owned()))
}

pub async fn find(db: &Db, username: &str) -> Result<Option<User>, UserError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"),
            (username,),
        )
        .await?)
}

/// The users in `scope`, by name.
pub async fn list(db: &Db, scope: UserScope<'_>) -> Result<Vec<User>, UserError> {
    let (clause, params) = scope.clause();
    Ok(db
        .pool()
        .get_conn()
        .await?
        .exec(
            format!("SELECT {USER_COLUMNS} FROM users WHERE {clause} ORDER BY username"),
            params,
        )
        .await?)
}

/// One change to a user, with what the audit log calls it.
pub enum Change<'a> {
    Disable,
    Enable,
    Password(&'a str),
    Profile(&'a Profile),
}

/// Applies `change` to `username` if they are in `scope`; every change but enabling ends the
/// user's sessions at once; a new password or enabling lifts a sign-in lock of the user name.
pub async fn change(
    db: &Db,
    username: &str,
    scope: UserScope<'_>,
    change: Change<'_>,
    actor: &str,
) -> Result<(), UserError> {
    let (set, params, action, details): (&str, Vec<mysql_async::Value>, &str, String) =
        match &change {
            Change::Disable => ("disabled = TRUE", vec![], "user.disable", String::new()),
            Change::Enable => ("disabled = FALSE", vec![], "user.enable", String::new()),
            Change::Password(pw) => {
                check_password(pw)?;
                (
                    "password_hash = ?, password_changed_at = UTC_TIMESTAMP(3)",
                    vec![hash_password(pw)?.into()],
                    "user.password",
                    String::new(),
                )
            }
            Change::Profile(p) => {
                p.check()?;
                if !scope.allows(p) {
                    return Err(UserError::Invalid(
                        "that role or domain is outside what you administer".into(),
                    ));
                }
                (
                    "role = ?, client_name = ?, domain = ?",
                    vec![
                        p.role.into(),
                        p.client_name.clone().into(),
                        p.domain.clone().into(),
                    ],
                    "user.role",
                    format!(
                        "role={} client={} domain={}",
                        p.role,
                        p.client_name.as_deref().unwrap_or("-"),
                        p.domain.as_deref().unwrap_or("-")
                    ),
                )
            }
        };
    let (clause, scope_params) = scope.clause();
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    let mut find_params: Vec<mysql_async::Value> = vec![username.into()];
    find_params.extend(scope_params);
    let row: Option<(u64, Option<String>)> = tx
        .exec_first(
            format!(
                "SELECT users.id, users.domain FROM users \
                 WHERE users.username = ? AND {clause} FOR UPDATE"
            ),
            find_params,
        )
        .await?;
    let (id, domain) = row.ok_or_else(|| UserError::NotFound(username.to_owned()))?;
    let mut update = params;
    update.push(id.into());
    tx.exec_drop(format!("UPDATE users SET {set} WHERE id = ?"), update)
        .await?;
    if !matches!(change, Change::Enable) {
        tx.exec_drop("DELETE FROM sessions WHERE user_id = ?", (id,))
            .await?;
    }
    if matches!(change, Change::Enable | Change::Password(_)) {
        // Whoever locked themselves out and was given a new password (or let in again) may
        // sign in at once.
        tx.exec_drop(
            "DELETE FROM login_failures WHERE scope = 'user' AND subject = ?",
            (username,),
        )
        .await?;
    }
    crate::audit(
        &mut tx,
        &crate::AuditEntry {
            actor,
            action,
            target: username,
            domain: domain.as_deref(),
            details: &details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What `check_login` found.
pub enum Login {
    /// The password matched: the user (possibly disabled; the caller decides).
    Ok(User),
    /// Wrong user name or password.
    Refused,
    /// Too many failures: try again after this long. No password was checked.
    Locked(Duration),
}

/// Sign-in throttling settings.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Consecutive failures for one user name before it is locked.
    pub max_user_failures: u32,
    /// Consecutive failures from one address before it is locked.
    pub max_address_failures: u32,
    pub lockout: Duration,
}

/// Checks a sign-in: lockouts first (no hashing while locked), then the password; failures
/// are counted, a success clears the counts and records the sign-in time.
pub async fn check_login(
    db: &Db,
    username: &str,
    password: &str,
    address: &str,
    throttle: &Throttle,
) -> Result<Login, UserError> {
    if let Some(wait) = lockout(db, username, address).await? {
        return Ok(Login::Locked(wait));
    }
    let row: Option<(String, u64)> = db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT password_hash, id FROM users WHERE username = ?",
            (username,),
        )
        .await?;
    let hash = row.as_ref().map_or(decoy_hash(), |(h, _)| h.as_str());
    let matches = verify_password(hash, password) && row.is_some();
    if !matches {
        record_failure(db, username, address, throttle).await?;
        return Ok(Login::Refused);
    }
    let mut conn = db.pool().get_conn().await?;
    conn.exec_drop(
        "DELETE FROM login_failures WHERE (scope = 'user' AND subject = ?) \
         OR (scope = 'address' AND subject = ?)",
        (username, address),
    )
    .await?;
    let user = find(db, username)
        .await?
        .ok_or_else(|| UserError::NotFound(username.to_owned()))?;
    Ok(Login::Ok(user))
}

/// How long until the user name or the address may try again, if either is locked.
async fn lockout(db: &Db, username: &str, address: &str) -> Result<Option<Duration>, UserError> {
    let ms: Option<Option<i64>> = db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT CAST(MAX(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(3), locked_until)) / 1000 AS SIGNED) \
             FROM login_failures WHERE locked_until > UTC_TIMESTAMP(3) \
             AND ((scope = 'user' AND subject = ?) OR (scope = 'address' AND subject = ?))",
            (username, address),
        )
        .await?;
    Ok(ms
        .flatten()
        .map(|ms| Duration::from_millis(ms.max(1) as u64)))
}

async fn record_failure(
    db: &Db,
    username: &str,
    address: &str,
    t: &Throttle,
) -> Result<(), UserError> {
    let mut conn = db.pool().get_conn().await?;
    let lock_secs = t.lockout.as_secs_f64();
    for (scope, subject, max) in [
        ("user", username, t.max_user_failures),
        ("address", address, t.max_address_failures),
    ] {
        // A count that had locked (and whose lock is over) starts again from one.
        conn.exec_drop(
            "INSERT INTO login_failures (scope, subject, failures, last_failure, locked_until) \
             VALUES (?, ?, 1, UTC_TIMESTAMP(3), IF(1 >= ?, UTC_TIMESTAMP(3) + INTERVAL ? SECOND, NULL)) \
             ON DUPLICATE KEY UPDATE \
               failures = IF(locked_until IS NOT NULL, 1, failures + 1), \
               locked_until = IF(IF(locked_until IS NOT NULL, 1, failures) >= ?, \
                                 UTC_TIMESTAMP(3) + INTERVAL ? SECOND, NULL), \
               last_failure = UTC_TIMESTAMP(3)",
            (
                scope,
                subject.chars().take(128).collect::<String>(),
                max,
                lock_secs,
                max,
                lock_secs,
            ),
        )
        .await?;
    }
    Ok(())
}

/// A new session of `user_id`, valid for `ttl`; returns its id.
pub async fn open_session(db: &Db, user_id: u64, ttl: Duration) -> Result<[u8; 16], UserError> {
    let id: [u8; 16] = rand::random();
    let mut conn = db.pool().get_conn().await?;
    conn.exec_drop(
        "INSERT INTO sessions (id, user_id, expires_at) \
         VALUES (?, ?, UTC_TIMESTAMP(3) + INTERVAL ? SECOND)",
        (id.to_vec(), user_id, ttl.as_secs()),
    )
    .await?;
    conn.exec_drop(
        "UPDATE users SET last_login_at = UTC_TIMESTAMP(3) WHERE id = ?",
        (user_id,),
    )
    .await?;
    // Sweep what has expired, a little at a time.
    conn.query_drop("DELETE FROM sessions WHERE expires_at < UTC_TIMESTAMP(3) LIMIT 100")
        .await?;
    Ok(id)
}

/// The user of a live session: not expired, not logged out, the user not disabled.
pub async fn session_user(db: &Db, session: &[u8]) -> Result<Option<User>, UserError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            format!(
                "SELECT {USER_COLUMNS} FROM sessions JOIN users ON users.id = sessions.user_id \
                 WHERE sessions.id = ? AND sessions.expires_at > UTC_TIMESTAMP(3) \
                 AND NOT users.disabled"
            ),
            (session.to_vec(),),
        )
        .await?)
}

pub async fn close_session(db: &Db, session: &[u8]) -> Result<(), UserError> {
    db.pool()
        .get_conn()
        .await?
        .exec_drop("DELETE FROM sessions WHERE id = ?", (session.to_vec(),))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_a_salt_and_verify() {
        let h1 = hash_password("correct horse battery").unwrap();
        let h2 = hash_password("correct horse battery").unwrap();
        assert!(h1.starts_with("$argon2id$"));
        assert_ne!(h1, h2, "salted");
        assert!(verify_password(&h1, "correct horse battery"));
        assert!(!verify_password(&h1, "correct horse batterz"));
        assert!(!verify_password("not a hash", "x"));
        assert!(!verify_password(decoy_hash(), ""));
    }

    #[test]
    fn profiles_must_fit_their_role() {
        let p = |role, client: Option<&str>, domain: Option<&str>| Profile {
            role,
            client_name: client.map(str::to_owned),
            domain: domain.map(str::to_owned),
        };
        assert!(
            p(Role::User, Some("demo"), Some("example.com"))
                .check()
                .is_ok()
        );
        assert!(p(Role::User, None, Some("example.com")).check().is_err());
        assert!(p(Role::Admin, None, Some("example.com")).check().is_ok());
        assert!(
            p(Role::Admin, Some("demo"), Some("example.com"))
                .check()
                .is_err()
        );
        assert!(p(Role::Superadmin, None, None).check().is_ok());
        assert!(
            p(Role::Superadmin, None, Some("example.com"))
                .check()
                .is_err()
        );
        assert!(
            p(Role::User, Some("a b"), Some("example.com"))
                .check()
                .is_err()
        );
    }

    #[test]
    fn a_domain_scope_holds_its_domain_below_superadmin() {
        let user = Profile {
            role: Role::User,
            client_name: Some("demo".into()),
            domain: Some("a.com".into()),
        };
        let boss = Profile {
            role: Role::Superadmin,
            client_name: None,
            domain: None,
        };
        assert!(UserScope::Domain("a.com").allows(&user));
        assert!(!UserScope::Domain("b.com").allows(&user));
        assert!(!UserScope::Domain("a.com").allows(&boss));
        assert!(UserScope::All.allows(&boss));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_username("alice@example.com").is_ok());
        assert!(check_username("").is_err() && check_username("a b").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
    }
}

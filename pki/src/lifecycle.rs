//! The certificate lifecycle against the `clients` table, shared by `mbctl cert …` and the
//! store's `/admin/certificates` API: issue, renew, revoke, disable, list, and the access list
//! (active client certificates, CRL, revoked serials, disabled clients) that ingest polls.
//! Every change writes an `audit_log` row naming who did it.
//!
//! What an administrator may touch is a [`Scope`]: an `admin` certificate its own domain's
//! certificates, a `superadmin` (and `mbctl`, which holds the database password) every one.

use crate::ca::{Ca, CaError, Issued, Profile};
use mb_db::Db;
use mb_shared::domains::Domain;
use mb_shared::status::{ClientKind, ClientStatus};
use mysql_async::prelude::*;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Db(#[from] mysql_async::Error),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// Validity of an issued certificate, in days.
pub const MAX_DAYS: i64 = 3650;

/// The certificate profile of a kind.
pub fn profile(kind: ClientKind) -> Profile<'static> {
    match kind {
        ClientKind::Client => Profile::Client,
        ClientKind::Admin | ClientKind::Superadmin => Profile::Admin,
    }
}

/// The certificates an administrator may see and change.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    Domain(&'a Domain),
}

impl Scope<'_> {
    pub fn allows(&self, domain: &Domain) -> bool {
        match self {
            Scope::All => true,
            Scope::Domain(d) => *d == domain,
        }
    }

    /// The rows in scope: a domain's administrator sees and changes neither other domains'
    /// certificates nor superadmin certificates, whatever their domain.
    fn clause(&self) -> (&'static str, Option<mysql_async::Value>) {
        match self {
            Scope::All => ("TRUE", None),
            Scope::Domain(d) => (
                "domain = ? AND kind <> 'superadmin'",
                Some(d.as_str().into()),
            ),
        }
    }
}

pub use mb_shared::api::CertificateRecord as CertRow;

/// What a new certificate is: `<name>.<domain>`, of `kind`, valid `days` days.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub name: &'a str,
    pub domain: &'a Domain,
    pub kind: ClientKind,
    pub days: i64,
}

impl Request<'_> {
    fn check(&self) -> Result<(), CertError> {
        check_name(self.name)?;
        check_days(self.days)
    }

    pub fn common_name(&self) -> String {
        format!("{}.{}", self.name, self.domain)
    }
}

fn check_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CertError::Invalid(
            "a client name is 1 to 64 letters, digits, - and _".into(),
        ))
    }
}

fn check_days(days: i64) -> Result<(), CertError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(CertError::Invalid(format!(
            "validity must be 1 to {MAX_DAYS} days, got {days}"
        )))
    }
}

/// Issues a certificate and records it.
pub async fn issue(db: &Db, ca: &Ca, req: Request<'_>, actor: &str) -> Result<Issued, CertError> {
    req.check()?;
    let issued = ca.issue(&req.common_name(), profile(req.kind), req.days)?;
    record(db, &req, &issued, actor, "cert.issue", "").await?;
    Ok(issued)
}

/// The kind of the active certificates of `<name>.<domain>`, if it has any.
pub async fn active_kind(
    db: &Db,
    name: &str,
    domain: &Domain,
) -> Result<Option<ClientKind>, CertError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT kind FROM clients WHERE name = ? AND domain = ? AND status = 'active' \
             ORDER BY not_after DESC LIMIT 1",
            (name, domain.as_str()),
        )
        .await?)
}

/// Issues a new certificate with the same CN and kind; the old ones stay valid until they
/// expire.
pub async fn renew(db: &Db, ca: &Ca, req: Request<'_>, actor: &str) -> Result<Issued, CertError> {
    req.check()?;
    let previous: Vec<String> = db
        .pool()
        .get_conn()
        .await?
        .exec(
            "SELECT serial FROM clients WHERE name = ? AND domain = ? AND kind = ? \
             AND status = 'active'",
            (req.name, req.domain.as_str(), req.kind),
        )
        .await?;
    if previous.is_empty() {
        return Err(CertError::NotFound(format!(
            "no active certificate for {} to renew",
            req.common_name()
        )));
    }
    let issued = ca.issue(&req.common_name(), profile(req.kind), req.days)?;
    let details = format!("previous serials still valid: {}", previous.join(","));
    record(db, &req, &issued, actor, "cert.renew", &details).await?;
    Ok(issued)
}

async fn record(
    db: &Db,
    req: &Request<'_>,
    c: &Issued,
    actor: &str,
    action: &str,
    extra: &str,
) -> Result<(), CertError> {
    let cn = req.common_name();
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    tx.exec_drop(
        "INSERT INTO clients (name, domain, kind, common_name, fingerprint, serial, not_before, not_after) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            req.name,
            req.domain.as_str(),
            req.kind,
            &cn,
            &c.fingerprint,
            &c.serial,
            mb_shared::time::mysql_datetime(c.not_before),
            mb_shared::time::mysql_datetime(c.not_after),
        ),
    )
    .await?;
    let details = format!(
        "serial={} fingerprint={} not_after={} {extra}",
        c.serial,
        c.fingerprint,
        mb_shared::time::format_rfc3339(c.not_after)
    );
    mb_db::audit(
        &mut tx,
        &mb_db::AuditEntry {
            actor,
            action,
            target: &cn,
            domain: Some(req.domain.as_str()),
            details: details.trim_end(),
        },
    )
    .await?;
    bump_access_version(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Marks the access list changed, inside the transaction that changes it (see V3).
async fn bump_access_version(
    tx: &mut mysql_async::Transaction<'_>,
) -> Result<(), mysql_async::Error> {
    tx.query_drop("UPDATE access_version SET v = v + 1 WHERE id = 1")
        .await
}

/// Which certificates a revoke or disable applies to.
pub enum Selector<'a> {
    /// Every certificate of `<name>.<domain>` (or of `name` in any domain).
    Name {
        name: &'a str,
        domain: Option<&'a Domain>,
    },
    Serial(&'a str),
}

impl Selector<'_> {
    fn clause(&self) -> (&'static str, Vec<mysql_async::Value>) {
        match self {
            Selector::Name {
                name,
                domain: Some(d),
            } => (
                "name = ? AND domain = ?",
                vec![(*name).into(), d.as_str().into()],
            ),
            Selector::Name { name, domain: None } => ("name = ?", vec![(*name).into()]),
            Selector::Serial(s) => ("serial = ?", vec![s.to_ascii_lowercase().into()]),
        }
    }

    /// Whether no certificate can be selected: serials are hex, in an ASCII column, which
    /// MariaDB refuses to compare with a string holding anything else (error 1267, "illegal
    /// mix of collations"), so such a serial is answered "not found" without asking.
    fn matches_nothing(&self) -> bool {
        matches!(self, Selector::Serial(s) if !s.is_ascii())
    }
}

/// A change of certificate status: what it applies to, from which states, and to which.
struct Transition<'a> {
    which: &'a Selector<'a>,
    scope: Scope<'a>,
    from: [ClientStatus; 2],
    to: ClientStatus,
    action: &'static str,
}

/// Revokes the selected certificates; returns the serials newly revoked.
pub async fn revoke(
    db: &Db,
    which: &Selector<'_>,
    scope: Scope<'_>,
    actor: &str,
) -> Result<Vec<String>, CertError> {
    let t = Transition {
        which,
        scope,
        from: [ClientStatus::Active, ClientStatus::Disabled],
        to: ClientStatus::Revoked,
        action: "cert.revoke",
    };
    set_status(db, &t, actor).await
}

/// Disables (or re-enables) the selected client: its certificates are refused while disabled.
pub async fn set_disabled(
    db: &Db,
    which: &Selector<'_>,
    scope: Scope<'_>,
    disabled: bool,
    actor: &str,
) -> Result<Vec<String>, CertError> {
    let (from, to, action) = if disabled {
        (
            ClientStatus::Active,
            ClientStatus::Disabled,
            "client.disable",
        )
    } else {
        (
            ClientStatus::Disabled,
            ClientStatus::Active,
            "client.enable",
        )
    };
    let t = Transition {
        which,
        scope,
        from: [from, from],
        to,
        action,
    };
    set_status(db, &t, actor).await
}

async fn set_status(db: &Db, t: &Transition<'_>, actor: &str) -> Result<Vec<String>, CertError> {
    let none = || CertError::NotFound("no matching certificate in a state that allows this".into());
    if t.which.matches_nothing() {
        return Err(none());
    }
    let (which, mut params) = t.which.clause();
    let (scope, scope_param) = t.scope.clause();
    params.extend(scope_param);
    params.push(t.from[0].into());
    params.push(t.from[1].into());
    let filter = format!("{which} AND {scope} AND status IN (?, ?)");
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    let rows: Vec<(String, String, String)> = tx
        .exec(
            format!("SELECT serial, common_name, domain FROM clients WHERE {filter} FOR UPDATE"),
            params.clone(),
        )
        .await?;
    if rows.is_empty() {
        return Err(none());
    }
    let revoking = t.to == ClientStatus::Revoked;
    let mut update: Vec<mysql_async::Value> = vec![t.to.into(), revoking.into(), revoking.into()];
    update.push(actor.into());
    update.extend(params);
    tx.exec_drop(
        format!(
            "UPDATE clients SET status = ?, \
             revoked_at = IF(?, UTC_TIMESTAMP(3), revoked_at), \
             revoked_by = IF(?, ?, revoked_by) \
             WHERE {filter}"
        ),
        update,
    )
    .await?;
    for (serial, cn, domain) in &rows {
        mb_db::audit(
            &mut tx,
            &mb_db::AuditEntry {
                actor,
                action: t.action,
                target: cn,
                domain: Some(domain),
                details: &format!("serial={serial}"),
            },
        )
        .await?;
    }
    bump_access_version(&mut tx).await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|(s, _, _)| s).collect())
}

/// The certificates in `scope`, newest first, with days to expiry.
pub async fn list(db: &Db, scope: Scope<'_>) -> Result<Vec<CertRow>, CertError> {
    let (clause, param) = scope.clause();
    let rows = db
        .pool()
        .get_conn()
        .await?
        .exec(
            format!(
                "SELECT name, domain, kind, common_name, fingerprint, serial, status, \
                 DATE_FORMAT(not_after, '%Y-%m-%dT%H:%i:%sZ') AS not_after, \
                 CAST(FLOOR(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), not_after) / 86400) AS SIGNED) \
                   AS days_left, \
                 DATE_FORMAT(revoked_at, '%Y-%m-%dT%H:%i:%sZ') AS revoked_at \
                 FROM clients WHERE {clause} ORDER BY created_at DESC, id DESC"
            ),
            param.into_iter().collect::<Vec<_>>(),
        )
        .await?;
    Ok(rows)
}

/// An administrator certificate that is active now: its kind and domain.
pub async fn active_admin(
    db: &Db,
    fingerprint: &str,
) -> Result<Option<(ClientKind, String)>, CertError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT kind, domain FROM clients WHERE fingerprint = ? \
             AND kind IN ('admin', 'superadmin') AND status = 'active' \
             AND not_after > UTC_TIMESTAMP()",
            (fingerprint,),
        )
        .await?)
}

/// Who ingest admits and refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Fingerprints of active client (sender) certificates.
    pub active: Vec<String>,
    /// (serial, revoked at) of every revoked certificate.
    pub revoked: Vec<(String, OffsetDateTime)>,
    /// Fingerprints of disabled clients' certificates.
    pub disabled: Vec<String>,
}

/// How long a published CRL is valid; it is re-signed whenever it changes, and at least daily.
pub const CRL_VALIDITY: time::Duration = time::Duration::days(2);

/// The CRLs (PEM, one per CA) listing `revoked`. Each lists every revoked serial: an entry for
/// another CA's certificate never matches (CRLs are matched by issuer), and serials are random
/// 127-bit numbers.
pub fn signed_crls(
    cas: &crate::authorities::Authorities,
    revoked: &[(String, OffsetDateTime)],
) -> Result<String, CaError> {
    let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
    let mut pem = String::new();
    for ca in cas.all() {
        pem.push_str(&ca.crl(revoked, now, CRL_VALIDITY)?);
    }
    Ok(pem)
}

/// A value that changes whenever the access list does: one primary-key read.
pub async fn access_version(db: &Db) -> Result<u64, CertError> {
    let v: Option<u64> = db
        .pool()
        .get_conn()
        .await?
        .query_first("SELECT v FROM access_version WHERE id = 1")
        .await?;
    Ok(v.unwrap_or_default())
}

pub async fn access_list(db: &Db) -> Result<AccessList, CertError> {
    type Row = (String, String, ClientKind, ClientStatus, Option<i64>);
    let rows: Vec<Row> = db
        .pool()
        .get_conn()
        .await?
        .query(
            "SELECT serial, fingerprint, kind, status, CAST(UNIX_TIMESTAMP(revoked_at) AS SIGNED) \
             FROM clients ORDER BY serial",
        )
        .await?;
    let mut out = AccessList::default();
    for (serial, fingerprint, kind, status, revoked_at) in rows {
        match status {
            ClientStatus::Active if kind == ClientKind::Client => out.active.push(fingerprint),
            ClientStatus::Active => {}
            ClientStatus::Revoked => {
                let at = OffsetDateTime::from_unix_timestamp(revoked_at.unwrap_or(0))
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                out.revoked.push((serial, at));
            }
            ClientStatus::Disabled => out.disabled.push(fingerprint),
        }
    }
    Ok(out)
}

/// One active certificate's expiry, for the expiry metric.
#[derive(Debug, FromRow)]
pub struct Expiry {
    pub common_name: String,
    pub serial: String,
    pub kind: ClientKind,
    pub not_after: i64,
}

pub async fn active_expiries(db: &Db) -> Result<Vec<Expiry>, CertError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .query(
            "SELECT common_name, serial, kind, \
             CAST(UNIX_TIMESTAMP(not_after) AS SIGNED) AS not_after \
             FROM clients WHERE status = 'active'",
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_validity_are_checked() {
        assert!(check_name("acme-1_x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_days(1).is_ok() && check_days(MAX_DAYS).is_ok());
        for bad in [0, -5, MAX_DAYS + 1, i64::MAX] {
            let err = check_days(bad).unwrap_err().to_string();
            assert!(err.contains("1 to 3650"), "{err}");
        }
    }

    #[test]
    fn a_serial_that_is_not_ascii_selects_nothing() {
        assert!(Selector::Serial("§#").matches_nothing());
        assert!(Selector::Serial("\u{2f9a6}").matches_nothing());
        assert!(!Selector::Serial("0AbC").matches_nothing());
        let d = Domain::parse("a.com").unwrap();
        for domain in [None, Some(&d)] {
            assert!(!Selector::Name { name: "é", domain }.matches_nothing());
        }
    }

    #[test]
    fn a_domain_scope_allows_its_own_domain_only() {
        let a = Domain::parse("a.com").unwrap();
        let b = Domain::parse("b.com").unwrap();
        assert!(Scope::Domain(&a).allows(&a));
        assert!(!Scope::Domain(&a).allows(&b));
        assert!(Scope::All.allows(&b));
    }
}

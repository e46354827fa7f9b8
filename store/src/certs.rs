//! The certificate lifecycle against the `clients` table, shared by `mbctl cert …` and the
//! store's `/admin/certificates` API: issue, renew, revoke, disable, list, and the revocation
//! state (CRL, revoked serials, disabled clients) that ingest polls. Every change writes an
//! `audit_log` row naming who did it.

use crate::ca::{Ca, CaError, Issued, Profile};
use crate::db::Db;
use mb_shared::message::Domain;
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

/// Who a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Client,
    Admin,
}

impl Kind {
    pub fn profile(self) -> Profile<'static> {
        match self {
            Kind::Client => Profile::Client,
            Kind::Admin => Profile::Admin,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::Admin => "admin",
        }
    }
}

/// One issued certificate as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertRow {
    pub name: String,
    pub domain: String,
    pub kind: String,
    pub common_name: String,
    pub fingerprint: String,
    pub serial: String,
    pub status: String,
    pub not_after: String,
    pub days_left: i64,
    pub revoked_at: Option<String>,
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

fn sql_time(t: OffsetDateTime) -> Option<String> {
    crate::db::to_mysql_datetime(&mb_shared::format_rfc3339(t))
}

/// Issues a certificate for `<name>.<domain>` and records it.
pub async fn issue(
    db: &Db,
    ca: &Ca,
    name: &str,
    domain: &Domain,
    kind: Kind,
    days: i64,
    actor: &str,
) -> Result<Issued, CertError> {
    check_name(name)?;
    if !(1..=3650).contains(&days) {
        return Err(CertError::Invalid("validity must be 1 to 3650 days".into()));
    }
    let cn = format!("{name}.{domain}");
    let issued = ca.issue(&cn, kind.profile(), days)?;
    record(
        db,
        name,
        domain,
        kind,
        &cn,
        &issued,
        actor,
        "cert.issue",
        String::new(),
    )
    .await?;
    Ok(issued)
}

/// Issues a new certificate with the same CN; the old ones stay valid until they expire.
pub async fn renew<'a>(
    db: &Db,
    ca_for: impl Fn(Kind) -> &'a Ca,
    name: &str,
    domain: &Domain,
    days: i64,
    actor: &str,
) -> Result<Issued, CertError> {
    let mut conn = db.pool().get_conn().await?;
    let current: Vec<(String, String)> = conn
        .exec(
            "SELECT serial, kind FROM clients WHERE name = ? AND domain = ? AND status = 'active' \
             ORDER BY not_after DESC",
            (name, domain.as_str()),
        )
        .await?;
    drop(conn);
    let Some((_, kind)) = current.first() else {
        return Err(CertError::NotFound(format!(
            "no active certificate for {name}.{domain} to renew"
        )));
    };
    let kind = if kind == "admin" {
        Kind::Admin
    } else {
        Kind::Client
    };
    let cn = format!("{name}.{domain}");
    let issued = ca_for(kind).issue(&cn, kind.profile(), days)?;
    let previous: Vec<&str> = current.iter().map(|(s, _)| s.as_str()).collect();
    let details = format!("previous serials still valid: {}", previous.join(","));
    record(
        db,
        name,
        domain,
        kind,
        &cn,
        &issued,
        actor,
        "cert.renew",
        details,
    )
    .await?;
    Ok(issued)
}

#[allow(clippy::too_many_arguments)]
async fn record(
    db: &Db,
    name: &str,
    domain: &Domain,
    kind: Kind,
    cn: &str,
    c: &Issued,
    actor: &str,
    action: &str,
    extra: String,
) -> Result<(), CertError> {
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    tx.exec_drop(
        "INSERT INTO clients (name, domain, kind, common_name, fingerprint, serial, not_before, not_after) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            name,
            domain.as_str(),
            kind.as_str(),
            cn,
            &c.fingerprint,
            &c.serial,
            sql_time(c.not_before),
            sql_time(c.not_after),
        ),
    )
    .await?;
    let details = format!(
        "serial={} fingerprint={} not_after={} {extra}",
        c.serial,
        c.fingerprint,
        mb_shared::format_rfc3339(c.not_after)
    );
    tx.exec_drop(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (?, ?, ?, ?)",
        (actor, action, cn, details.trim_end()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
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
}

/// Revokes the selected certificates; returns the serials newly revoked.
pub async fn revoke(db: &Db, which: &Selector<'_>, actor: &str) -> Result<Vec<String>, CertError> {
    set_status(
        db,
        which,
        "revoked",
        &["active", "disabled"],
        actor,
        "cert.revoke",
    )
    .await
}

/// Disables (or re-enables) the selected client: its certificates are refused while disabled.
pub async fn set_disabled(
    db: &Db,
    which: &Selector<'_>,
    disabled: bool,
    actor: &str,
) -> Result<Vec<String>, CertError> {
    if disabled {
        set_status(db, which, "disabled", &["active"], actor, "client.disable").await
    } else {
        set_status(db, which, "active", &["disabled"], actor, "client.enable").await
    }
}

async fn set_status(
    db: &Db,
    which: &Selector<'_>,
    to: &str,
    from: &[&str],
    actor: &str,
    action: &str,
) -> Result<Vec<String>, CertError> {
    let (clause, params) = which.clause();
    let from_list = from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    let rows: Vec<(String, String)> = tx
        .exec(
            format!("SELECT serial, common_name FROM clients WHERE {clause} AND status IN ({from_list}) FOR UPDATE"),
            params.clone(),
        )
        .await?;
    if rows.is_empty() {
        return Err(CertError::NotFound(
            "no matching certificate in a state that allows this".into(),
        ));
    }
    let mut update_params: Vec<mysql_async::Value> =
        vec![to.into(), to.into(), to.into(), actor.into()];
    update_params.extend(params);
    tx.exec_drop(
        format!(
            "UPDATE clients SET status = ?, \
             revoked_at = IF(? = 'revoked', UTC_TIMESTAMP(3), revoked_at), \
             revoked_by = IF(? = 'revoked', ?, revoked_by) \
             WHERE {clause} AND status IN ({from_list})"
        ),
        update_params,
    )
    .await?;
    for (serial, cn) in &rows {
        tx.exec_drop(
            "INSERT INTO audit_log (actor, action, target, details) VALUES (?, ?, ?, ?)",
            (actor, action, cn, format!("serial={serial}")),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(rows.into_iter().map(|(s, _)| s).collect())
}

/// Every certificate, newest first, with days to expiry.
pub async fn list(db: &Db) -> Result<Vec<CertRow>, CertError> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        Option<String>,
    );
    let rows: Vec<Row> = db
        .pool()
        .get_conn()
        .await?
        .query(
            "SELECT name, domain, kind, common_name, fingerprint, serial, status, \
             DATE_FORMAT(not_after, '%Y-%m-%dT%H:%i:%sZ'), \
             FLOOR(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), not_after) / 86400), \
             DATE_FORMAT(revoked_at, '%Y-%m-%dT%H:%i:%sZ') \
             FROM clients ORDER BY created_at DESC, id DESC",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                name,
                domain,
                kind,
                common_name,
                fingerprint,
                serial,
                status,
                not_after,
                days_left,
                revoked_at,
            )| CertRow {
                name,
                domain,
                kind,
                common_name,
                fingerprint,
                serial,
                status,
                not_after,
                days_left,
                revoked_at,
            },
        )
        .collect())
}

/// Whether `fingerprint` belongs to an active administrator certificate.
pub async fn is_active_admin(db: &Db, fingerprint: &str) -> Result<bool, CertError> {
    let row: Option<u8> = db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT 1 FROM clients WHERE fingerprint = ? AND kind = 'admin' AND status = 'active' \
             AND not_after > UTC_TIMESTAMP()",
            (fingerprint,),
        )
        .await?;
    Ok(row.is_some())
}

/// What ingest needs to refuse revoked and disabled clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revocations {
    /// (serial, revoked at) of every revoked certificate.
    pub revoked: Vec<(String, OffsetDateTime)>,
    /// Fingerprints (client ids) of disabled clients' certificates.
    pub disabled: Vec<String>,
}

pub async fn revocations(db: &Db) -> Result<Revocations, CertError> {
    let rows: Vec<(String, String, String, Option<i64>)> = db
        .pool()
        .get_conn()
        .await?
        .query(
            "SELECT serial, fingerprint, status, CAST(UNIX_TIMESTAMP(revoked_at) AS SIGNED) \
             FROM clients WHERE status <> 'active' ORDER BY serial",
        )
        .await?;
    let mut out = Revocations {
        revoked: Vec::new(),
        disabled: Vec::new(),
    };
    for (serial, fingerprint, status, at) in rows {
        if status == "revoked" {
            let at = OffsetDateTime::from_unix_timestamp(at.unwrap_or(0))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            out.revoked.push((serial, at));
        } else {
            out.disabled.push(fingerprint);
        }
    }
    Ok(out)
}

/// (common name, serial, kind, expiry as Unix seconds) of every active certificate.
pub async fn active_expiries(db: &Db) -> Result<Vec<(String, String, String, i64)>, CertError> {
    Ok(db
        .pool()
        .get_conn()
        .await?
        .query(
            "SELECT common_name, serial, kind, CAST(UNIX_TIMESTAMP(not_after) AS SIGNED) \
             FROM clients WHERE status = 'active'",
        )
        .await?)
}

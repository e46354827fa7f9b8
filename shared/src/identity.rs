//! Who is on the other end of a mutual-TLS connection, read from its certificate.
//!
//! Clients have CN `<client>.<domain>`; service certificates (ingest, deliver, store, portal)
//! carry the organisational unit [`SERVICE_OU`] and CN `mb-<service>`.

use crate::message::ClientId;

/// Organisational unit of every service certificate issued by `mbctl init`.
pub const SERVICE_OU: &str = "mb-services";
/// Organisational unit of administrator certificates (`mbctl cert issue --admin`).
pub const ADMIN_OU: &str = "mb-admins";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub client_id: ClientId,
    pub common_name: String,
    pub org_unit: Option<String>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// The issuer's distinguished name (DER), to tell which CA signed it.
    pub issuer: Vec<u8>,
}

/// The subject distinguished name (DER) of a certificate, e.g. of a CA.
pub fn subject_of(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparseable certificate: {e}"))?;
    Ok(cert.subject().as_raw().to_vec())
}

impl PeerIdentity {
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unparseable certificate: {e}"))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or("certificate has no common name")?
            .to_owned();
        let org_unit = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned);
        Ok(Self {
            client_id: ClientId::from_cert_der(der),
            common_name,
            org_unit,
            serial: cert
                .raw_serial_as_string()
                .replace(':', "")
                .to_ascii_lowercase(),
            not_after: cert.validity().not_after.timestamp(),
            issuer: cert.issuer().as_raw().to_vec(),
        })
    }

    /// Whether this is an administrator certificate.
    pub fn is_admin(&self) -> bool {
        self.org_unit.as_deref() == Some(ADMIN_OU)
    }

    /// Whether this is one of our own services (and which one: `mb-deliver`, …).
    pub fn service_name(&self) -> Option<&str> {
        (self.org_unit.as_deref() == Some(SERVICE_OU)).then_some(self.common_name.as_str())
    }
}

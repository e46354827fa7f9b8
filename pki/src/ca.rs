//! The certificate authority (pure Rust, rcgen): creates the CA and issues service and client
//! certificates. Keys are ECDSA P-256; every private key file is written with mode 0600.

use mb_shared::identity::{ADMIN_OU, SERVICE_OU};
use mb_shared::secret::write_private_file;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] mb_shared::secret::SecretError),
    #[error("CA `{subject}` cannot sign: {reason}")]
    UnusableSubject {
        subject: String,
        reason: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a certificate is for.
pub enum Profile<'a> {
    /// A client of ingest: CN `<name>.<domain>`, client auth only.
    Client,
    /// An administrator of the store's `/admin` API: OU `mb-admins`, client auth only.
    Admin,
    /// One of our services: OU `mb-services`, server and client auth, these DNS/IP names.
    Service { sans: &'a [&'a str] },
}

/// An issued certificate with its key, and what gets recorded about it.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Issued {
    /// Writes `<dir>/<name>.crt` and `<dir>/<name>.key` (0600).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), CaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let crt = dir.join(format!("{name}.crt"));
        std::fs::write(&crt, &self.cert_pem).map_err(io_err(&crt))?;
        let key = dir.join(format!("{name}.key"));
        write_private_file(&key, self.key_pem.as_bytes()).map_err(io_err(&key))
    }
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Creates a new CA (10 years) named `common_name` and writes its certificate and key.
    pub fn create(cert_path: &Path, key_path: &Path, common_name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mb");
        // Path length 0: the CA signs end-entity certificates only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        if let Some(dir) = cert_path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if let Some(dir) = key_path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        std::fs::write(cert_path, cert.pem()).map_err(io_err(cert_path))?;
        write_private_file(key_path, key.serialize_pem().as_bytes()).map_err(io_err(key_path))?;
        Ok(Self {
            issuer: Issuer::new(params, key),
        })
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key_pem = mb_shared::secret::read_private_file(key_path)?;
        Self::from_pem(&cert_pem, &String::from_utf8_lossy(&key_pem))
    }

    /// A CA from its certificate and private key, both PEM: what [`Ca::load`] reads from its
    /// files. The fuzz targets (`fuzz/`) call it on arbitrary certificates.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let ca = Self {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        };
        ca.check_subject(cert_pem)?;
        Ok(ca)
    }

    /// rcgen does not copy the CA's subject into what it signs: it parses the name and writes
    /// it again. Some names cannot be written (an attribute type whose object identifier has no
    /// DER encoding, on which rcgen panics), and some do not survive (an attribute type used
    /// twice, as in `DC=example, DC=com`, keeps only its last value): a certificate or CRL whose
    /// issuer is not the CA's subject byte for byte belongs to no CA, so its clients would not
    /// chain and its revocations would not apply. Such a CA is refused when it is loaded, not
    /// found out when it signs. (Both found by the `certificate` fuzz target.)
    fn check_subject(&self, cert_pem: &str) -> Result<(), CaError> {
        fn unparseable<E>(_: E) -> rcgen::Error {
            rcgen::Error::CouldNotParseCertificate
        }
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(unparseable)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).map_err(unparseable)?;
        let unusable = |reason| CaError::UnusableSubject {
            subject: cert.subject().to_string(),
            reason,
        };
        // What yasna, rcgen's DER writer, asserts of an object identifier.
        let writable = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            let arcs: Option<Vec<u64>> = attr.attr_type().iter().map(Iterator::collect);
            matches!(arcs.as_deref(), Some(&[a, b, ..]) if a < 3 && (a == 2 || b < 40) && b < u64::MAX - 80)
        };
        if !cert.subject().iter_attributes().all(writable) {
            return Err(unusable(
                "an attribute type of its subject is not an object identifier that can be written",
            ));
        }
        let probe = CertificateParams::default().signed_by(self.issuer.key(), &self.issuer)?;
        let (_, probe) = x509_parser::parse_x509_certificate(probe.der()).map_err(unparseable)?;
        if probe.issuer().as_raw() != cert.subject().as_raw() {
            return Err(unusable(
                "what it signs would name another issuer, as its subject cannot be written again \
                 as it is (an attribute type used twice, such as DC=example, DC=com?), so its \
                 certificates would not chain to it; use a CA whose subject names each attribute once",
            ));
        }
        Ok(())
    }

    /// Issues a certificate for `common_name`, valid `days` days from now.
    pub fn issue(
        &self,
        common_name: &str,
        profile: Profile<'_>,
        days: i64,
    ) -> Result<Issued, CaError> {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            common_name,
            profile,
            now - Duration::minutes(5),
            now + Duration::days(days),
        )
    }

    /// Issues a certificate valid from `not_before` to `not_after`.
    pub fn issue_valid(
        &self,
        common_name: &str,
        profile: Profile<'_>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        match profile {
            Profile::Client => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Profile::Admin => {
                params
                    .distinguished_name
                    .push(DnType::OrganizationalUnitName, ADMIN_OU);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Profile::Service { sans } => {
                params
                    .distinguished_name
                    .push(DnType::OrganizationalUnitName, SERVICE_OU);
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                params.subject_alt_names = sans
                    .iter()
                    .map(|s| match s.parse::<std::net::IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => Ok(SanType::DnsName((*s).try_into()?)),
                    })
                    .collect::<Result<_, rcgen::Error>>()?;
            }
        }
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            fingerprint: mb_shared::message::ClientId::from_cert_der(cert.der()).0,
            serial: hex::encode(serial.to_bytes()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }
}

impl Ca {
    /// A CRL listing `revoked` (serial as lowercase hex, revocation time), valid for `valid_for`.
    pub fn crl(
        &self,
        revoked: &[(String, OffsetDateTime)],
        number: u64,
        valid_for: Duration,
    ) -> Result<String, CaError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + valid_for,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .filter_map(|(serial, at)| {
                    Some(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&hex::decode(serial).ok()?),
                        revocation_time: *at,
                        reason_code: Some(RevocationReason::Unspecified),
                        invalidity_date: None,
                    })
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// A random positive 128-bit serial.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<u8> {
        let (_, p) = parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }

    #[test]
    fn a_ca_whose_subject_repeats_an_attribute_is_refused_when_loaded() {
        // DC=com, DC=example, CN=Example Issuing CA: rcgen would write DC=example only.
        let cert =
            include_str!("../../fuzz/regressions/certificate/ca-two-dc-issuer-not-its-subject.pem");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let err = Ca::from_pem(cert, &key.serialize_pem()).err().unwrap();
        assert!(matches!(err, CaError::UnusableSubject { .. }), "{err}");
        assert!(err.to_string().contains("DC=example"), "{err}");
    }

    #[test]
    fn issues_end_entity_certificates_of_each_profile_under_a_path_length_zero_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(
            &dir.path().join("ca.crt"),
            &dir.path().join("ca.key"),
            "test CA",
        )
        .unwrap();
        let ca_der = parse(&std::fs::read_to_string(dir.path().join("ca.crt")).unwrap());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let bc = ca_cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca && bc.path_len_constraint == Some(0));

        let client = ca.issue("alice.example.com", Profile::Client, 30).unwrap();
        let der = parse(&client.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "alice.example.com"
        );
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(client.fingerprint.len(), 64);
        assert_eq!(client.serial, hex::encode(cert.raw_serial()));

        let admin = ca.issue("root.example.com", Profile::Admin, 30).unwrap();
        let der = parse(&admin.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ou = cert.subject().iter_organizational_unit().next().unwrap();
        assert_eq!(ou.as_str().unwrap(), mb_shared::identity::ADMIN_OU);

        let sans = ["localhost", "127.0.0.1"];
        let svc = ca
            .issue("mb-store", Profile::Service { sans: &sans }, 30)
            .unwrap();
        let der = parse(&svc.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        assert_eq!(
            cert.subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
                .len(),
            2
        );
    }

    #[test]
    fn a_crl_lists_the_revoked_serials_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(&dir.path().join("c.crt"), &dir.path().join("c.key"), "c").unwrap();
        let issued = ca.issue("x.example.com", Profile::Client, 1).unwrap();
        let pem = ca
            .crl(
                &[(issued.serial.clone(), OffsetDateTime::now_utc())],
                7,
                Duration::days(2),
            )
            .unwrap();
        let der = parse(&pem);
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, [issued.serial]);
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()).as_deref(),
            Some("7")
        );
    }
}

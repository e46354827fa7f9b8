//! The fuzz harnesses: one `pub fn <target>(data: &[u8])` per cargo-fuzz target in
//! `fuzz_targets/`, each feeding the bytes to the code that reads them in production and
//! asserting what must hold of the result (round trips, invariants), not only that nothing
//! panics.
//!
//! This file is compiled twice: into every fuzz target (nightly, `ops/fuzz`) and into
//! `tests/tests/fuzz_corpus.rs` (stable, run by `ops/test` and CI), which runs the committed
//! corpus `fuzz/corpus/<target>/` and every input that ever found a bug,
//! `fuzz/regressions/<target>/`, through the same functions.
#![allow(dead_code)] // each fuzz target uses one harness

use mb_pki::ca::{Ca, Profile};
use mb_shared::config::{Check, Validate};
use mb_shared::crypto::{CryptoError, Keyring, key_id};
use mb_shared::domains::{Domain, Domains, DomainsFile};
use mb_shared::extract::JsonRejection;
use mb_shared::identity::{ADMIN_OU, PeerIdentity, SERVICE_OU, subject_of};
use mb_shared::internal::Delivery;
use mb_shared::message::{MAX_BODY_CHARS, MessageIn, is_e164, mask_sender};
use mb_shared::streams::{self, DEAD_FIELDS, ENTRY_VERSION, StreamEntry};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// A harness: panics when a property does not hold of the input.
pub type Harness = fn(&[u8]);

/// Every target by name, for the corpus test.
pub const TARGETS: &[(&str, Harness)] = &[
    ("submit_json", submit_json),
    ("api_json", api_json),
    ("stream_entry", stream_entry),
    ("ciphertext", ciphertext),
    ("keyring_file", keyring_file),
    ("certificate", certificate),
    ("crl", crl),
    ("config", config),
];

// ---------------------------------------------------------------------------------------------
// Request validation and the JSON model

/// A `POST /api/v1/messages` body, and each message of a `POST /api/v1/messages/batch` body,
/// through `MessageIn::from_json` as ingest parses them (`ingest/src/messages.rs`, `batch.rs`).
pub fn submit_json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_message(&value);
    // The batch endpoint takes each element of `messages` without its `idempotency_key` as a
    // single submit takes its body.
    if let Some(Value::Array(items)) = value.get("messages") {
        for item in items {
            let mut item = item.clone();
            if let Some(obj) = item.as_object_mut() {
                obj.remove("idempotency_key");
            }
            check_message(&item);
        }
    }
}

fn check_message(value: &Value) {
    match MessageIn::from_json(value) {
        Ok(msg) => {
            assert!(is_e164(&msg.sender_number), "{msg:?}");
            let chars = msg.message_body.chars().count();
            assert!((1..=MAX_BODY_CHARS).contains(&chars), "{msg:?}");
            assert!(!msg.message_body.trim().is_empty(), "{msg:?}");
            // What was accepted is accepted again as it is: the normalised timestamp is a
            // fixed point, so a message re-submitted from a stored one keeps its time.
            let mut again =
                json!({"sender_number": msg.sender_number, "message_body": msg.message_body});
            if let Some(t) = &msg.timestamp {
                assert!(t.ends_with('Z') && t.len() == 24, "not normalised: {t}");
                again["metadata"] = json!({ "timestamp": t });
            }
            assert_eq!(MessageIn::from_json(&again).as_ref(), Ok(&msg));
            check_mask(&msg.sender_number);
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason: {value}");
            let obj = value.as_object();
            let meta = obj
                .and_then(|o| o.get("metadata"))
                .and_then(Value::as_object);
            for field in errors.keys() {
                // Every reason names a field: one that is required, or one the body has.
                let required = matches!(
                    field.as_str(),
                    "(body)" | "sender_number" | "message_body" | "metadata" | "metadata.timestamp"
                );
                let in_body = obj.is_some_and(|o| o.contains_key(field));
                let in_metadata = field
                    .strip_prefix("metadata.")
                    .is_some_and(|k| meta.is_some_and(|m| m.contains_key(k)));
                let named = required || in_body || in_metadata;
                assert!(named, "error for a field the body does not have: {field}");
            }
        }
    }
}

/// The sender mask never shows the whole number and shows only its first and last digits.
fn check_mask(number: &str) {
    let mask = mask_sender(number);
    let digits = &number[1..];
    let (head, tail) = mask[1..].split_once("****").expect("mask has ****");
    assert!(mask.starts_with('+'), "{mask}");
    assert!(
        digits.starts_with(head) && digits.ends_with(tail),
        "{number} → {mask}"
    );
    assert!(head.len() + tail.len() < digits.len(), "{number} → {mask}");
}

/// The JSON bodies of the store's `/api/v1`, `/admin` and `/internal/v1` endpoints through
/// `extract::parse`, the body reader of `ApiJson`.
pub fn api_json(data: &[u8]) {
    use mb_shared::api::*;
    use mb_shared::internal::{DeliverIn, FailedIn};
    check_api::<LoginIn>(data);
    check_api::<ProfileIn>(data);
    check_api::<CreateUserIn>(data);
    check_api::<PasswordIn>(data);
    check_api::<IssueIn>(data);
    check_api::<RenewIn>(data);
    check_api::<SelectIn>(data);
    check_api::<DeliverIn>(data);
    check_api::<FailedIn>(data);
}

/// Accepted bodies round-trip through their JSON; refusals are a 400 or a 422 naming one
/// field.
fn check_api<T: DeserializeOwned + Serialize>(data: &[u8]) {
    match mb_shared::extract::parse::<T>(data) {
        Ok(v) => {
            let once = serde_json::to_vec(&v).expect("serialises");
            let back: T = mb_shared::extract::parse(&once).unwrap_or_else(|e| {
                panic!(
                    "{} does not read back its own JSON {}: {:?}",
                    std::any::type_name::<T>(),
                    String::from_utf8_lossy(&once),
                    e.fields
                )
            });
            assert_eq!(
                serde_json::to_vec(&back).expect("serialises"),
                once,
                "{}",
                std::any::type_name::<T>()
            );
        }
        Err(JsonRejection {
            status,
            code,
            fields,
            ..
        }) => match status.as_u16() {
            400 => assert!(fields.is_empty() && code == "malformed_json"),
            422 => assert!(
                fields.len() == 1 && code == "validation_failed",
                "{fields:?}"
            ),
            other => panic!("unexpected status {other}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Stream entries

/// A stream entry as deliver reads it from Redis: the input is `field=value` lines (a line
/// without `=` is a field with an empty value), read back by `StreamEntry::from_fields`.
pub fn stream_entry(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<(&str, &str)> = text
        .split('\n')
        .map(|line| line.split_once('=').unwrap_or((line, "")))
        .collect();
    let decoded = StreamEntry::from_fields(fields.iter().copied());
    // A dead letter carries extra fields, which a redrive drops: neither may change the entry.
    let without_dead = StreamEntry::from_fields(
        fields
            .iter()
            .copied()
            .filter(|(k, _)| !DEAD_FIELDS.contains(k)),
    );
    assert_eq!(decoded, without_dead, "dead-letter fields change the entry");
    let entry = match decoded {
        Ok(entry) => entry,
        Err(why) => {
            assert!(why.contains('`'), "the reason names no field: {why}");
            return;
        }
    };
    // decode(encode(x)) == x, through the XADD fields and through the JSON deliver sends.
    let encoded = entry.to_fields();
    assert!(encoded.contains(&("v", ENTRY_VERSION.to_owned())));
    let again = StreamEntry::from_fields(encoded.iter().map(|(k, v)| (*k, v.as_str())));
    assert_eq!(again.as_ref(), Ok(&entry));
    let json = serde_json::to_string(&Delivery {
        entry: entry.clone(),
        attempt: 3,
    })
    .expect("serialises");
    let delivery: Delivery = serde_json::from_str(&json).expect("reads back its JSON");
    assert_eq!(delivery.entry, entry);
    assert_eq!(delivery.attempt, 3);
    // The domain in the entry is the one of the stream it belongs to.
    let key = streams::stream_key(&entry.domain);
    assert_eq!(
        streams::domain_of_stream_key(&key).as_ref(),
        Some(&entry.domain)
    );
}

// ---------------------------------------------------------------------------------------------
// Ciphertext and keyring

/// The keyring of the ciphertext target: keys 1 and 2, 2 active.
fn fixed_keyring() -> &'static Keyring {
    static KEYRING: LazyLock<Keyring> = LazyLock::new(|| {
        let json = br#"{"active": 2, "keys": {
            "1": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "2": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}}"#;
        Keyring::from_json(json).expect("the fixed keyring loads")
    });
    &KEYRING
}

/// A stored body: the input is `<message id>\n<ciphertext>`, decrypted as the store and the
/// portal do with the message id as associated data. Then the same bytes as a plaintext
/// through encrypt and decrypt.
pub fn ciphertext(data: &[u8]) {
    let keyring = fixed_keyring();
    let (aad, ct) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let ct = String::from_utf8_lossy(ct);
    match keyring.decrypt(aad, &ct) {
        Ok(plain) => {
            let id = key_id(&ct).expect("a decrypted ciphertext has a key id");
            assert!(keyring.has_key(id));
            // Re-encryption under the active key keeps the plaintext.
            let new = keyring.reencrypt(aad, &ct).expect("re-encrypts");
            assert_eq!(key_id(&new), Some(keyring.active_key_id()));
            assert_eq!(keyring.decrypt(aad, &new).expect("decrypts"), plain);
        }
        Err(CryptoError::UnknownKey(id)) => {
            assert_eq!(key_id(&ct), Some(id));
            assert!(!keyring.has_key(id));
        }
        Err(CryptoError::Malformed | CryptoError::Authentication) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }

    // decrypt(encrypt(x)) == x, bound to its message id, and any changed character of the
    // ciphertext is refused.
    let sealed = keyring.encrypt(aad, data);
    assert_eq!(keyring.decrypt(aad, &sealed).expect("decrypts"), data);
    let mut other_aad = aad.to_vec();
    other_aad.push(b'x');
    assert!(matches!(
        keyring.decrypt(&other_aad, &sealed),
        Err(CryptoError::Authentication)
    ));
    let mut tampered = sealed.into_bytes();
    let at = data.len() % tampered.len();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    assert!(keyring.decrypt(aad, &tampered).is_err(), "{tampered}");
}

/// A keyring file's contents through `Keyring::from_json` (what `Keyring::load` reads).
pub fn keyring_file(data: &[u8]) {
    let keyring = match Keyring::from_json(data) {
        Ok(k) => k,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    let active = keyring.active_key_id();
    assert!(keyring.has_key(active));
    assert!(keyring.key_ids().contains(&active));
    let sealed = keyring.encrypt(b"id", b"body");
    assert_eq!(key_id(&sealed), Some(active));
    assert_eq!(keyring.decrypt(b"id", &sealed).expect("decrypts"), b"body");
    // The keys never show in Debug output (it goes to logs).
    let debug = format!("{keyring:?}");
    if let Ok(Value::Object(file)) = serde_json::from_slice::<Value>(data)
        && let Some(Value::Object(keys)) = file.get("keys")
    {
        for key in keys.values().filter_map(Value::as_str) {
            assert!(!debug.contains(key), "Debug shows a key: {debug}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and CRLs

/// A CA made once per process, the only trust anchor of [`verifier`].
struct TestCa {
    ca: Ca,
    /// The CA's key, PEM, also used to load fuzzed CA certificates.
    key_pem: String,
    roots: Arc<RootCertStore>,
    /// [`verifier`] without CRLs.
    plain: Arc<dyn ClientCertVerifier>,
}

fn test_ca() -> &'static TestCa {
    static CA: LazyLock<TestCa> = LazyLock::new(|| {
        mb_shared::tls::install_crypto_provider();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mb fuzz CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        let key_pem = key.serialize_pem();
        let mut roots = RootCertStore::empty();
        roots
            .add(cert.der().clone())
            .expect("the test CA is a valid anchor");
        let roots = Arc::new(roots);
        let plain = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .expect("builds");
        TestCa {
            ca: Ca::from_pem(&cert.pem(), &key_pem).expect("loads"),
            key_pem,
            roots,
            plain,
        }
    });
    &CA
}

/// What ingest verifies client certificates with (`tls::server_config`), trusting the test CA
/// and checking `crls`.
fn verifier(
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    WebPkiClientVerifier::builder(test_ca().roots.clone())
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
}

/// A certificate file's PEM contents, and the whole input as one DER certificate: through
/// what reads certificates in mb: the handshake's verifier, `PeerIdentity::from_der` (who is
/// calling), `subject_of` and the trust-anchor store (CA files), and `Ca::from_pem` (a CA
/// loaded by the store and mbctl to issue certificates).
pub fn certificate(data: &[u8]) {
    let _ = test_ca();
    for der in CertificateDer::pem_slice_iter(data).map_while(Result::ok) {
        check_pem_round_trip(&der);
        check_certificate(&der);
    }
    check_certificate(&CertificateDer::from(data));
}

fn check_pem_round_trip(der: &CertificateDer<'_>) {
    let pem = pem_text("CERTIFICATE", der);
    let back = CertificateDer::from_pem_slice(pem.as_bytes()).expect("reads its own PEM");
    assert_eq!(back.as_ref(), der.as_ref());
}

fn check_certificate(der: &CertificateDer<'_>) {
    let verified = test_ca()
        .plain
        .verify_client_cert(der, &[], UnixTime::now());
    assert!(
        verified.is_err(),
        "a certificate nobody signed with the test CA's key was verified"
    );
    let _ = RootCertStore::empty().add(der.clone().into_owned());

    let identity = PeerIdentity::from_der(der);
    let subject = subject_of(der);
    if let Ok(id) = &identity {
        assert!(subject.is_ok(), "identity read but not its subject");
        let fingerprint = &id.client_id.0;
        assert!(
            fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fingerprint}"
        );
        assert_eq!(
            id.client_id,
            mb_shared::message::ClientId::from_cert_der(der)
        );
        assert!(
            id.serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}",
            id.serial
        );
        assert_eq!(id.is_admin(), id.org_unit.as_deref() == Some(ADMIN_OU));
        assert_eq!(
            id.service_name().is_some(),
            id.org_unit.as_deref() == Some(SERVICE_OU)
        );
    }

    // A CA that loads issues certificates that chain to it: their issuer is its subject.
    let pem = pem_text("CERTIFICATE", der);
    if let Ok(ca) = Ca::from_pem(&pem, &test_ca().key_pem) {
        let subject = subject.expect("a loadable CA has a subject");
        // Refusing to issue is an answer; issuing a certificate that does not chain is not.
        let Ok(issued) = ca.issue("client.example.com", Profile::Client, 1) else {
            return;
        };
        let issued_der =
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("issued PEM");
        let issued_id = PeerIdentity::from_der(&issued_der).expect("issued certificate reads");
        assert_eq!(
            issued_id.issuer, subject,
            "the CA's certificates name another issuer than its subject"
        );
        assert_eq!(issued_id.common_name, "client.example.com");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `der` as PEM text with `label`.
fn pem_text(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// CRLs as ingest receives them from the store (PEM, `AccessListOut::crl_pem`), and the whole
/// input as one DER CRL: through the verifier ingest builds with them. Every CRL that parses
/// is signed again by `Ca::crl` with its revoked serials, which must all be in the result.
pub fn crl(data: &[u8]) {
    let _ = test_ca();
    let mut crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_slice_iter(data)
            .map_while(Result::ok)
            .collect();
    for der in &crls {
        let pem = pem_text("X509 CRL", der);
        let back = CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
            .expect("reads its own PEM");
        assert_eq!(back.as_ref(), der.as_ref());
    }
    crls.push(CertificateRevocationListDer::from(data.to_vec()));
    for der in crls {
        let _ = verifier(vec![der.clone()]);
        check_crl_resigned(&der);
    }
}

fn check_crl_resigned(der: &[u8]) {
    let Ok((_, parsed)) = x509_parser::parse_x509_crl(der) else {
        return;
    };
    // The serials and times as the store keeps them: lowercase hex, and a time MySQL holds (a
    // revocation before 1970 cannot be in the database, and webpki refuses such a CRL).
    let entries: Vec<_> = parsed
        .iter_revoked_certificates()
        .filter_map(|r| {
            let at = time::OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp());
            let at = mb_shared::time::to_storable_utc(at.ok()?)?;
            Some((r.serial().clone(), hex(r.raw_serial()), at))
        })
        .collect();
    let revoked: Vec<(String, time::OffsetDateTime)> = entries
        .iter()
        .map(|(_, serial, at)| (serial.clone(), *at))
        .collect();
    let pem = test_ca()
        .ca
        .crl(&revoked, 1, time::Duration::days(2))
        .expect("signs a CRL");
    let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).expect("CRL PEM");
    verifier(vec![der.clone()]).expect("ingest takes the CRL the CA signed");
    let (_, signed) = x509_parser::parse_x509_crl(&der).expect("the signed CRL parses");
    let mut want: Vec<_> = entries.into_iter().map(|(serial, _, _)| serial).collect();
    let mut got: Vec<_> = signed
        .iter_revoked_certificates()
        .map(|r| r.serial().clone())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the signed CRL lists other serials");
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A YAML configuration file: `${VAR}` expansion, then every service's `Config` and the
/// domains file, each parsed and validated as `config::load_checked` does.
pub fn config(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let env = |name: &str| match name {
        "MB_HOME" => Some("/var/lib/mb".to_owned()),
        "MB_REDIS_URL" => Some("redis://127.0.0.1:6379".to_owned()),
        _ => None,
    };
    let text = match mb_shared::config::expand_env(&raw, env) {
        Ok(text) => text,
        Err(var) => {
            assert!(raw.contains(&format!("${{{var}")), "{var} is not used");
            return;
        }
    };
    if !raw.contains("${") {
        assert_eq!(text, raw, "text without ${{ changed");
    }
    let path = Path::new("fuzz.yaml");
    check_config::<mb_ingest::config::Config>(path, &text);
    if let Some(cfg) = check_config::<mb_deliver::config::Config>(path, &text) {
        let every = cfg.claim_interval();
        assert!(
            (std::time::Duration::from_millis(50)..=std::time::Duration::from_secs(5))
                .contains(&every)
        );
    }
    check_config::<mb_store::config::Config>(path, &text);
    check_config::<mb_portal::config::Config>(path, &text);
    check_config::<mb_shared::server::Limits>(path, &text);
    if let Ok(file) = mb_shared::config::parse::<DomainsFile>(path, &text) {
        check_domains(file.domains.iter().map(|d| d.name.clone()));
    }
    for line in text.lines() {
        if let Some((_, value)) = line.split_once(':') {
            let _ = mb_shared::config::parse_duration(value);
        }
    }
}

fn check_config<T: DeserializeOwned + Validate>(path: &Path, text: &str) -> Option<T> {
    let cfg: T = match mb_shared::config::parse(path, text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.yaml: "), "{e}");
            return None;
        }
    };
    match cfg.validate(&Check::new(path)) {
        Ok(()) => Some(cfg),
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.yaml: "), "{e}");
            None
        }
    }
}

/// A configured domain set finds each of its domains, and maps `<client>.<domain>` onto it or
/// onto a longer configured domain it ends with.
fn check_domains(names: impl IntoIterator<Item = String>) {
    let Ok(domains) = Domains::from_names(names) else {
        return;
    };
    for d in domains.iter() {
        assert_eq!(Domain::parse(d.as_str()).as_ref(), Ok(d));
        assert_eq!(domains.get(d.as_str()), Some(d));
        let cn = format!("client.{d}");
        let found = domains.for_common_name(&cn).expect("maps to a domain");
        assert!(found.as_str().len() >= d.as_str().len() && cn.ends_with(found.as_str()));
    }
}

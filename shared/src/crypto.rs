//! Message crypto: bodies are encrypted with AES-256-GCM-SIV under a rotatable keyring, sender
//! numbers are HMAC-SHA256'd with a secret key.
//!
//! Ciphertext format (ASCII, stored as-is in Redis and MySQL): `k<key id>:<base64(nonce ‖ ct)>`.
//! The message id is the associated data, so a body cannot be moved onto another message.
//! The keyring file is JSON `{"active": 2, "keys": {"1": "<base64 32 bytes>", "2": "…"}}`,
//! mode 0600; the HMAC key file is base64 text, mode 0600.

use crate::secret::{SecretError, read_private_file, write_private_file};
use aes_gcm_siv::Aes256GcmSiv;
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::Mac;
use std::collections::BTreeMap;
use std::path::Path;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext uses key id {0}, which is not in the keyring")]
    UnknownKey(u32),
    #[error("ciphertext failed authentication")]
    Authentication,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyringFile {
    active: u32,
    keys: BTreeMap<u32, String>,
}

/// The body encryption keys; one is active for new messages, all can decrypt.
pub struct Keyring {
    active: u32,
    ciphers: BTreeMap<u32, Aes256GcmSiv>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let raw = read_private_file(path)?;
        Self::from_json(&raw).map_err(|reason| {
            SecretError::Invalid {
                path: path.to_owned(),
                reason,
            }
            .into()
        })
    }

    /// A keyring from the contents of a keyring file (the JSON in the module docs); the error
    /// says what is wrong with it. [`Keyring::load`] reads the file, refusing one that others
    /// can read, and calls this; the fuzz targets (`fuzz/`) call it on arbitrary bytes.
    pub fn from_json(raw: &[u8]) -> Result<Self, String> {
        let file: KeyringFile =
            serde_json::from_slice(raw).map_err(|e| format!("not keyring JSON: {e}"))?;
        let mut ciphers = BTreeMap::new();
        for (id, b64) in &file.keys {
            let key = B64
                .decode(b64)
                .map_err(|_| format!("key {id} is not base64"))?;
            let cipher = Aes256GcmSiv::new_from_slice(&key)
                .map_err(|_| format!("key {id} must be 32 bytes"))?;
            ciphers.insert(*id, cipher);
        }
        if !ciphers.contains_key(&file.active) {
            return Err(format!("active key {} is not in keys", file.active));
        }
        Ok(Self {
            active: file.active,
            ciphers,
        })
    }

    /// Writes a keyring with one new random key (id 1), or adds a key to an existing file and
    /// makes it active. Returns the new key id.
    pub fn add_key_to_file(path: &Path) -> Result<u32, CryptoError> {
        let mut file = if path.exists() {
            let raw = read_private_file(path)?;
            serde_json::from_slice(&raw).map_err(|e| SecretError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?
        } else {
            KeyringFile {
                active: 0,
                keys: BTreeMap::new(),
            }
        };
        let id = file.keys.keys().max().map_or(1, |m| m + 1);
        file.keys.insert(id, B64.encode(random_bytes::<32>()));
        file.active = id;
        let json = serde_json::to_vec_pretty(&file).map_err(|e| SecretError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        write_private_file(path, &json).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(id)
    }

    /// Removes a key that is no longer active from the file (see `mbctl keys retire`).
    pub fn remove_key_from_file(path: &Path, id: u32) -> Result<(), CryptoError> {
        let invalid = |reason: String| SecretError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let raw = read_private_file(path)?;
        let mut file: KeyringFile =
            serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?;
        if file.active == id {
            return Err(invalid(format!("key {id} is the active key")).into());
        }
        if file.keys.remove(&id).is_none() {
            return Err(CryptoError::UnknownKey(id));
        }
        let json = serde_json::to_vec_pretty(&file).map_err(|e| invalid(e.to_string()))?;
        write_private_file(path, &json).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(())
    }

    /// The key ids this keyring holds.
    pub fn key_ids(&self) -> Vec<u32> {
        self.ciphers.keys().copied().collect()
    }

    /// Decrypts and encrypts again under the active key (same message id). A ciphertext already
    /// under the active key is returned unchanged.
    pub fn reencrypt(&self, aad: &[u8], ciphertext: &str) -> Result<String, CryptoError> {
        if key_id(ciphertext) == Some(self.active) {
            return Ok(ciphertext.to_owned());
        }
        Ok(self.encrypt(aad, &self.decrypt(aad, ciphertext)?))
    }

    pub fn active_key_id(&self) -> u32 {
        self.active
    }

    pub fn has_key(&self, id: u32) -> bool {
        self.ciphers.contains_key(&id)
    }

    /// Encrypts `plaintext` under the active key, bound to `aad` (the message id).
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let cipher = &self.ciphers[&self.active];
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let nonce = aes_gcm_siv::Nonce::from(nonce_bytes);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM-SIV encryption of a <4 GiB buffer cannot fail");
        let mut buf = Vec::with_capacity(NONCE_LEN + ct.len());
        buf.extend_from_slice(&nonce_bytes);
        buf.extend_from_slice(&ct);
        format!("k{}:{}", self.active, B64.encode(buf))
    }

    pub fn decrypt(&self, aad: &[u8], ciphertext: &str) -> Result<Vec<u8>, CryptoError> {
        let id = key_id(ciphertext).ok_or(CryptoError::Malformed)?;
        let cipher = self.ciphers.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        let (_, b64) = ciphertext.split_once(':').ok_or(CryptoError::Malformed)?;
        let raw = B64.decode(b64).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = aes_gcm_siv::Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        cipher
            .decrypt(&nonce, Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Authentication)
    }
}

/// The keyring a running service uses: loaded at start, reloaded when its file changes (checked
/// every `interval`) or on SIGHUP, so `mbctl keys rotate` and `retire` need no restart. A file
/// that does not load (half-copied, wrong mode) is logged and the keys in use are kept.
pub struct LiveKeyring {
    path: std::path::PathBuf,
    current: arc_swap::ArcSwap<Keyring>,
    /// Signalled with the new active key id after each reload that changed the keyring.
    changed: tokio::sync::watch::Sender<u32>,
}

impl LiveKeyring {
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let keyring = Keyring::load(path)?;
        let (changed, _) = tokio::sync::watch::channel(keyring.active);
        Ok(Self {
            path: path.to_owned(),
            current: arc_swap::ArcSwap::from_pointee(keyring),
            changed,
        })
    }

    /// The keys as of now (cheap: an atomic load).
    pub fn get(&self) -> arc_swap::Guard<std::sync::Arc<Keyring>> {
        self.current.load()
    }

    /// The keys as of now, to keep across `.await`s.
    pub fn get_full(&self) -> std::sync::Arc<Keyring> {
        self.current.load_full()
    }

    /// Tells about reloads: the value is the active key id after the last one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.changed.subscribe()
    }

    /// Reads the file again; returns whether the key ids or the active key changed.
    pub fn reload(&self) -> Result<bool, CryptoError> {
        let new = Keyring::load(&self.path)?;
        let old = self.current.load();
        let same = old.active == new.active && old.ciphers.keys().eq(new.ciphers.keys());
        let active = new.active;
        let ids: Vec<u32> = new.ciphers.keys().copied().collect();
        self.current.store(std::sync::Arc::new(new));
        if !same {
            tracing::info!(active, key_ids = ?ids, "keyring reloaded");
            self.changed.send_replace(active);
        }
        Ok(!same)
    }

    /// Reloads on SIGHUP and whenever the file's modification time or size changes, until the
    /// process ends.
    pub fn spawn_watch(self: &std::sync::Arc<Self>, interval: std::time::Duration) {
        let this = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len()))
            };
            let mut seen = stamp(&this.path);
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                let now = stamp(&this.path);
                if !forced && now == seen {
                    continue;
                }
                seen = now;
                if let Err(e) = this.reload() {
                    tracing::error!(path = %this.path.display(), error = %e,
                        "keyring not reloaded; the keys in use are kept");
                }
            }
        });
    }
}

impl std::fmt::Debug for LiveKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The key id of a ciphertext in our format, if it is well formed.
pub fn key_id(ciphertext: &str) -> Option<u32> {
    let (head, _) = ciphertext.split_once(':')?;
    head.strip_prefix('k')?.parse().ok()
}

/// HMAC-SHA256 under a secret key: sender numbers and idempotency fingerprints.
#[derive(Clone)]
pub struct HmacKey(hmac::Hmac<sha2::Sha256>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

/// A secret key file (HMAC, JWT, CSRF): base64 text of at least 32 bytes, mode 0600.
pub fn read_secret_key(path: &Path) -> Result<Vec<u8>, CryptoError> {
    let raw = read_private_file(path)?;
    let key = B64
        .decode(String::from_utf8_lossy(&raw).trim())
        .map_err(|_| SecretError::Invalid {
            path: path.to_owned(),
            reason: "not base64".into(),
        })?;
    if key.len() < 32 {
        return Err(SecretError::Invalid {
            path: path.to_owned(),
            reason: "a key must be at least 32 bytes".into(),
        }
        .into());
    }
    Ok(key)
}

impl HmacKey {
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        Ok(Self::from_bytes(&read_secret_key(path)?))
    }

    pub fn from_bytes(key: &[u8]) -> Self {
        Self(hmac::Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// HMAC of the given parts, each length-prefixed so that part boundaries count.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Hex HMAC of the given parts (see [`HmacKey::tag`]).
    pub fn hex(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.tag(parts))
    }

    /// The searchable hash of a sender number.
    pub fn sender_hash(&self, number: &str) -> String {
        self.hex(&[b"sender", number.as_bytes()])
    }
}

/// Writes a new random base64 secret (HMAC or JWT key) with mode 0600.
pub fn write_random_secret(path: &Path) -> std::io::Result<()> {
    write_private_file(path, B64.encode(random_bytes::<32>()).as_bytes())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_decrypts_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        assert_eq!(Keyring::add_key_to_file(&path).unwrap(), 1);
        let k1 = Keyring::load(&path).unwrap();
        let ct = k1.encrypt(b"m1", "héllo".as_bytes());
        assert!(ct.starts_with("k1:"));
        assert!(!ct.contains("héllo"));
        assert_eq!(k1.decrypt(b"m1", &ct).unwrap(), "héllo".as_bytes());
        assert!(matches!(
            k1.decrypt(b"m2", &ct),
            Err(CryptoError::Authentication)
        ));

        assert_eq!(Keyring::add_key_to_file(&path).unwrap(), 2);
        let k2 = Keyring::load(&path).unwrap();
        assert!(k2.encrypt(b"m", b"x").starts_with("k2:"));
        assert_eq!(k2.decrypt(b"m1", &ct).unwrap(), "héllo".as_bytes());
        assert!(matches!(
            k1.decrypt(b"m", &k2.encrypt(b"m", b"x")),
            Err(CryptoError::UnknownKey(2))
        ));
    }

    #[test]
    fn reencrypts_under_the_active_key_and_retires_only_an_inactive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        Keyring::add_key_to_file(&path).unwrap();
        let old = Keyring::load(&path).unwrap().encrypt(b"m1", b"body");
        Keyring::add_key_to_file(&path).unwrap();
        let live = LiveKeyring::load(&path).unwrap();
        let new = live.get().reencrypt(b"m1", &old).unwrap();
        assert!(new.starts_with("k2:"));
        assert_eq!(live.get().decrypt(b"m1", &new).unwrap(), b"body");
        assert_eq!(
            live.get().reencrypt(b"m1", &new).unwrap(),
            new,
            "already active"
        );
        assert!(
            live.get().reencrypt(b"m2", &old).is_err(),
            "bound to its message id"
        );

        assert!(
            Keyring::remove_key_from_file(&path, 2).is_err(),
            "the active key stays"
        );
        Keyring::remove_key_from_file(&path, 1).unwrap();
        assert!(live.reload().unwrap(), "the key ids changed");
        assert_eq!(live.get().key_ids(), [2]);
        assert!(matches!(
            live.get().decrypt(b"m1", &old),
            Err(CryptoError::UnknownKey(1))
        ));
    }

    #[test]
    fn sender_hash_depends_on_the_key() {
        let a = HmacKey::from_bytes(&[1; 32]);
        let b = HmacKey::from_bytes(&[2; 32]);
        assert_eq!(a.sender_hash("+123"), a.sender_hash("+123"));
        assert_ne!(a.sender_hash("+123"), b.sender_hash("+123"));
        assert_eq!(a.sender_hash("+123").len(), 64);
    }
}

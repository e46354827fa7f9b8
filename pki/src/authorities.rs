//! Which certificate authority signs what, decided in one place: a domain with a CA of its own
//! (`ca` and `ca_key` in `domains.yaml`) has its client certificates signed by it; everything
//! else — service certificates, administrator certificates (the store, which checks them,
//! trusts the broker's CA only), and clients of other domains — by the broker's CA. CRLs are
//! signed by every CA.

use crate::ca::{Ca, CaError};
use mb_shared::domains::Domain;
use mb_shared::domains::Domains;
use mb_shared::status::ClientKind;
use std::path::Path;

/// The broker's CA and the domains' own.
pub struct Authorities {
    main: Ca,
    domains: Vec<(Domain, Ca)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthoritiesError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(
        "domain {0} has its own CA but no ca_key in domains.yaml; it is needed to sign its certificates and CRLs"
    )]
    MissingKey(Domain),
}

impl Authorities {
    /// Loads the broker's CA (`cert`, `key`) and the CA of every domain that has one.
    pub fn load(cert: &Path, key: &Path, domains: &Domains) -> Result<Self, AuthoritiesError> {
        let main = Ca::load(cert, key)?;
        let mut own = Vec::new();
        for dca in domains.own_cas() {
            let key = dca
                .key
                .as_ref()
                .ok_or_else(|| AuthoritiesError::MissingKey(dca.domain.clone()))?;
            own.push((dca.domain.clone(), Ca::load(&dca.cert, key)?));
        }
        Ok(Self { main, domains: own })
    }

    /// The CA that signs a `kind` certificate of `domain`.
    pub fn issuer(&self, domain: &Domain, kind: ClientKind) -> &Ca {
        match kind {
            ClientKind::Client => self
                .domains
                .iter()
                .find(|(d, _)| d == domain)
                .map_or(&self.main, |(_, ca)| ca),
            ClientKind::Admin | ClientKind::Superadmin => &self.main,
        }
    }

    /// The broker's own CA (service certificates).
    pub fn main(&self) -> &Ca {
        &self.main
    }

    /// Every CA, the broker's first: each signs a CRL.
    pub fn all(&self) -> impl Iterator<Item = &Ca> {
        std::iter::once(&self.main).chain(self.domains.iter().map(|(_, ca)| ca))
    }
}

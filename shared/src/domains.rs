//! The configured domains (`domains.yaml`) and how a certificate CN maps onto one.
//!
//! A domain may have a CA of its own (`ca`, and `ca_key` where certificates are issued and CRLs
//! signed): then its clients' certificates must come from that CA, and that CA vouches for no
//! other domain.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// A configured domain name, lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl TryFrom<String> for Domain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Domain::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl Domain {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("`{s}` is not a valid domain name"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainsFile {
    pub domains: Vec<DomainEntry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    pub name: String,
    /// This domain's own CA certificate (optional).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Its key (mode 0600), needed where certificates are issued: mb-store and mbctl.
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// Readers of this domain's stream in each mb-deliver process, instead of deliver's
    /// `concurrency`: the domain's share of the store (a bulk domain gets fewer, so it cannot
    /// crowd out the others; a latency-sensitive one more).
    #[serde(default)]
    pub deliver_concurrency: Option<usize>,
}

/// A domain's own certificate authority.
#[derive(Debug, Clone)]
pub struct DomainCa {
    pub domain: Domain,
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

/// The set of domains this deployment serves.
#[derive(Debug, Clone)]
pub struct Domains {
    names: Vec<Domain>,
    cas: Vec<DomainCa>,
    /// `deliver_concurrency` of the domains that set it.
    deliver_concurrency: Vec<(Domain, usize)>,
}

/// The most readers one domain may have in one deliver process.
pub const MAX_DELIVER_CONCURRENCY: usize = 64;

impl Domains {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: DomainsFile = crate::config::load(path)?;
        let mut domains = Self::from_names(file.domains.iter().map(|d| d.name.clone()))
            .map_err(|(i, m)| ConfigError::invalid(path, &format!("domains[{i}].name"), m))?;
        for (i, entry) in file.domains.into_iter().enumerate() {
            if let Some(n) = entry.deliver_concurrency {
                if !(1..=MAX_DELIVER_CONCURRENCY).contains(&n) {
                    return Err(ConfigError::invalid(
                        path,
                        &format!("domains[{i}].deliver_concurrency"),
                        format!("must be between 1 and {MAX_DELIVER_CONCURRENCY}"),
                    ));
                }
                let domain = domains.names[i].clone();
                domains.deliver_concurrency.push((domain, n));
            }
            match (entry.ca, entry.ca_key) {
                (Some(cert), key) => domains.cas.push(DomainCa {
                    domain: domains.names[i].clone(),
                    cert,
                    key,
                }),
                (None, Some(_)) => {
                    return Err(ConfigError::invalid(
                        path,
                        &format!("domains[{i}].ca_key"),
                        "ca_key needs ca",
                    ));
                }
                (None, None) => {}
            }
        }
        Ok(domains)
    }

    /// Builds the set; returns the index and reason of the first invalid name.
    pub fn from_names(names: impl IntoIterator<Item = String>) -> Result<Self, (usize, String)> {
        let mut out = Vec::new();
        for (i, n) in names.into_iter().enumerate() {
            let d = Domain::parse(&n).map_err(|e| (i, e))?;
            if out.contains(&d) {
                return Err((i, format!("domain `{n}` is listed twice")));
            }
            out.push(d);
        }
        if out.is_empty() {
            return Err((0, "at least one domain must be configured".into()));
        }
        Ok(Self {
            names: out,
            cas: Vec::new(),
            deliver_concurrency: Vec::new(),
        })
    }

    /// No domains at all: for tools run without a `domains.yaml` (every CA is then the
    /// broker's own).
    pub fn none() -> Self {
        Self {
            names: Vec::new(),
            cas: Vec::new(),
            deliver_concurrency: Vec::new(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.names.iter()
    }

    /// The domains that have a CA of their own.
    pub fn own_cas(&self) -> &[DomainCa] {
        &self.cas
    }

    /// The readers per deliver process `domains.yaml` sets for `domain`, if it does.
    pub fn deliver_concurrency(&self, domain: &Domain) -> Option<usize> {
        self.deliver_concurrency
            .iter()
            .find_map(|(d, n)| (d == domain).then_some(*n))
    }

    pub fn own_ca(&self, domain: &Domain) -> Option<&DomainCa> {
        self.cas.iter().find(|c| c.domain == *domain)
    }

    pub fn get(&self, name: &str) -> Option<&Domain> {
        let name = name.trim_end_matches('.');
        self.names
            .iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// The configured domain a certificate CN `<client>.<domain>` belongs to: the longest
    /// configured domain the CN ends with after a dot.
    pub fn for_common_name(&self, cn: &str) -> Option<&Domain> {
        let cn = cn.to_ascii_lowercase();
        self.names
            .iter()
            .filter(|d| {
                cn.len() > d.as_str().len() + 1
                    && cn.ends_with(d.as_str())
                    && cn.as_bytes()[cn.len() - d.as_str().len() - 1] == b'.'
            })
            .max_by_key(|d| d.as_str().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_maps_to_longest_configured_domain() {
        let d = Domains::from_names(["example.com".into(), "eu.example.com".into()]).unwrap();
        assert_eq!(
            d.for_common_name("demo.example.com").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(
            d.for_common_name("a.eu.example.com").unwrap().as_str(),
            "eu.example.com"
        );
        assert!(d.for_common_name("example.com").is_none());
        assert!(d.for_common_name("demo.badexample.com").is_none());
        assert!(d.for_common_name("demo.other.org").is_none());
    }

    #[test]
    fn a_domain_may_name_its_own_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("domains.yaml");
        std::fs::write(
            &path,
            "domains:\n  - name: a.com\n  - name: b.com\n    ca: /x/b.crt\n",
        )
        .unwrap();
        let d = Domains::load(&path).unwrap();
        assert!(d.own_ca(&Domain::parse("a.com").unwrap()).is_none());
        assert_eq!(
            d.own_ca(&Domain::parse("b.com").unwrap()).unwrap().cert,
            PathBuf::from("/x/b.crt")
        );
        std::fs::write(&path, "domains:\n  - name: a.com\n    ca_key: /x/k\n").unwrap();
        assert!(
            Domains::load(&path)
                .unwrap_err()
                .to_string()
                .contains("domains[0].ca_key")
        );
    }

    #[test]
    fn a_domain_may_set_its_deliver_concurrency_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("domains.yaml");
        std::fs::write(
            &path,
            "domains:\n  - name: bulk.com\n    deliver_concurrency: 1\n  - name: b.com\n",
        )
        .unwrap();
        let d = Domains::load(&path).unwrap();
        assert_eq!(
            d.deliver_concurrency(&Domain::parse("bulk.com").unwrap()),
            Some(1)
        );
        assert_eq!(
            d.deliver_concurrency(&Domain::parse("b.com").unwrap()),
            None
        );
        for bad in ["0", "65"] {
            std::fs::write(
                &path,
                format!("domains:\n  - name: a.com\n    deliver_concurrency: {bad}\n"),
            )
            .unwrap();
            let err = Domains::load(&path).unwrap_err().to_string();
            assert!(err.contains("domains[0].deliver_concurrency"), "{err}");
        }
    }
}

//! The configured domains (`domains.yaml`) and how a certificate CN maps onto one.

use crate::message::Domain;
use std::path::Path;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainsFile {
    pub domains: Vec<DomainEntry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    pub name: String,
}

/// The set of domains this deployment serves.
#[derive(Debug, Clone)]
pub struct Domains {
    names: Vec<Domain>,
}

impl Domains {
    pub fn load(path: &Path) -> Result<Self, crate::config::ConfigError> {
        let file: DomainsFile = crate::config::load(path)?;
        Self::from_names(file.domains.into_iter().map(|d| d.name)).map_err(|(i, m)| {
            crate::config::ConfigError::invalid(path, &format!("domains[{i}].name"), m)
        })
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
        Ok(Self { names: out })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.names.iter()
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
}

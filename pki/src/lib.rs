//! mb's certificate authority, one implementation for mb-store and mbctl.
//!
//! * [`ca`]: the CA itself (pure Rust, rcgen, ECDSA P-256): create a CA, issue service,
//!   client and administrator certificates, sign CRLs.
//! * [`lifecycle`]: certificates as the broker knows them, in the `clients` table: issue and
//!   record, renew, revoke, disable, list; the access list (who may submit, who is refused)
//!   that ingest polls, and the CRLs built from it. Every change is audited.
//! * [`authorities`]: which CA signs what — the broker's own, or a domain's.

pub mod authorities;
pub mod ca;
pub mod lifecycle;

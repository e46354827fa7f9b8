//! The closed sets of states the broker talks about, typed from SQL to JSON to HTML: a
//! message's status, a certificate's status and kind, and a portal user's role.
//!
//! Each is lowercase in MySQL `ENUM` columns, in JSON and on pages (`delivered`, `superadmin`).
//! With the `mysql` feature they read from and bind to MySQL values directly.

use std::fmt;
use std::str::FromStr;

macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "mysql", derive(mysql_async::prelude::FromValue))]
        #[cfg_attr(feature = "mysql", mysql(is_string, rename_all = "lowercase"))]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

closed_set! {
    /// Where a message is: queued in Redis, delivered into MySQL, or failed (dead-lettered).
    MessageStatus {
        Queued => "queued",
        Delivered => "delivered",
        Failed => "failed",
    }
}

closed_set! {
    /// A certificate's state in the `clients` table.
    ClientStatus {
        Active => "active",
        Revoked => "revoked",
        Disabled => "disabled",
    }
}

closed_set! {
    /// Who a certificate is for.
    ClientKind {
        /// Submits messages to ingest.
        Client => "client",
        /// Administers its own domain's certificates through the store's `/admin` API.
        Admin => "admin",
        /// Administers every domain's certificates.
        Superadmin => "superadmin",
    }
}

closed_set! {
    /// A portal user's role: a `user` reads their client's messages, an `admin` their domain's,
    /// a `superadmin` everyone's.
    Role {
        User => "user",
        Admin => "admin",
        Superadmin => "superadmin",
    }
}

impl ClientKind {
    /// Whether this is an administrator certificate of either scope.
    pub fn is_admin(self) -> bool {
        matches!(self, ClientKind::Admin | ClientKind::Superadmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Role::Superadmin.to_string(), "superadmin");
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("user, admin, superadmin"), "{err}");
        assert!(ClientKind::Superadmin.is_admin() && !ClientKind::Client.is_admin());
    }
}

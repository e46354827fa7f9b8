//! `mbctl config get FILE KEY`: one value of a service's config file, read the way the
//! service reads it (`.env`, `${VAR}` and `${VAR:-default}` expanded), so that scripts such as
//! `ops/up` take ports and paths from the configs instead of repeating them.

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the value at KEY (dotted, e.g. `limits.idle_timeout`) of a YAML config file.
    Get { file: PathBuf, key: String },
}

pub fn run(cmd: &ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Get { file, key } => {
            let doc: serde_norway::Value = mb_shared::config::load(file)?;
            println!("{}", get(&doc, key).map_err(anyhow::Error::msg)?);
            Ok(())
        }
    }
}

/// The scalar at a dotted key path, as text.
fn get(doc: &serde_norway::Value, key: &str) -> Result<String, String> {
    let mut v = doc;
    for part in key.split('.') {
        v = v
            .get(part)
            .ok_or_else(|| format!("no key `{key}` (missing `{part}`)"))?;
    }
    match v {
        serde_norway::Value::String(s) => Ok(s.clone()),
        serde_norway::Value::Number(n) => Ok(n.to_string()),
        serde_norway::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("`{key}` is not a single value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_reach_nested_scalars() {
        let doc: serde_norway::Value = serde_norway::from_str(
            "listen: 0.0.0.0:8001\nlimits:\n  idle_timeout: 60s\n  max: 5\n",
        )
        .unwrap();
        assert_eq!(get(&doc, "listen").unwrap(), "0.0.0.0:8001");
        assert_eq!(get(&doc, "limits.idle_timeout").unwrap(), "60s");
        assert_eq!(get(&doc, "limits.max").unwrap(), "5");
        assert!(
            get(&doc, "limits")
                .unwrap_err()
                .contains("not a single value")
        );
        assert!(get(&doc, "nope.x").unwrap_err().contains("missing `nope`"));
    }
}

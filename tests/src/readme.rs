//! Runs the README's examples as a user would: the fenced block after each
//! `<!-- readme-test: NAME -->` marker, unchanged except for the ports (the README names the
//! fixed ports of `ops/up`; a test stack has random ones), in a directory whose `.local` is the
//! test stack's home, laid out as `ops/up` lays out `.local/`.

use crate::Stack;
use std::path::Path;
use std::process::Output;

/// A marked example: its language (`sh`, `python`) and its text.
pub struct Example {
    pub lang: String,
    pub code: String,
}

/// The example marked `name` in README.md; panics if there is none.
pub fn example(name: &str) -> Example {
    let readme = std::fs::read_to_string(crate::repo_root().join("README.md")).expect("README.md");
    let marker = format!("<!-- readme-test: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no `{marker}`"))
        .1
        .trim_start();
    let fence = after
        .strip_prefix("```")
        .unwrap_or_else(|| panic!("`{marker}` is not followed by a fenced block"));
    let (lang, rest) = fence.split_once('\n').expect("fence line");
    let code = rest.split_once("\n```").expect("closing fence").0;
    Example {
        lang: lang.trim().to_owned(),
        code: code.to_owned(),
    }
}

impl Example {
    /// The example with `ops/up`'s fixed ports replaced by the test stack's.
    pub fn localized(&self, stack: &Stack) -> String {
        let ingest = stack.ingest_port.to_string();
        let store = stack.store_port.to_string();
        self.code
            .replace("localhost:8001", &format!("localhost:{ingest}"))
            .replace("localhost:8000", &format!("localhost:{store}"))
            .replace(
                "localhost:8080",
                &format!("localhost:{}", stack.portal_port),
            )
            .replace("\"localhost\", 8001", &format!("\"localhost\", {ingest}"))
            .replace(
                "-p 6380",
                &if stack.redis.is_cluster() {
                    format!("-c -p {}", stack.redis.port())
                } else {
                    format!("-p {}", stack.redis.port())
                },
            )
    }

    /// Runs the example in `dir` (which holds `.local`); `edit` may fill in placeholders.
    pub fn run(&self, stack: &Stack, dir: &Path, edit: impl Fn(String) -> String) -> Output {
        let code = edit(self.localized(stack));
        let mut cmd = match self.lang.as_str() {
            "sh" => {
                let mut c = std::process::Command::new("bash");
                c.arg("-euo").arg("pipefail").arg("-c").arg(code);
                c
            }
            "python" => {
                let mut c = std::process::Command::new("python3");
                c.arg("-c").arg(code);
                c
            }
            other => panic!("cannot run a `{other}` example"),
        };
        cmd.current_dir(dir)
            .env_remove("MB_REDIS_URL")
            .env_remove("MB_MYSQL_URL")
            .env_remove("MB_HOME")
            .output()
            .expect("run example")
    }
}

/// A working directory for the README's examples: `.local` is the stack's home, with the
/// `env` file and demo certificate that `ops/up` makes.
pub fn user_dir(stack: &Stack) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(stack.home(), dir.path().join(".local")).expect("symlink .local");
    let h = stack.home();
    if !h.join("certs/clients/demo.crt").exists() {
        let out = stack.mbctl(&["cert", "issue", "demo", "--domain", "example.com"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let env = format!(
        "MB_HOME={h}\nMB_INGEST_URL=https://localhost:{}\nMB_STORE_URL=https://localhost:{}\n\
         MB_REDIS_URL={}\nMB_MYSQL_URL={}\nMB_CA_CERT={h}/certs/ca.crt\n\
         MB_DEMO_CERT={h}/certs/clients/demo.crt\nMB_DEMO_KEY={h}/certs/clients/demo.key\n\
         MB_MBCTL={}\nMB_DOMAINS_FILE={h}/domains.yaml\n",
        stack.ingest_port,
        stack.store_port,
        stack.redis.url(),
        stack.db.url(),
        crate::binary("mbctl").display(),
        h = h.display()
    );
    mb_shared::secret::write_private_file(&h.join("env"), env.as_bytes()).expect("write env");
    dir
}

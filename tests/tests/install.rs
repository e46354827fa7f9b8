//! `ops/install`, as an operator runs it: a dry run that only talks, an install into a
//! directory tree (`--root`) with the files and modes of ops/systemd/README.md, and a second run
//! that finds nothing to change and keeps the operator's edits.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const BINARIES: [&str; 5] = ["mb-store", "mb-ingest", "mb-deliver", "mb-portal", "mbctl"];

/// Runs ops/install with `args`, taking the binaries from `bins`, and returns its output;
/// panics with that output unless it exits 0.
fn install(bins: &Path, args: &[&str]) -> String {
    let out: Output = std::process::Command::new(mb_e2e::repo_root().join("ops/install"))
        .args(args)
        .env("MB_BIN_DIR", bins)
        .output()
        .expect("run ops/install");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ops/install {args:?} failed:\n{text}");
    text
}

/// Stand-ins for the release binaries in `dir` (the tree's target/release may be rebuilt
/// while a test runs, and the script copies whatever it is given).
fn fake_binaries(dir: &Path) -> PathBuf {
    let bins = dir.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    for b in BINARIES {
        let p = bins.join(b);
        std::fs::write(&p, format!("#!/bin/sh\necho {b} 1.0\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bins
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file of `dir`, sorted, relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The file names in `dir` ending in `suffix`, sorted.
fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn dry_run_lists_every_action_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.display().to_string();
    let bin = fake_binaries(tmp.path());
    let text = install(&bin, &["--dry-run", "--root", &r]);

    assert!(tree(&root).is_empty(), "a dry run wrote {:?}", tree(&root));
    for b in BINARIES {
        let want = format!(
            "would run: install -m 0755 {}/{b} {r}/usr/local/bin/{b}\n",
            bin.display()
        );
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    let repo = mb_e2e::repo_root();
    for c in names(&repo.join("ops/config"), ".yaml") {
        assert!(
            text.contains(&format!("{r}/etc/mb/{c}\n")),
            "no action for {c}:\n{text}"
        );
    }
    for u in names(&repo.join("ops/systemd"), ".service") {
        assert!(
            text.contains(&format!("{r}/etc/systemd/system/{u}\n")),
            "no action for {u}:\n{text}"
        );
    }
    for want in [
        format!("would run: install -m 0600 <template> {r}/etc/mb/env"),
        format!("would run: install -d -m 0750 {r}/var/lib/mb"),
        format!("would run: install -d -m 0750 {r}/etc/mb"),
        format!("skipped (--root): chown mb:mb {r}/var/lib/mb"),
        "skipped (--root): useradd --system".to_owned(),
        "skipped (--root): systemctl daemon-reload".to_owned(),
        "nothing was changed".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("\nrun: "),
        "a dry run ran something:\n{text}"
    );

    // The same for / (as the operator would first try it): it reports, and leaves the host as
    // it was.
    let watched = [
        "/etc/mb",
        "/var/lib/mb",
        "/etc/systemd/system/mb-store.service",
    ];
    let before: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    let text = install(&bin, &["--dry-run"]);
    assert!(
        text.contains("/usr/local/bin/mb-store")
            && text.contains("/etc/systemd/system/mb-store.service"),
        "{text}"
    );
    let after: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "a dry run changed the host");
}

#[test]
fn installs_into_a_tree_with_the_right_modes_and_a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let r = root.display().to_string();
    let repo = mb_e2e::repo_root();
    let bin = fake_binaries(tmp.path());

    let first = install(&bin, &["--root", &r]);
    assert!(first.contains("done: "), "{first}");
    for b in BINARIES {
        let p = root.join("usr/local/bin").join(b);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert!(
            std::fs::read(&p).unwrap() == std::fs::read(bin.join(b)).unwrap(),
            "{b} is not the given binary"
        );
    }
    assert_eq!(mode(&root.join("etc/mb")), 0o750);
    assert_eq!(mode(&root.join("var/lib/mb")), 0o750);
    let configs = names(&repo.join("ops/config"), ".yaml");
    assert!(configs.contains(&"store.yaml".to_owned()), "{configs:?}");
    for c in &configs {
        let p = root.join("etc/mb").join(c);
        assert_eq!(mode(&p), 0o640, "{}", p.display());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(repo.join("ops/config").join(c)).unwrap()
        );
    }
    let env = root.join("etc/mb/env");
    assert_eq!(mode(&env), 0o600);
    let env_text = std::fs::read_to_string(&env).unwrap();
    for key in ["MB_MYSQL_URL=", "MB_REDIS_URL=", "MB_STORE_URL="] {
        assert!(
            env_text.contains(key),
            "{key} missing in /etc/mb/env:\n{env_text}"
        );
    }
    let units = names(&repo.join("ops/systemd"), ".service");
    assert_eq!(units.len(), 4, "{units:?}");
    for u in &units {
        let p = root.join("etc/systemd/system").join(u);
        assert_eq!(mode(&p), 0o644, "{}", p.display());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(repo.join("ops/systemd").join(u)).unwrap()
        );
    }
    assert!(
        first.contains("skipped (--root): systemctl daemon-reload"),
        "{first}"
    );

    // Again: nothing to do, and it says so.
    let files_before = tree(&root);
    let second = install(&bin, &["--root", &r]);
    assert!(second.contains("nothing to change"), "{second}");
    assert!(!second.contains("\nrun: "), "{second}");
    assert!(
        !second.contains("daemon-reload"),
        "no unit changed:\n{second}"
    );
    assert_eq!(tree(&root), files_before);

    // An operator's edits: a changed config and env survive; a wrong mode is corrected; a unit
    // someone edited in place is replaced (local changes belong in drop-ins), and systemd would
    // be told.
    let store_yaml = root.join("etc/mb/store.yaml");
    let mine = "# mine\nlisten: 0.0.0.0:9000\n";
    std::fs::write(&store_yaml, mine).unwrap();
    let env_mine = "MB_MYSQL_URL=mysql://mb:secret@db:3306/mb\n";
    std::fs::write(&env, env_mine).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unit = root.join("etc/systemd/system/mb-store.service");
    std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").unwrap();

    // A new build of one binary.
    std::fs::write(bin.join("mb-ingest"), "#!/bin/sh\necho mb-ingest 1.1\n").unwrap();

    let third = install(&bin, &["--root", &r]);
    assert_eq!(std::fs::read_to_string(&store_yaml).unwrap(), mine);
    assert!(
        third.contains(&format!("kept: {}", store_yaml.display())),
        "{third}"
    );
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_mine);
    assert_eq!(mode(&env), 0o600, "the env file's mode is corrected");
    assert!(
        third.contains(&format!("run: chmod 0600 {}", env.display())),
        "{third}"
    );
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo.join("ops/systemd/mb-store.service")).unwrap()
    );
    assert!(
        third.contains("skipped (--root): systemctl daemon-reload"),
        "{third}"
    );
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/mb-ingest")).unwrap(),
        std::fs::read(bin.join("mb-ingest")).unwrap()
    );
    assert!(third.contains("done: 3 change(s) made"), "{third}");

    // And then nothing again; the kept config is still reported, not counted.
    let fourth = install(&bin, &["--root", &r]);
    assert!(fourth.contains("nothing to change"), "{fourth}");
    assert!(
        fourth.contains(&format!("kept: {}", store_yaml.display())),
        "{fourth}"
    );
    assert_eq!(std::fs::read_to_string(&store_yaml).unwrap(), mine);
}

//! The fuzz corpus on stable: every input in `fuzz/corpus/<target>/` (hand-written seeds and
//! the minimized corpus of past runs) and in `fuzz/regressions/<target>/` (each input that ever
//! found a bug) goes through the same harness as the cargo-fuzz target, `fuzz/harness.rs`.
//! Fuzzing itself needs nightly and minutes per target, so CI does not fuzz (`ops/fuzz` does,
//! locally); it runs what fuzzing found, here.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reads the directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `target`; fails naming each input whose
/// properties do not hold, and when the target has no corpus at all.
fn check_target(target: &str) {
    let run = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .expect("a harness of that name");
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: the target would go untested"
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    let failed: Vec<String> = corpus
        .iter()
        .chain(&regressions)
        .filter(|path| {
            let data = std::fs::read(path).expect("reads the input");
            std::panic::catch_unwind(|| run(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {target} fail (each panic is printed above): {failed:#?}",
        failed.len(),
        corpus.len() + regressions.len()
    );
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = harness::TARGETS.iter().map(|(name, _)| *name).collect();
    let targets_dir = fuzz_dir().join("fuzz_targets");
    for file in inputs(&targets_dir) {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 name");
        assert!(
            names.contains(&name),
            "fuzz target {name} has no harness in TARGETS"
        );
    }
    assert_eq!(names.len(), inputs(&targets_dir).len());
}

#[test]
fn submit_json_inputs_keep_validation_consistent() {
    check_target("submit_json");
}

#[test]
fn api_json_inputs_round_trip_or_name_their_field() {
    check_target("api_json");
}

#[test]
fn stream_entry_inputs_round_trip_through_fields_and_json() {
    check_target("stream_entry");
}

#[test]
fn ciphertext_inputs_decrypt_only_when_authentic() {
    check_target("ciphertext");
}

#[test]
fn keyring_file_inputs_load_usable_keyrings_or_refuse() {
    check_target("keyring_file");
}

#[test]
fn certificate_inputs_parse_consistently_and_loaded_cas_issue_chaining_certificates() {
    check_target("certificate");
}

#[test]
fn crl_inputs_parse_and_resign_with_the_same_serials() {
    check_target("crl");
}

#[test]
fn config_inputs_load_validate_or_name_the_key() {
    check_target("config");
}

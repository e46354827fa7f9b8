//! Key rotation (`mbctl keys`): a new key is picked up by running services, stored bodies are
//! re-encrypted in the background under load, a store killed half way resumes where it
//! stopped, and the old key can be retired only when nothing uses it.

use mb_e2e::{Stack, StackOptions, eventually, submit_many};
use mb_shared::crypto::Keyring;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Rows `mbctl seed` writes before the rotation.
const SEEDED: usize = 200_000;
/// Messages submitted while the rotation runs.
const FLOWING: usize = 50_000;
/// `mbctl seed`'s client id.
fn seed_client() -> String {
    format!("{:064x}", 0x5eed)
}

async fn rotation(stack: &Stack, key: u32) -> Option<(u64, u64, Option<String>)> {
    stack
        .db
        .query::<(u64, u64, Option<String>)>(&format!(
            "SELECT rows_done, rows_total, CAST(finished_at AS CHAR) FROM key_rotations \
             WHERE key_id = {key}"
        ))
        .await
        .into_iter()
        .next()
}

/// Every stored body, decrypted with the keyring file as it is now: id → (key id, plaintext).
async fn bodies(stack: &Stack) -> HashMap<String, (u32, String)> {
    let keyring = Keyring::load(&stack.home().join("secrets/keyring.json")).unwrap();
    let rows: Vec<(String, u32, String)> = stack
        .db
        .query("SELECT message_id, key_id, body_ciphertext FROM messages")
        .await;
    rows.into_iter()
        .map(|(id, key, ct)| {
            assert_eq!(
                mb_shared::crypto::key_id(&ct),
                Some(key),
                "key_id column of {id}"
            );
            let plain = keyring
                .decrypt(id.as_bytes(), &ct)
                .unwrap_or_else(|e| panic!("body of {id} does not decrypt: {e}"));
            (id, (key, String::from_utf8(plain).unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_load_survives_a_killed_store_and_then_retires_the_old_key() {
    let mut stack = Stack::start(StackOptions {
        batch_size: 256,
        deliver_concurrency: 4,
        ingest_extra: "keyring_reload: 200ms\n",
        store_extra: "keyring_reload: 200ms\nreencrypt:\n  batch: 500\n  pause: 20ms\n",
        ..Default::default()
    })
    .await;
    let out = stack.mbctl(&["seed", "--messages", &SEEDED.to_string(), "--days", "2"]);
    assert!(out.status.success(), "mbctl seed: {out:?}");
    let before = bodies(&stack).await;
    assert_eq!(before.len(), SEEDED);
    assert!(before.values().all(|(k, _)| *k == 1));

    // Messages flow while the key changes.
    let c = stack.client("alice");
    let load = tokio::spawn(async move { submit_many(&c, FLOWING, 32).await });
    eventually(
        Duration::from_secs(60),
        "the first messages stored",
        || async {
            (stack.db.count("SELECT COUNT(*) FROM messages").await >= SEEDED as u64 + 2_000)
                .then_some(())
        },
    )
    .await;
    let out = stack.mbctl(&["keys", "rotate", "--no-wait"]);
    assert!(out.status.success(), "mbctl keys rotate: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("key 2 added"));

    // Kill the store half way through the re-encryption, then start it again.
    let (done_at_kill, total) = eventually(
        Duration::from_secs(120),
        "re-encryption half way",
        || async {
            rotation(&stack, 2)
                .await
                .filter(|(done, total, _)| *done >= total / 3)
                .map(|(d, t, _)| (d, t))
        },
    )
    .await;
    stack.store.kill();
    let (done_after_kill, _, finished) = rotation(&stack, 2).await.unwrap();
    assert!(finished.is_none(), "killed before the end");
    assert!(done_after_kill >= done_at_kill && done_after_kill < total);
    assert!(
        stack
            .db
            .count("SELECT COUNT(*) FROM messages WHERE key_id = 1")
            .await
            > 0,
        "some rows still under key 1 when the store died"
    );
    stack.start_store().await;

    let (accepted, refused) = load.await.unwrap();
    assert_eq!(refused, 0, "no submission refused during the rotation");
    // `mbctl keys wait` follows the resumed rotation to its end.
    let out = stack.mbctl(&["keys", "wait", "--timeout", "3m"]);
    assert!(out.status.success(), "mbctl keys wait: {out:?}");
    let (done, total, finished) = rotation(&stack, 2).await.unwrap();
    assert!(finished.is_some());
    assert_eq!(
        done, total,
        "every row re-encrypted once: {done} of {total}"
    );
    let all = SEEDED as u64 + accepted.len() as u64;
    eventually(Duration::from_secs(120), "every message stored", || async {
        (stack.db.count("SELECT COUNT(*) FROM messages").await >= all).then_some(())
    })
    .await;

    // Nothing lost, nothing duplicated, every body under key 2 and as it was.
    let after = bodies(&stack).await;
    assert_eq!(after.len(), SEEDED + accepted.len());
    assert!(
        after.values().all(|(k, _)| *k == 2),
        "a row still uses key 1"
    );
    for (id, (_, plain)) in &before {
        assert_eq!(&after[id].1, plain, "body of {id} changed");
    }
    let load_ids: BTreeSet<&str> = accepted.iter().map(String::as_str).collect();
    assert_eq!(load_ids.len(), accepted.len());
    let stored_load: Vec<(String,)> = stack
        .db
        .query(&format!(
            "SELECT message_id FROM messages WHERE client_id <> '{}'",
            seed_client()
        ))
        .await;
    let stored_load: BTreeSet<&str> = stored_load.iter().map(|(i,)| i.as_str()).collect();
    assert_eq!(
        stored_load, load_ids,
        "the flowing messages, each exactly once"
    );
    for id in &accepted {
        assert!(after[id].1.starts_with("load message "), "body of {id}");
    }

    // Status names the counts; key 1 can go once the streams hold none of it.
    eventually(Duration::from_secs(30), "streams drained", || async {
        (stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
    let out = stack.mbctl(&["keys", "status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(status.contains("finished"), "{status}");
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k))
            .unwrap_or_else(|| panic!("no line for key {k}: {status}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("1"), ["1", "0", "0"], "{status}");
    assert_eq!(
        line("2"),
        ["2", "yes", &after.len().to_string(), "0"],
        "{status}"
    );
    let out = stack.mbctl(&["keys", "retire", "2"]);
    assert!(!out.status.success(), "the active key cannot be retired");
    let out = stack.mbctl(&["keys", "retire", "1"]);
    assert!(out.status.success(), "mbctl keys retire 1: {out:?}");
    let ring = Keyring::load(&stack.home().join("secrets/keyring.json")).unwrap();
    assert_eq!(ring.key_ids(), [2]);

    // The services reload the smaller keyring and go on working.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c = stack.client("alice");
    let (one, _) = submit_many(&c, 1, 1).await;
    eventually(
        Duration::from_secs(30),
        "the new message stored",
        || async {
            (stack.db.count("SELECT COUNT(*) FROM messages").await > after.len() as u64)
                .then_some(())
        },
    )
    .await;
    let last = bodies(&stack).await;
    assert_eq!(last[&one[0]].0, 2);
    let log = stack.store.log_text();
    assert!(
        log.contains("keyring reloaded"),
        "the store reloaded the keyring"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_key_still_used_by_a_stream_entry_is_not_retired() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "keyring_reload: 100ms\n",
        store_extra: "keyring_reload: 100ms\n",
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let (queued, _) = submit_many(&c, 3, 1).await;
    assert_eq!(queued.len(), 3);
    assert!(
        stack
            .mbctl(&["keys", "rotate", "--no-wait"])
            .status
            .success()
    );
    let out = stack.mbctl(&["keys", "retire", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("3 stream entries (queued or dead letters) still use key 1"),
        "{err}"
    );
    let ring = Keyring::load(&stack.home().join("secrets/keyring.json")).unwrap();
    assert_eq!(ring.key_ids(), [1, 2], "nothing removed");
}

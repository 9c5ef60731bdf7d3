//! Deployment settings: the first value written wins, even when nodes start at the same time.

use prom_core::store::SettingsStore;
use prom_store::SqlStore;

async fn first_value_wins(store: SqlStore) {
    let first = store.init_setting("key_salt", b"first value").await.unwrap();
    assert_eq!(first, b"first value");

    let second = store.init_setting("key_salt", b"second value").await.unwrap();
    assert_eq!(second, b"first value", "a second start must get the stored value back, not its own");

    let other = store.init_setting("kdf_params", b"argon2id$m=64,t=1,p=1").await.unwrap();
    assert_eq!(other, b"argon2id$m=64,t=1,p=1", "settings are independent of each other");
}

async fn concurrent_inits_agree(store: SqlStore) {
    let init = |value: &'static [u8]| {
        let store = store.clone();
        tokio::spawn(async move { store.init_setting("key_salt", value).await })
    };
    let (a, b, c, d, e) =
        tokio::join!(init(b"node a"), init(b"node b"), init(b"node c"), init(b"node d"), init(b"node e"));
    let values: Vec<Vec<u8>> = [a, b, c, d, e].into_iter().map(|joined| joined.unwrap().unwrap()).collect();

    let winner = values[0].clone();
    assert!(
        [&b"node a"[..], b"node b", b"node c", b"node d", b"node e"].contains(&winner.as_slice()),
        "the stored value is one of those offered: {winner:?}"
    );
    assert!(values.iter().all(|value| *value == winner), "every node must see the same value: {values:?}");
    assert_eq!(store.init_setting("key_salt", b"late node").await.unwrap(), winner);
}

store_tests!(first_value_wins, concurrent_inits_agree);

//! Secrets at rest (issue 16): a private data directory, EAB HMAC keys encrypted with the
//! key-encryption key in the database and in exports, legacy plaintext keys encrypted at
//! start-up and by `migrate`, and a wrong or missing KEK refused clearly. Every test but
//! the file-mode one runs on the suite's backend (`CERTWRIGHT_TEST_BACKEND=postgres`).

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use certwright_proto::jws::sign_eab;
use certwright_proto::{b64, KeyType, ProblemType};
use certwright_server::app::settings::private_files;
use certwright_server::app::{CaServer, Options};
use certwright_server::clock::Clock;
use certwright_server::config::Config;
use certwright_server::ra::lifecycle::EAB_KEY_UNREADABLE;
use certwright_server::secrets::{self, KEK_FILE};
use harness::TestCa;
use serde_json::{json, Value};

/// Every encoding of `key` a dump or an export might show it in.
fn encodings(key: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        key.to_vec(),
        STANDARD.encode(key).into_bytes(),
        STANDARD_NO_PAD.encode(key).into_bytes(),
        b64::encode(key).into_bytes(),
        hex.clone().into_bytes(),
        hex.to_ascii_uppercase().into_bytes(),
    ]
}

fn assert_hidden(what: &str, haystack: &[u8], key: &[u8]) {
    for encoding in encodings(key) {
        assert!(
            !haystack.windows(encoding.len()).any(|w| w == encoding),
            "{what} reveals the HMAC key ({})",
            String::from_utf8_lossy(&encoding)
        );
    }
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).unwrap();
    key
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database URL of a test CA's data directory.
async fn database_url(dir: &Path) -> String {
    harness::database_url_for(dir)
        .await
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("certwright.db").display()))
}

/// A direct connection to the CA's database, as a dump tool or a database login has.
async fn raw_db(dir: &Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&database_url(dir).await)
        .await
        .unwrap()
}

async fn raw_row(dir: &Path, kid: &str) -> (Vec<u8>, Option<String>) {
    use sqlx::Row;
    let row = sqlx::query("SELECT hmac_key, kek_id FROM eab_keys WHERE kid = $1")
        .bind(kid)
        .fetch_one(&raw_db(dir).await)
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The configuration `TestCa` uses, for opening a CA directly (to see its errors).
async fn config_for(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
        data_dir: dir.to_owned(),
        database_url: harness::database_url_for(dir).await,
        base_url: Some("http://127.0.0.1:1".into()),
        ..Config::default()
    }
}

async fn open(dir: &Path, admin: bool) -> anyhow::Result<CaServer> {
    CaServer::open(
        config_for(dir).await,
        Options {
            admin,
            ..Options::default()
        },
    )
    .await
}

/// Registers a fresh account with EAB key `kid`/`mac`; returns the response.
async fn register_with_eab(ca: &TestCa, kid: &str, mac: &[u8]) -> harness::Resp {
    let acme = ca.client(KeyType::EcP256).await;
    let url = acme.dir.new_account.clone();
    let binding = sign_eab(mac, kid, &url, &acme.key.jwk());
    acme.post(
        &url,
        Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})),
    )
    .await
}

async fn restart(ca: TestCa) -> TestCa {
    let (tmp, dir, addr, responder) = ca.stop().await;
    let mut ca = TestCa::start_in(dir, Some(addr), responder, Clock::system(), |_| {}).await;
    ca.adopt(tmp);
    ca
}

/// Starts the CA once more on `dir` and lets it own the directory, so that its end
/// removes the test's PostgreSQL database too.
async fn clean_up(
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    addr: std::net::SocketAddr,
    responder: harness::Responder,
) {
    let mut ca = TestCa::start_in(dir, Some(addr), responder, Clock::system(), |_| {}).await;
    ca.adopt(tmp);
}

/// How long one `certwright-ca` admin command may take.
const CA_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn ca_command(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
    cmd.args(args).arg("--data-dir").arg(dir);
    if let Ok(url) = std::fs::read_to_string(dir.join("test-database-url")) {
        cmd.arg("--database-url").arg(url);
    }
    cmd.env_remove(secrets::KEK_ENV);
    let out = certwright_testkit::process::run_bounded(&mut cmd, CA_COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "certwright-ca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn a_fresh_data_directory_is_private_and_looser_modes_are_reported() {
    // SQLite on purpose: the database files live in the data directory.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/ca-data");
    let config = Config {
        data_dir: dir.clone(),
        tls: false,
        ..Config::default()
    };
    let server = CaServer::open(
        config.clone(),
        Options {
            admin: true,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    server
        .store
        .create_eab_key("kid", "team", b"k", 1)
        .await
        .unwrap();
    assert_eq!(mode(&dir), 0o700, "data directory");
    let mut private: Vec<PathBuf> = ["certwright.db", "certwright.db-wal", "certwright.db-shm"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            private.push(path);
        }
    }
    assert!(private.contains(&dir.join(KEK_FILE)), "{private:?}");
    assert!(
        private.contains(&dir.join("intermediate.key")),
        "{private:?}"
    );
    for path in &private {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    assert!(secrets::warn_loose_modes(&private_files(&config)).is_empty());

    // Loosened by hand (or by an old version): each one is reported with its chmod.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.join("certwright.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let kek = dir.join(KEK_FILE);
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o640)).unwrap();
    let found = secrets::warn_loose_modes(&private_files(&config));
    let paths: Vec<&Path> = found.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(
        paths,
        [dir.as_path(), kek.as_path(), db.as_path()],
        "{found:?}"
    );
    assert!(found[2]
        .to_string()
        .contains(&format!("chmod 600 {}", db.display())));
    assert!(found[0]
        .to_string()
        .contains(&format!("chmod 700 {}", dir.display())));
}

#[tokio::test]
async fn the_database_and_an_export_do_not_reveal_eab_keys() {
    let ca = TestCa::start_with(|c| c.directory.external_account_required = true).await;
    let key = random_key();
    ca.store
        .create_eab_key("kid-dump", "team", &key, ca.clock.now())
        .await
        .unwrap();

    // The raw column, as a database login sees it.
    let (stored, kek_id) = raw_row(&ca.data_dir, "kid-dump").await;
    assert!(
        stored.starts_with(b"v1:"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert_eq!(kek_id.as_deref(), Some(ca.store.eab_kek().unwrap().id()));
    assert_hidden("the hmac_key column", &stored, &key);
    // The SQLite files themselves, as a copy of the disk holds them.
    if !harness::on_postgres() {
        let mut bytes = Vec::new();
        for name in ["certwright.db", "certwright.db-wal"] {
            bytes.extend(std::fs::read(ca.data_dir.join(name)).unwrap_or_default());
        }
        assert!(
            bytes.windows(8).any(|w| w == b"kid-dump"),
            "the rows are there"
        );
        assert_hidden("the database file", &bytes, &key);
    }
    // An export carries the key as stored.
    let export: String = ca
        .store
        .export()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    assert!(export.contains("kid-dump"));
    assert_hidden("the export", export.as_bytes(), &key);

    // And the key works.
    let r = register_with_eab(&ca, "kid-dump", &key).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn eab_create_and_export_commands_keep_the_key_out_of_the_files() {
    let ca = TestCa::start().await;
    let (tmp, dir, addr, responder) = ca.stop().await;
    let out = ca_command(&dir, &["eab", "create", "--json", "--label", "cli"]);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = b64::decode(created["hmac_key"].as_str().unwrap()).unwrap();
    let kid = created["kid"].as_str().unwrap();
    let (stored, _) = raw_row(&dir, kid).await;
    assert_hidden("the hmac_key column", &stored, &key);
    if !harness::on_postgres() {
        let mut bytes = Vec::new();
        for name in ["certwright.db", "certwright.db-wal"] {
            bytes.extend(std::fs::read(dir.join(name)).unwrap_or_default());
        }
        assert_hidden("the database file", &bytes, &key);
    }
    let file = dir.join("export.jsonl");
    ca_command(&dir, &["export", "--out", file.to_str().unwrap()]);
    let export = std::fs::read(&file).unwrap();
    assert!(String::from_utf8_lossy(&export).contains(kid));
    assert_hidden("the export file", &export, &key);
    clean_up(tmp, dir, addr, responder).await;
}

/// Inserts a plaintext EAB key the way a version before encryption stored it.
async fn insert_legacy_key(dir: &Path, kid: &str, key: &[u8]) {
    sqlx::query(
        "INSERT INTO eab_keys (kid, label, hmac_key, created_at) VALUES ($1, 'legacy', $2, 1)",
    )
    .bind(kid)
    .bind(key.to_vec())
    .execute(&raw_db(dir).await)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_plaintext_key_of_an_older_version_is_encrypted_at_start_and_still_binds() {
    let ca = TestCa::start().await;
    let (tmp, dir, addr, responder) = ca.stop().await;
    let key = random_key();
    insert_legacy_key(&dir, "kid-legacy", &key).await;
    assert_eq!(raw_row(&dir, "kid-legacy").await, (key.clone(), None));

    let mut ca =
        TestCa::start_in(dir.clone(), Some(addr), responder, Clock::system(), |_| {}).await;
    ca.adopt(tmp);
    let (stored, kek_id) = raw_row(&dir, "kid-legacy").await;
    assert!(stored.starts_with(b"v1:"));
    assert!(kek_id.is_some());
    assert_hidden("the migrated column", &stored, &key);
    let entries = ca.store.audit_entries(0, i64::MIN, 1000).await.unwrap();
    let sealed: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "eab.encrypt_legacy")
        .collect();
    assert_eq!(sealed.len(), 1);
    assert!(
        sealed[0].details.contains("\"count\":1"),
        "{}",
        sealed[0].details
    );

    let r = register_with_eab(&ca, "kid-legacy", &key).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // A restart finds nothing left to encrypt.
    let ca = restart(ca).await;
    let entries = ca.store.audit_entries(0, i64::MIN, 1000).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "eab.encrypt_legacy")
            .count(),
        1
    );
}

#[tokio::test]
async fn migrate_encrypts_plaintext_keys() {
    let ca = TestCa::start().await;
    let (tmp, dir, addr, responder) = ca.stop().await;
    let key = random_key();
    insert_legacy_key(&dir, "kid-old", &key).await;
    ca_command(&dir, &["migrate"]);
    let (stored, kek_id) = raw_row(&dir, "kid-old").await;
    assert!(stored.starts_with(b"v1:") && kek_id.is_some());
    assert_hidden("the column after migrate", &stored, &key);
    clean_up(tmp, dir, addr, responder).await;
}

#[tokio::test]
async fn a_wrong_or_missing_kek_stops_the_start_with_a_clear_error() {
    let ca = TestCa::start().await;
    ca.store
        .create_eab_key("kid-unused", "team", b"mac", ca.clock.now())
        .await
        .unwrap();
    let (tmp, dir, addr, responder) = ca.stop().await;
    let kek_path = dir.join(KEK_FILE);
    let original = std::fs::read(&kek_path).unwrap();

    // Missing: not silently replaced by a new KEK.
    std::fs::remove_file(&kek_path).unwrap();
    let e = format!("{:#}", open(&dir, false).await.err().unwrap());
    assert!(e.contains("does not exist") && e.contains("restore"), "{e}");
    assert!(!kek_path.exists(), "no new KEK was made");

    // Another KEK: the server refuses to start, naming the keys and what to do.
    std::fs::write(&kek_path, b64::encode([7u8; 32])).unwrap();
    let e = format!("{:#}", open(&dir, false).await.err().unwrap());
    assert!(
        e.contains("kid-unused") && e.contains("another key-encryption key"),
        "{e}"
    );
    assert!(
        !e.contains(&b64::encode([7u8; 32])),
        "the KEK is not shown: {e}"
    );
    // Admin commands still open (to list and revoke such keys), with a warning; once the
    // key is revoked, the server starts.
    let admin = open(&dir, true).await.unwrap();
    assert!(admin.store.revoke_eab_key("kid-unused", 2).await.unwrap());
    drop(admin);
    let server = open(&dir, false).await.unwrap();
    drop(server);

    std::fs::write(&kek_path, original).unwrap();
    clean_up(tmp, dir, addr, responder).await;
}

#[tokio::test]
async fn a_key_that_does_not_decrypt_is_a_fixed_server_internal_for_the_client() {
    let ca = TestCa::start_with(|c| c.directory.external_account_required = true).await;
    let (a, b) = (random_key(), random_key());
    ca.store.create_eab_key("kid-a", "t", &a, 1).await.unwrap();
    ca.store.create_eab_key("kid-b", "t", &b, 1).await.unwrap();
    // kid-a's ciphertext copied onto kid-b (by someone with a database login): the key id
    // is bound into the ciphertext, so it does not decrypt as kid-b's.
    let (stored_a, _) = raw_row(&ca.data_dir, "kid-a").await;
    sqlx::query("UPDATE eab_keys SET hmac_key = $1 WHERE kid = 'kid-b'")
        .bind(stored_a)
        .execute(&raw_db(&ca.data_dir).await)
        .await
        .unwrap();
    let before = ca.store.snapshot().await.unwrap();
    for mac in [&a, &b] {
        let r = register_with_eab(&ca, "kid-b", mac).await;
        let p = r.assert_problem(ProblemType::ServerInternal, 500);
        assert_eq!(p.detail, EAB_KEY_UNREADABLE);
    }
    assert_eq!(
        ca.store.snapshot().await.unwrap(),
        before,
        "nothing changed"
    );
    let r = register_with_eab(&ca, "kid-a", &a).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

//! Keys in a real token (SoftHSM2). SoftHSM2 reads `SOFTHSM2_CONF` only when the module
//! is initialised, and a module is initialised once per process: every test of this
//! binary shares one configuration with three tokens (`certwright-unit` for keys, and
//! `certwright-pin` and `certwright-no-pin`, each for the one test of PINs that logs in
//! there: a login holds for the whole process), set once
//! before the first load and never changed. Each test uses key labels of its own. The
//! tests that swap the configuration are in `tests/pkcs11.rs`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use certwright_testkit::peers::softhsm::SoftHsm;
use cryptoki::object::{AttributeInfo, AttributeType};
use rcgen::{CertificateParams, PublicKeyData};

use super::*;
use crate::ca::keys::{self, FileKey, KeyLocation, RcgenKey};

const TOKEN: &str = "certwright-unit";
const PIN_TOKEN: &str = "certwright-pin";
const NO_PIN_TOKEN: &str = "certwright-no-pin";

struct Fixture {
    hsm: SoftHsm,
    pin_file: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // A static is never dropped, so its temp dir would stay behind: it goes under
        // <tmp>/certwright-pkcs11-unit/<pid>, and each run removes those of runs gone.
        let parent = std::env::temp_dir().join("certwright-pkcs11-unit");
        remove_dirs_of_dead_processes(&parent);
        let mine = parent.join(std::process::id().to_string());
        std::fs::create_dir_all(&mine).unwrap();
        let hsm = SoftHsm::new_in(&mine, TOKEN);
        hsm.init_token(PIN_TOKEN);
        hsm.init_token(NO_PIN_TOKEN);
        let pin_file = hsm.write_pin_file(&hsm.dir().join("pin"));
        // Set once, before this binary's first load of the module, and never changed.
        std::env::set_var("SOFTHSM2_CONF", hsm.conf_path());
        Fixture { hsm, pin_file }
    })
}

/// Removes the subdirectories of `parent` named after processes that no longer run.
fn remove_dirs_of_dead_processes(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Held for the whole of each test that uses the token: SoftHSM2's file object store
/// fails an object's creation with CKR_GENERAL_ERROR now and then while another thread
/// searches or writes the same token (SoftHSMv2 issue 573), so this binary's tests take
/// the token one at a time (a test may still run its own threads, as the concurrent
/// signatures test does).
fn token_lock() -> std::sync::MutexGuard<'static, ()> {
    static TOKEN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TOKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn settings() -> Pkcs11Settings {
    let f = fixture();
    Pkcs11Settings {
        module: Some(f.hsm.module_path().to_owned()),
        pin: Some(PinSource::File(f.pin_file.clone())),
    }
}

fn uri(text: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(text).unwrap()
}

fn verification(key: &dyn CaKey) -> &'static dyn signature::VerificationAlgorithm {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        &signature::ECDSA_P256_SHA256_ASN1
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        &signature::ECDSA_P384_SHA384_ASN1
    } else {
        &signature::RSA_PKCS1_2048_8192_SHA256
    }
}

fn assert_verifies(key: &dyn CaKey, msg: &[u8]) {
    let sig = key.sign(msg).unwrap();
    UnparsedPublicKey::new(verification(key), key.public_key())
        .verify(msg, &sig)
        .unwrap_or_else(|_| panic!("{}: the signature does not verify", key.location()));
}

impl Pkcs11Key {
    /// Runs `f` with a read-write session of the current initialisation and the private
    /// key (tests).
    fn with_session<T>(&self, f: impl FnOnce(&Session, ObjectHandle) -> T) -> T {
        let _writing = self.module.lock_object_writes();
        let state = self.module.read();
        let bound = self.bind(&state).unwrap();
        let session = state
            .context(&self.module)
            .unwrap()
            .open_rw_session(bound.slot)
            .unwrap();
        f(&session, bound.key)
    }
}

#[test]
fn generated_keys_sign_verifiably_and_open_again_by_label_or_id() {
    let _token = token_lock();
    let cases = [
        (CaKeyType::Ec256, &rcgen::PKCS_ECDSA_P256_SHA256, 65, "%E1"),
        (CaKeyType::Ec384, &rcgen::PKCS_ECDSA_P384_SHA384, 97, "%E2"),
        (CaKeyType::Rsa2048, &rcgen::PKCS_RSA_SHA256, 270, "%E3"),
    ];
    for (key_type, algorithm, public_len, id) in cases {
        let location = format!("pkcs11:token={TOKEN};object=gen-{key_type:?};id={id}");
        let generated = Pkcs11Key::generate(&uri(&location), key_type, &settings()).unwrap();
        assert!(generated.algorithm() == algorithm, "{key_type:?}");
        assert_eq!(generated.public_key().len(), public_len, "{key_type:?}");
        assert_eq!(generated.location(), location);
        assert_verifies(&generated, b"a TBSCertificate");
        assert_verifies(&generated, b"");
        // Through keys::open, by label only and by id only (type=private allowed).
        for again in [
            format!("pkcs11:token={TOKEN};object=gen-{key_type:?}"),
            format!("pkcs11:token={TOKEN};type=private;id={id}"),
        ] {
            let location = KeyLocation::parse(&again).unwrap();
            let opened = keys::open(&location, &settings()).unwrap();
            assert_eq!(opened.public_key(), generated.public_key(), "{again}");
            assert_verifies(opened.as_ref(), b"signed after opening");
        }
    }
}

#[test]
fn larger_rsa_keys_are_generated_with_their_size() {
    let _token = token_lock();
    for (key_type, modulus_len) in [(CaKeyType::Rsa3072, 384), (CaKeyType::Rsa4096, 512)] {
        let location = uri(&format!("pkcs11:token={TOKEN};object=big-{key_type:?}"));
        let key = Pkcs11Key::generate(&location, key_type, &settings()).unwrap();
        let modulus = key.with_session(|session, handle| {
            session
                .get_attributes(handle, &[AttributeType::Modulus])
                .unwrap()
        });
        assert!(
            matches!(modulus.as_slice(), [Attribute::Modulus(m)] if m.len() == modulus_len),
            "{key_type:?}"
        );
        assert_verifies(&key, b"signed by a large key");
    }
}

#[test]
fn certificates_self_signed_through_the_token_verify_with_x509_parser() {
    let _token = token_lock();
    for key_type in [CaKeyType::Ec256, CaKeyType::Ec384, CaKeyType::Rsa2048] {
        let location = uri(&format!("pkcs11:token={TOKEN};object=cert-{key_type:?}"));
        let key = Arc::new(Pkcs11Key::generate(&location, key_type, &settings()).unwrap());
        let signer = RcgenKey(key.clone());
        // rcgen takes the public key from the signer: it must be its der_bytes form.
        assert_eq!(signer.der_bytes(), key.public_key());
        let mut params = CertificateParams::new(vec!["token.test".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&signer).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key.public_key()
        );
        parsed
            .verify_signature(None)
            .unwrap_or_else(|e| panic!("{key_type:?}: {e}"));
    }
}

#[test]
fn generated_private_keys_are_sensitive_and_never_leave_the_token() {
    let _token = token_lock();
    let label = "no-export";
    let location = uri(&format!("pkcs11:token={TOKEN};object={label};id=%0E"));
    let key = Pkcs11Key::generate(&location, CaKeyType::Ec256, &settings()).unwrap();
    key.with_session(|session, handle| {
        let info = session
            .get_attribute_info(handle, &[AttributeType::Value])
            .unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "CKA_VALUE must be sensitive: {info:?}"
        );
        let values = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Value,
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::Private,
                ],
            )
            .unwrap();
        assert!(
            !values.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the token gave out CKA_VALUE"
        );
        for want in [
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Token(true),
            Attribute::Private(true),
        ] {
            assert!(values.contains(&want), "{want:?} in {values:?}");
        }
    });
    // The same key through RSA: its private exponent is as hidden.
    let rsa = uri(&format!("pkcs11:token={TOKEN};object=no-export-rsa"));
    let rsa = Pkcs11Key::generate(&rsa, CaKeyType::Rsa2048, &settings()).unwrap();
    rsa.with_session(|session, handle| {
        let info = session
            .get_attribute_info(
                handle,
                &[AttributeType::PrivateExponent, AttributeType::Prime1],
            )
            .unwrap();
        assert!(
            matches!(
                info.as_slice(),
                [AttributeInfo::Sensitive, AttributeInfo::Sensitive]
            ),
            "{info:?}"
        );
    });
    // Wrapping (the one way a token lets a private key out, encrypted) is refused too;
    // a session key pair made extractable, as a control, wraps.
    key.with_session(|session, handle| {
        let wrapping = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        let refused = session
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, handle)
            .err()
            .unwrap();
        assert_eq!(module::error_name(&refused), "CKR_KEY_UNEXTRACTABLE");
        let (_, control) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                ],
                &[
                    Attribute::Token(false),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Sign(true),
                ],
            )
            .unwrap();
        let wrapped = session
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, control)
            .unwrap();
        assert!(!wrapped.is_empty());
    });
    // And OpenSC's pkcs11-tool, logged in, finds the key but reads nothing out. (Its
    // Debian 12 version, 0.23, refuses to read any private key and still exits 0, so its
    // output is checked, not its status: no file, no key. The proof that counts is the
    // token's own refusal above.)
    let f = fixture();
    let out_file = f.hsm.dir().join("exported.der");
    let out = f.hsm.pkcs11_tool(&[
        "--token-label",
        TOKEN,
        "--login",
        "--pin",
        f.hsm.pin(),
        "--read-object",
        "--type",
        "privkey",
        "--label",
        label,
        "--output-file",
        out_file.to_str().unwrap(),
    ]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read(&out_file).unwrap_or_default();
    assert!(
        exported.is_empty() && !printed.contains("BEGIN"),
        "pkcs11-tool read the key out: {printed}"
    );
    assert!(
        !out.status.success() || printed.contains("not (yet) supported"),
        "{printed}"
    );
    let listed = f.hsm.pkcs11_tool(&[
        "--token-label",
        TOKEN,
        "--login",
        "--pin",
        f.hsm.pin(),
        "--list-objects",
        "--type",
        "privkey",
    ]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.contains(label), "{listing}");
}

#[test]
fn generate_refuses_to_replace_and_needs_a_label() {
    let _token = token_lock();
    let location = uri(&format!("pkcs11:token={TOKEN};object=once;id=%0A%0B"));
    Pkcs11Key::generate(&location, CaKeyType::Ec256, &settings()).unwrap();
    for (again, what) in [
        (
            format!("pkcs11:token={TOKEN};object=once"),
            "label \"once\"",
        ),
        (
            format!("pkcs11:token={TOKEN};object=other;id=%0A%0B"),
            "that id",
        ),
    ] {
        let e = keys::generate(
            &KeyLocation::parse(&again).unwrap(),
            CaKeyType::Ec256,
            &settings(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("already holds") && e.contains(what), "{e}");
    }
    let e = Pkcs11Key::generate(
        &uri(&format!("pkcs11:token={TOKEN};id=%77")),
        CaKeyType::Ec256,
        &settings(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("needs a label"), "{e}");
}

#[test]
fn a_wrong_pin_is_a_clear_startup_error_that_never_shows_the_pin() {
    let _token = token_lock();
    let f = fixture();
    let wrong = f.hsm.dir().join("wrong-pin");
    std::fs::write(&wrong, "99999999-wrong\n").unwrap();
    let mut settings = settings();
    settings.pin = Some(PinSource::File(wrong));
    let e = Pkcs11Key::open(
        &uri(&format!("pkcs11:token={PIN_TOKEN};object=any")),
        &settings,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("the token refused the PIN (CKR_PIN_INCORRECT)"),
        "{e}"
    );
    assert!(e.contains(&format!("token={PIN_TOKEN}")), "{e}");
    assert!(!e.contains("99999999") && !e.contains(f.hsm.pin()), "{e}");
    // The URI's pin-source wins over the settings' (wrong) one: the login works, and what
    // is missing then is the key.
    let e = Pkcs11Key::open(
        &uri(&format!(
            "pkcs11:token={PIN_TOKEN};object=absent?pin-source=file:{}",
            f.pin_file.display()
        )),
        &settings,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("holds no private key with label \"absent\""),
        "{e}"
    );
}

#[test]
fn missing_modules_tokens_keys_and_pins_are_clear_errors() {
    let _token = token_lock();
    let f = fixture();
    let open = |text: &str, settings: &Pkcs11Settings| {
        Pkcs11Key::open(&uri(text), settings)
            .err()
            .unwrap()
            .to_string()
    };
    let no_module = Pkcs11Settings {
        module: None,
        pin: settings().pin,
    };
    let e = open(&format!("pkcs11:token={TOKEN};object=k"), &no_module);
    assert!(e.contains("no PKCS#11 module"), "{e}");
    // The URI's module-path wins over the settings' module (here: none).
    let e = open(
        &format!(
            "pkcs11:token={TOKEN};object=nothing?module-path={}",
            f.hsm.module_path().display()
        ),
        &no_module,
    );
    assert!(e.contains("holds no private key"), "{e}");
    let bad_module = Pkcs11Settings {
        module: Some("/nonexistent/libpkcs11.so".into()),
        pin: None,
    };
    let e = open(&format!("pkcs11:token={TOKEN};object=k"), &bad_module);
    assert!(e.contains("/nonexistent/libpkcs11.so"), "{e}");
    // An unknown token: the labels present are listed.
    let e = open("pkcs11:token=nope;object=k", &settings());
    assert!(e.contains("no token matches"), "{e}");
    assert!(
        e.contains(&format!("{TOKEN:?}")) && e.contains(&format!("{PIN_TOKEN:?}")),
        "{e}"
    );
    // Every token matches a URI without token attributes.
    let e = open("pkcs11:object=k", &settings());
    assert!(e.contains("3 tokens match"), "{e}");
    let e = open(&format!("pkcs11:token={TOKEN}"), &settings());
    assert!(e.contains("names no key"), "{e}");
    // A token that needs a login, and no PIN anywhere.
    let no_pin = Pkcs11Settings {
        module: settings().module,
        pin: None,
    };
    let e = open(&format!("pkcs11:token={NO_PIN_TOKEN};object=k"), &no_pin);
    assert!(
        e.contains("the token needs a PIN and none is configured"),
        "{e}"
    );
    // A PIN variable that is not set is named.
    let env_pin = Pkcs11Settings {
        module: settings().module,
        pin: Some(PinSource::Env("CERTWRIGHT_TEST_NO_SUCH_PIN".into())),
    };
    let e = open(&format!("pkcs11:token={NO_PIN_TOKEN};object=k"), &env_pin);
    assert!(e.contains("CERTWRIGHT_TEST_NO_SUCH_PIN is not set"), "{e}");
}

/// A token may hold a private EC key without its public key object: then the point comes
/// from CKA_PUBLIC_KEY_INFO, or (SoftHSM2 2.6 gives none) the error says what is missing.
#[test]
fn an_ec_key_without_its_public_key_object_needs_public_key_info() {
    let _token = token_lock();
    let text = format!("pkcs11:token={TOKEN};object=lone;id=%10");
    let key = Pkcs11Key::generate(&uri(&text), CaKeyType::Ec256, &settings()).unwrap();
    key.with_session(|session, _| {
        let public = find_one(session, key.uri(), ObjectClass::PUBLIC_KEY).unwrap();
        session.destroy_object(public).unwrap();
    });
    match Pkcs11Key::open(&uri(&text), &settings()) {
        Ok(again) => {
            eprintln!("public key read from CKA_PUBLIC_KEY_INFO");
            assert_eq!(again.public_key(), key.public_key());
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("no CKA_PUBLIC_KEY_INFO"), "{e}");
        }
    }
}

#[test]
fn return_codes_are_named_as_pkcs11_names_them() {
    use cryptoki::context::Function;
    use cryptoki::error::RvError;
    for (rv, name, gone) in [
        (RvError::PinIncorrect, "CKR_PIN_INCORRECT", false),
        (RvError::PinLocked, "CKR_PIN_LOCKED", false),
        (
            RvError::SessionHandleInvalid,
            "CKR_SESSION_HANDLE_INVALID",
            true,
        ),
        (RvError::DeviceRemoved, "CKR_DEVICE_REMOVED", true),
        (RvError::TokenNotPresent, "CKR_TOKEN_NOT_PRESENT", true),
        (RvError::UserNotLoggedIn, "CKR_USER_NOT_LOGGED_IN", true),
        (RvError::DeviceError, "CKR_DEVICE_ERROR", true),
        (
            RvError::ObjectHandleInvalid,
            "CKR_OBJECT_HANDLE_INVALID",
            true,
        ),
        (
            RvError::CryptokiNotInitialized,
            "CKR_CRYPTOKI_NOT_INITIALIZED",
            true,
        ),
        (RvError::MechanismInvalid, "CKR_MECHANISM_INVALID", false),
        (
            RvError::VendorDefined(0x8000_0001),
            "CKR_VENDOR_DEFINED+0x80000001",
            false,
        ),
    ] {
        let e = CkError::Pkcs11(rv, Function::Sign);
        assert_eq!(module::error_name(&e), name);
        assert_eq!(module::token_gone(&e), gone, "{name}");
        assert_eq!(
            module::pin_refused(&e),
            name.starts_with("CKR_PIN"),
            "{name}"
        );
    }
}

#[test]
fn concurrent_signatures_all_verify() {
    let _token = token_lock();
    let location = uri(&format!("pkcs11:token={TOKEN};object=concurrent"));
    let key = Arc::new(Pkcs11Key::generate(&location, CaKeyType::Ec256, &settings()).unwrap());
    std::thread::scope(|s| {
        for t in 0..4 {
            let key = key.clone();
            s.spawn(move || {
                for i in 0..50 {
                    assert_verifies(key.as_ref(), format!("thread {t} message {i}").as_bytes());
                }
            });
        }
    });
    assert!(key.sessions.lock().unwrap().len() <= IDLE_SESSIONS);
}

/// Signatures per second, P-256: SoftHSM2 on 1 and 4 threads, and a file key.
/// `cargo test -p certwright-server --lib ca::pkcs11::tests::signing_rate -- --ignored --nocapture`
#[test]
#[ignore]
fn signing_rate_softhsm_vs_file_key() {
    fn rate(key: &dyn CaKey, threads: usize, window: Duration) -> f64 {
        let start = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0;
                        while start.elapsed() < window {
                            key.sign(b"a TBSCertificate of a few hundred bytes")
                                .unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        total as f64 / start.elapsed().as_secs_f64()
    }
    let window = Duration::from_secs(3);
    let location = uri(&format!("pkcs11:token={TOKEN};object=rate"));
    let token = Pkcs11Key::generate(&location, CaKeyType::Ec256, &settings()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = FileKey::generate(&dir.path().join("k.pem"), CaKeyType::Ec256).unwrap();
    // The token without this module's code around it (no pool, no locks): one session
    // per thread, C_Sign on a digest; if this is no faster, the wrapper is no bottleneck.
    let digest = digest::digest(&digest::SHA256, b"a TBSCertificate")
        .as_ref()
        .to_vec();
    for threads in [1, 4] {
        let start = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let state = token.module.read();
                        let bound = token.bind(&state).unwrap();
                        let session = open_session(&state, &token.module, bound.slot).unwrap();
                        let mut n = 0;
                        while start.elapsed() < window {
                            session.sign(&Mechanism::Ecdsa, bound.key, &digest).unwrap();
                            n += 1;
                        }
                        let _ = session.close();
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        println!(
            "P-256 raw C_Sign, {threads} thread(s): {:>8.0} signatures/s",
            total as f64 / start.elapsed().as_secs_f64()
        );
    }
    for (name, key) in [("softhsm2", &token as &dyn CaKey), ("file", &file)] {
        for threads in [1, 4] {
            println!(
                "P-256 {name:>8}, {threads} thread(s): {:>8.0} signatures/s",
                rate(key, threads, window)
            );
        }
    }
}

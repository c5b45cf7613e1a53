//! A CA key in a SoftHSM2 token that goes away and comes back, with no restart.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` only in `C_Initialize`, so this binary sets it before
//! anything loads the module, and changes it while the test runs: that is why this file
//! holds one test (a test binary of its own, nothing else reading the environment).
//!
//! What it shows:
//! 1. Pointing `SOFTHSM2_CONF` at a configuration with an empty token directory changes
//!    nothing by itself: the initialised module keeps its token and keeps signing.
//! 2. When the token's objects really go (its directory moved away: SoftHSM2's nearest
//!    thing to unplugging), the signature fails; the key re-initialises the module, which
//!    now reads the swapped configuration and finds no token, and the retry fails too:
//!    the caller gets an `IssuerError` naming the URI and saying what happened — no
//!    panic, and rcgen gets a plain error.
//! 3. Putting the token directory back is not enough while the configuration still names
//!    the empty one (each failed signature re-initialises, and reads it again).
//! 4. With the configuration restored, the next signature re-initialises, finds the
//!    token and the key again, and works: no restart.

use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use certwright_server::ca::keys::{CaKey, PinSource, Pkcs11Settings, RcgenKey};
use certwright_server::ca::pkcs11::{Pkcs11Key, Pkcs11Uri};
use certwright_server::ca::CaKeyType;
use certwright_testkit::peers::softhsm::SoftHsm;

fn signs(key: &Pkcs11Key, msg: &[u8]) -> Result<(), String> {
    let sig = key.sign(msg).map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key())
        .verify(msg, &sig)
        .map_err(|_| "the signature does not verify".to_string())
}

#[test]
fn a_token_that_goes_away_fails_signatures_clearly_and_comes_back_without_a_restart() {
    let hsm = SoftHsm::new("removable");
    std::env::set_var("SOFTHSM2_CONF", hsm.conf_path());
    let pin_file = hsm.write_pin_file(&hsm.dir().join("pin"));
    let settings = Pkcs11Settings {
        module: Some(hsm.module_path().to_owned()),
        pin: Some(PinSource::File(pin_file)),
    };
    let uri = Pkcs11Uri::parse("pkcs11:token=removable;object=intermediate;id=%01").unwrap();
    let key = Arc::new(Pkcs11Key::generate(&uri, CaKeyType::Ec256, &settings).unwrap());
    signs(&key, b"before").unwrap();

    // 1. The configuration alone: read at C_Initialize only.
    let empty = hsm.write_empty_conf();
    std::env::set_var("SOFTHSM2_CONF", &empty);
    signs(&key, b"configuration swapped, module untouched").unwrap();

    // 2. The token's objects go away.
    let away = hsm.dir().join("tokens-away");
    std::fs::rename(hsm.token_dir(), &away).unwrap();
    let e = signs(&key, b"token gone").unwrap_err();
    eprintln!("token gone: {e}");
    assert!(
        e.contains("pkcs11:token=removable;object=intermediate;id=%01"),
        "{e}"
    );
    // SoftHSM2 answers a key whose file went with CKR_OBJECT_HANDLE_INVALID; the retry
    // after re-initialising finds no token.
    assert!(
        e.contains("the token did not sign (CKR_OBJECT_HANDLE_INVALID)"),
        "{e}"
    );
    assert!(
        e.contains("after re-initialising the PKCS#11 module"),
        "{e}"
    );
    assert!(
        e.contains("no token matches the URI (CKR_TOKEN_NOT_PRESENT)"),
        "{e}"
    );
    assert!(!e.contains(hsm.pin()), "{e}");
    // From several threads at once, and through rcgen: errors, not panics.
    std::thread::scope(|s| {
        for _ in 0..4 {
            let key = key.clone();
            s.spawn(move || assert!(signs(&key, b"still gone").is_err()));
        }
    });
    let params = rcgen::CertificateParams::new(vec!["gone.test".to_string()]).unwrap();
    assert!(params.self_signed(&RcgenKey(key.clone())).is_err());

    // 3. The token is back, but the module is told to look in the empty directory.
    std::fs::rename(&away, hsm.token_dir()).unwrap();
    let e = signs(&key, b"files back, configuration not").unwrap_err();
    eprintln!("files back, configuration not: {e}");
    assert!(e.contains("CKR_TOKEN_NOT_PRESENT"), "{e}");

    // 4. The configuration is restored: the next signature works.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf_path());
    signs(&key, b"back").unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let key = key.clone();
            s.spawn(move || {
                for i in 0..20 {
                    signs(&key, format!("{t}/{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let params = rcgen::CertificateParams::new(vec!["back.test".to_string()]).unwrap();
    let cert = params.self_signed(&RcgenKey(key.clone())).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    parsed.verify_signature(None).unwrap();
}

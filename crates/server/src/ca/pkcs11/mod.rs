//! CA keys in a PKCS#11 token (through `cryptoki`): an RFC 7512 `pkcs11:` URI names the
//! key object, and the private key never leaves the token.
//!
//! - [`Pkcs11Uri`] (`uri.rs`): the URI; a PIN in it is refused.
//! - `pin.rs`: the user PIN, from a file or an environment variable.
//! - `module.rs`: one initialised module per `.so` per process; tokens; the login.
//! - `encoding.rs`: the DER the token does not produce (ECDSA signatures, public keys).
//! - [`Pkcs11Key`] (here): finding or generating the key, and signing with a small pool
//!   of sessions. When the token or its session went away, the module is re-initialised,
//!   the token and key found again, and the signature tried once more; if that fails the
//!   caller gets an [`IssuerError`] naming the URI, and the next signature tries again.

mod encoding;
mod module;
mod pin;
mod uri;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::{digest, signature};
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use rcgen::SignatureAlgorithm;

use super::hierarchy::CaKeyType;
use super::issuer::IssuerError;
use super::keys::{CaKey, KeyError, PinSource, Pkcs11Settings};
use module::{Failure, Module, State};

pub use uri::{ObjectType, Pkcs11Uri, UriAttributes};

/// DER of the named curves' OIDs, as `CKA_EC_PARAMS` holds them.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Sessions kept open for the next signature, per key; more are opened under load and
/// closed when they come back to a full pool.
const IDLE_SESSIONS: usize = 8;

/// What kind of key the token holds, and so how it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rsa,
}

impl Kind {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            Self::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }

    fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::Rsa => 0,
        }
    }
}

/// The token's objects for the key, in one initialisation of the module.
#[derive(Debug, Clone, Copy)]
struct Bound {
    generation: u64,
    slot: Slot,
    key: ObjectHandle,
}

/// A private key in a PKCS#11 token. Signing goes through the token; the key's public
/// half is read once, when it is opened.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    module: Arc<Module>,
    pin: Option<RawAuthPin>,
    kind: Kind,
    public_key: Vec<u8>,
    bound: Mutex<Option<Bound>>,
    sessions: Mutex<Vec<(u64, Session)>>,
    /// The token refused our PIN once: never offer it again (it would lock the token).
    pin_refused: AtomicBool,
}

/// Where the module is: the URI's `module-path`, else the settings'.
fn module_path(uri: &Pkcs11Uri, settings: &Pkcs11Settings) -> Result<PathBuf, KeyError> {
    uri.attributes()
        .module_path
        .clone()
        .or_else(|| settings.module.clone())
        .ok_or_else(|| {
            KeyError::Pkcs11(format!(
                "{uri}: no PKCS#11 module: give the URI a module-path or set the [pkcs11] \
                 module"
            ))
        })
}

/// The PIN, from the URI's `pin-source`, else the settings' source; `None` with neither.
fn pin(uri: &Pkcs11Uri, settings: &Pkcs11Settings) -> Result<Option<RawAuthPin>, KeyError> {
    let source = match (&uri.attributes().pin_source, &settings.pin) {
        (Some(path), _) => PinSource::File(path.clone()),
        (None, Some(source)) => source.clone(),
        (None, None) => return Ok(None),
    };
    pin::read_pin(&source)
        .map(Some)
        .map_err(|e| KeyError::Pkcs11(format!("{uri}: {e}")))
}

impl Pkcs11Key {
    /// Opens the key `uri` names: loads the module (URI's `module-path`, else
    /// `settings.module`), finds the token, logs in with the PIN (URI's `pin-source`,
    /// else `settings.pin`), finds exactly one private key by `object` and/or `id`, reads
    /// its public key, and checks with one signature that the two belong together.
    pub fn open(uri: &Pkcs11Uri, settings: &Pkcs11Settings) -> Result<Self, KeyError> {
        let module = Module::get(&module_path(uri, settings)?)
            .map_err(|e| KeyError::Pkcs11(format!("{uri}: {e}")))?;
        let pin = pin(uri, settings)?;
        Self::open_in(uri, module, pin)
    }

    fn open_in(
        uri: &Pkcs11Uri,
        module: Arc<Module>,
        pin: Option<RawAuthPin>,
    ) -> Result<Self, KeyError> {
        if uri.attributes().object.is_none() && uri.attributes().id.is_none() {
            return Err(KeyError::Invalid(format!(
                "{uri}: names no key: give object= (the label) and/or id="
            )));
        }
        let fail = |f: Failure| KeyError::Pkcs11(format!("{uri}: {}", f.message));
        let (kind, public_key, bound) = {
            let state = module.read();
            let slot = state.find_slot(&module, uri).map_err(fail)?;
            state
                .ensure_login(&module, slot, pin.as_ref())
                .map_err(fail)?;
            let session = open_session(&state, &module, slot).map_err(fail)?;
            let key = find_one(&session, uri, ObjectClass::PRIVATE_KEY).map_err(fail)?;
            let (kind, public_key) = read_public_key(&session, uri, key).map_err(fail)?;
            let _ = session.close();
            let bound = Bound {
                generation: state.generation(),
                slot,
                key,
            };
            (kind, public_key, bound)
        };
        let key = Self {
            uri: uri.clone(),
            module,
            pin,
            kind,
            public_key,
            bound: Mutex::new(Some(bound)),
            sessions: Mutex::new(Vec::new()),
            pin_refused: AtomicBool::new(false),
        };
        // A public key object that belongs to another private key would make every
        // certificate unverifiable: one signature now finds that out.
        let probe = b"certwright: does the token's key match its public key?";
        let sig = key.sign(probe).map_err(|e| KeyError::Pkcs11(e.0.clone()))?;
        signature::UnparsedPublicKey::new(kind.verification(), &key.public_key)
            .verify(probe, &sig)
            .map_err(|_| {
                KeyError::Invalid(format!(
                    "{uri}: the token's signature does not verify with the public key found \
                     for it (a public key object of another key?)"
                ))
            })?;
        Ok(key)
    }

    /// Generates a key pair of `key_type` in the token: labelled with the URI's `object`
    /// (required) and, if given, its `id`; the private key is a token object, private,
    /// sensitive, not extractable and may sign. Refuses if an object with that label or
    /// id exists. Then opens it as [`Pkcs11Key::open`] does.
    pub fn generate(
        uri: &Pkcs11Uri,
        key_type: CaKeyType,
        settings: &Pkcs11Settings,
    ) -> Result<Self, KeyError> {
        let Some(label) = uri.attributes().object.clone() else {
            return Err(KeyError::Invalid(format!(
                "{uri}: a key to generate needs a label: add object=NAME"
            )));
        };
        let module = Module::get(&module_path(uri, settings)?)
            .map_err(|e| KeyError::Pkcs11(format!("{uri}: {e}")))?;
        let pin = pin(uri, settings)?;
        let fail = |f: Failure| KeyError::Pkcs11(format!("{uri}: {}", f.message));
        {
            let _writing = module.lock_object_writes();
            let state = module.read();
            let slot = state.find_slot(&module, uri).map_err(fail)?;
            state
                .ensure_login(&module, slot, pin.as_ref())
                .map_err(fail)?;
            let session = state
                .context(&module)
                .map_err(fail)?
                .open_rw_session(slot)
                .map_err(|e| fail(Failure::ck("the token refused a read-write session", &e)))?;
            let mut clashes = vec![Attribute::Label(label.clone().into_bytes())];
            if let Some(id) = &uri.attributes().id {
                clashes.push(Attribute::Id(id.clone()));
            }
            for attribute in clashes {
                let found = session
                    .find_objects(std::slice::from_ref(&attribute))
                    .map_err(|e| fail(Failure::ck("searching the token failed", &e)))?;
                if !found.is_empty() {
                    let what = match attribute {
                        Attribute::Label(_) => format!("label {label:?}"),
                        _ => "that id".to_string(),
                    };
                    return Err(KeyError::Invalid(format!(
                        "{uri}: the token already holds {} object(s) with {what}; refusing \
                         to create another key",
                        found.len()
                    )));
                }
            }
            let mut common = vec![Attribute::Token(true), Attribute::Label(label.into_bytes())];
            if let Some(id) = &uri.attributes().id {
                common.push(Attribute::Id(id.clone()));
            }
            let mut public = common.clone();
            public.extend([Attribute::Private(false), Attribute::Verify(true)]);
            let mut private = common;
            private.extend([
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
            ]);
            let mechanism = match key_type {
                CaKeyType::Ec256 | CaKeyType::Ec384 => {
                    let params = if key_type == CaKeyType::Ec256 {
                        P256_PARAMS
                    } else {
                        P384_PARAMS
                    };
                    public.push(Attribute::EcParams(params.to_vec()));
                    Mechanism::EccKeyPairGen
                }
                CaKeyType::Rsa2048 | CaKeyType::Rsa3072 | CaKeyType::Rsa4096 => {
                    let bits: u64 = match key_type {
                        CaKeyType::Rsa2048 => 2048,
                        CaKeyType::Rsa3072 => 3072,
                        _ => 4096,
                    };
                    public.extend([
                        Attribute::ModulusBits(bits.into()),
                        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    ]);
                    Mechanism::RsaPkcsKeyPairGen
                }
            };
            session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(|e| {
                    KeyError::Generate(format!(
                        "{uri}: the token did not generate the key pair ({})",
                        module::error_name(&e)
                    ))
                })?;
            tracing::info!(key = %uri, "generated a CA key pair in the PKCS#11 token");
        }
        Self::open_in(uri, module, pin)
    }

    /// The URI the key was opened with.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// One attempt at a raw PKCS#11 signature over `data` (the digest for ECDSA, the
    /// message for RSA), with the generation of the module it used.
    fn try_sign(&self, data: &[u8]) -> Result<Vec<u8>, (Failure, u64)> {
        let state = self.module.read();
        let generation = state.generation();
        let at = |f: Failure| (f, generation);
        let bound = self.bind(&state).map_err(at)?;
        let session = self.take_session(&state, bound.slot).map_err(at)?;
        let mechanism = match self.kind {
            Kind::P256 | Kind::P384 => Mechanism::Ecdsa,
            Kind::Rsa => Mechanism::Sha256RsaPkcs,
        };
        match session.sign(&mechanism, bound.key, data) {
            Ok(signature) => {
                self.give_back(&state, session);
                Ok(signature)
            }
            Err(e) => {
                let _ = session.close();
                if module::token_gone(&e) {
                    // Find the key again next time even if the module stays as it is.
                    *self.bound.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(at(Failure::ck("the token did not sign", &e)))
            }
        }
    }

    /// The token's key in this initialisation of the module: found again (token, login,
    /// key) after a re-initialisation.
    fn bind(&self, state: &State) -> Result<Bound, Failure> {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = *bound {
            if b.generation == state.generation() {
                return Ok(b);
            }
        }
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(Failure::fixed(
                "the token refused the PIN earlier; it is not offered again (that would \
                 lock the token): fix the PIN source and restart",
            ));
        }
        let slot = state.find_slot(&self.module, &self.uri)?;
        if let Err(f) = state.ensure_login(&self.module, slot, self.pin.as_ref()) {
            if f.pin_refused {
                self.pin_refused.store(true, Ordering::Relaxed);
            }
            return Err(f);
        }
        let session = open_session(state, &self.module, slot)?;
        let found = find_one(&session, &self.uri, ObjectClass::PRIVATE_KEY);
        let _ = session.close();
        let key = found?;
        let b = Bound {
            generation: state.generation(),
            slot,
            key,
        };
        *bound = Some(b);
        Ok(b)
    }

    /// A session of this initialisation: an idle one, or a new one.
    fn take_session(&self, state: &State, slot: Slot) -> Result<Session, Failure> {
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            while let Some((generation, session)) = sessions.pop() {
                if generation == state.generation() {
                    return Ok(session);
                }
                // From a finalised initialisation: its handle means nothing now (and may
                // be reused), so it is dropped without closing (sessions here never
                // close on drop).
            }
        }
        open_session(state, &self.module, slot)
    }

    /// Puts `session` back in the pool, or closes it if the pool is full.
    fn give_back(&self, state: &State, session: Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() < IDLE_SESSIONS {
            sessions.push((state.generation(), session));
        } else {
            drop(sessions);
            let _ = session.close();
        }
    }

    fn issuer_error(&self, message: &str) -> IssuerError {
        IssuerError(format!("PKCS#11 key {}: {message}", self.uri))
    }
}

/// A read-only session that does not close itself on drop (its handle may outlive the
/// initialisation it belongs to; see [`Module::reinitialize`]).
fn open_session(state: &State, module: &Module, slot: Slot) -> Result<Session, Failure> {
    state
        .context(module)?
        .open_ro_session_no_drop(slot)
        .map_err(|e| Failure::ck("the token refused a session", &e))
}

/// The one object of `class` that the URI's `object` and `id` name.
fn find_one(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
) -> Result<ObjectHandle, Failure> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.attributes().object {
        template.push(Attribute::Label(label.clone().into_bytes()));
    }
    if let Some(id) = &uri.attributes().id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&template)
        .map_err(|e| Failure::ck("searching the token for the key failed", &e))?;
    let what = if class == ObjectClass::PRIVATE_KEY {
        "private key"
    } else {
        "public key"
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::gone(format!(
            "the token holds no {what} with {} (CKR_OBJECT_HANDLE_INVALID)",
            uri.describe_object()
        ))),
        many => Err(Failure::fixed(format!(
            "the token holds {} {what}s with {}; name one with id=",
            many.len(),
            uri.describe_object()
        ))),
    }
}

fn attribute_error(what: &str, e: &CkError) -> Failure {
    Failure::ck(&format!("the key's {what} could not be read"), e)
}

/// The key's kind and public key bytes (as rcgen's `der_bytes`): the EC point from the
/// matching public key object (or the private key's CKA_PUBLIC_KEY_INFO), or the RSA
/// modulus and exponent.
fn read_public_key(
    session: &Session,
    uri: &Pkcs11Uri,
    key: ObjectHandle,
) -> Result<(Kind, Vec<u8>), Failure> {
    let attributes = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(|e| attribute_error("type", &e))?;
    let key_type = attributes.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    match key_type {
        Some(t) if t == KeyType::EC => {
            let params = session
                .get_attributes(key, &[AttributeType::EcParams])
                .map_err(|e| attribute_error("curve", &e))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcParams(p) => Some(p),
                    _ => None,
                })
                .unwrap_or_default();
            let kind = if params == P256_PARAMS {
                Kind::P256
            } else if params == P384_PARAMS {
                Kind::P384
            } else {
                return Err(Failure::fixed(
                    "the key is on a curve the CA does not sign with (P-256 and P-384 only)",
                ));
            };
            let point = match find_one(session, uri, ObjectClass::PUBLIC_KEY) {
                Ok(public) => session
                    .get_attributes(public, &[AttributeType::EcPoint])
                    .map_err(|e| attribute_error("EC point", &e))?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::EcPoint(p) => Some(p),
                        _ => None,
                    }),
                Err(_) => None,
            };
            let point = match point {
                Some(point) => encoding::ec_point(&point, kind.field_len()),
                None => spki_point(session, key, kind),
            };
            Ok((kind, point.map_err(Failure::fixed)?))
        }
        Some(t) if t == KeyType::RSA => {
            let values = session
                .get_attributes(
                    key,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(|e| attribute_error("modulus", &e))?;
            let mut modulus = None;
            let mut exponent = None;
            for value in values {
                match value {
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                return Err(Failure::fixed(
                    "the RSA key shows no CKA_MODULUS and CKA_PUBLIC_EXPONENT",
                ));
            };
            let bits = modulus.iter().skip_while(|&&b| b == 0).count() * 8;
            if bits < 2048 {
                return Err(Failure::fixed(format!(
                    "the RSA key has about {bits} bits; the CA signs with 2048 or more"
                )));
            }
            let der = encoding::rsa_public_key(&modulus, &exponent).map_err(Failure::fixed)?;
            Ok((Kind::Rsa, der))
        }
        _ => Err(Failure::fixed(
            "the key is neither EC nor RSA (CKA_KEY_TYPE)",
        )),
    }
}

/// The EC point from the private key's CKA_PUBLIC_KEY_INFO (a DER SubjectPublicKeyInfo),
/// for tokens that hold no public key object.
fn spki_point(session: &Session, key: ObjectHandle, kind: Kind) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let info = session
        .get_attributes(key, &[AttributeType::PublicKeyInfo])
        .ok()
        .and_then(|values| {
            values.into_iter().find_map(|a| match a {
                Attribute::PublicKeyInfo(info) if !info.is_empty() => Some(info),
                _ => None,
            })
        })
        .ok_or("the token holds no public key object for the key, and the private key has no CKA_PUBLIC_KEY_INFO")?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&info)
        .map_err(|e| format!("the key's CKA_PUBLIC_KEY_INFO is no SubjectPublicKeyInfo: {e}"))?;
    encoding::ec_point(&spki.subject_public_key.data, kind.field_len())
}

impl CaKey for Pkcs11Key {
    fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.kind.algorithm()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IssuerError> {
        let data = match self.kind {
            Kind::P256 => digest::digest(&digest::SHA256, msg).as_ref().to_vec(),
            Kind::P384 => digest::digest(&digest::SHA384, msg).as_ref().to_vec(),
            Kind::Rsa => msg.to_vec(),
        };
        let raw = match self.try_sign(&data) {
            Ok(raw) => raw,
            Err((failure, generation)) if failure.gone => {
                tracing::warn!(
                    key = %self.uri,
                    error = %failure.message,
                    "a PKCS#11 signature failed; re-initialising the module and trying once more"
                );
                if let Err(e) = self.module.reinitialize(generation) {
                    return Err(self.issuer_error(&format!("{} (and then {e})", failure.message)));
                }
                self.try_sign(&data).map_err(|(again, _)| {
                    self.issuer_error(&format!(
                        "{}; after re-initialising the PKCS#11 module {}: {}",
                        failure.message,
                        self.module.path().display(),
                        again.message
                    ))
                })?
            }
            Err((failure, _)) => return Err(self.issuer_error(&failure.message)),
        };
        match self.kind {
            Kind::P256 | Kind::P384 => encoding::ecdsa_sig_value(&raw, self.kind.field_len())
                .map_err(|e| self.issuer_error(&e)),
            Kind::Rsa => Ok(raw),
        }
    }

    fn location(&self) -> String {
        self.uri.to_string()
    }
}

impl Drop for Pkcs11Key {
    fn drop(&mut self) {
        let state = self.module.read();
        let sessions = std::mem::take(
            self.sessions
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (generation, session) in sessions {
            // Only sessions of this initialisation are ours to close.
            if generation == state.generation() {
                let _ = session.close();
            }
        }
    }
}

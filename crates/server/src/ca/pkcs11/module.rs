//! PKCS#11 modules: one loaded, initialised `cryptoki` context per module file per
//! process (a second `C_Initialize` of a module fails), shared by every key that uses it;
//! re-initialisation after the token went away; finding a token; logging in once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;

use super::uri::Pkcs11Uri;

/// A failed PKCS#11 operation: a fixed sentence plus the return code's name, and whether
/// re-initialising the module may help (the session, token or module went away).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// What failed and why, for the error message (never a PIN).
    pub(crate) message: String,
    /// The token or its session went away: re-initialise and try again.
    pub(crate) gone: bool,
    /// The token refused the PIN: it must not be offered again.
    pub(crate) pin_refused: bool,
}

impl Failure {
    /// `sentence`, then the name of `error`'s return code; `gone` as [`token_gone`] says.
    pub(crate) fn ck(sentence: &str, error: &CkError) -> Self {
        Self {
            message: format!("{sentence} ({})", error_name(error)),
            gone: token_gone(error),
            pin_refused: false,
        }
    }

    /// A failure that re-initialising cannot fix.
    pub(crate) fn fixed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            gone: false,
            pin_refused: false,
        }
    }

    /// A failure that re-initialising may fix (the token is not there now).
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            gone: true,
            pin_refused: false,
        }
    }
}

/// `CKR_PIN_INCORRECT` for `RvError::PinIncorrect`, and so on: the name PKCS#11 gives
/// the return code, which is what operators search for.
pub(crate) fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+{code:#x}"),
        RvError::UnknownErrorCode(code) => format!("CKR {code:#x}"),
        other => {
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// The PKCS#11 return code of `error` by name (`CKR_DEVICE_REMOVED`), or cryptoki's own
/// sentence for errors that are not a return code (loading the library, …).
pub(crate) fn error_name(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, _) => rv_name(*rv),
        other => other.to_string(),
    }
}

/// Whether `error` says the token, its session or the module went away, so that
/// re-initialising the module and finding the token again may help.
pub(crate) fn token_gone(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::SlotIdInvalid
                | RvError::GeneralError,
            _
        )
    )
}

/// Whether `error` is the token refusing the PIN (wrong, locked, expired, malformed).
pub(crate) fn pin_refused(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinExpired
                | RvError::PinInvalid
                | RvError::PinLenRange,
            _
        )
    )
}

/// A PKCS#11 module (its `.so`), loaded once per process.
pub(crate) struct Module {
    path: PathBuf,
    state: RwLock<State>,
    /// Held while objects are created or destroyed in a token of this module: the
    /// check for a clashing label and the creation are then one step, and SoftHSM2's
    /// file object store, which fails concurrent creations with CKR_GENERAL_ERROR
    /// (SoftHSMv2 issue 573), sees one at a time.
    object_writes: Mutex<()>,
}

/// The module's context and what lives as long as one initialisation of it.
///
/// Operations hold the read lock for as long as they use the context (so a
/// re-initialisation, which takes the write lock, never finalises under a running call);
/// `generation` counts initialisations, so sessions and object handles from an earlier
/// one are recognised and never used (or closed) again.
pub(crate) struct State {
    context: Pkcs11,
    initialized: bool,
    generation: u64,
    /// One open session per slot we logged in to: PKCS#11 logs an application out of a
    /// token when its last session there closes, so this one stays open.
    logins: Mutex<HashMap<u64, Session>>,
}

/// The modules loaded in this process, by canonical path.
fn modules() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Module {
    /// The module at `path`, loaded and initialised on first use; the same one after.
    pub(crate) fn get(path: &Path) -> Result<Arc<Self>, String> {
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| format!("the PKCS#11 module {}: {e}", path.display()))?;
        let mut modules = modules().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(&canonical) {
            return Ok(module.clone());
        }
        let context = Pkcs11::new(&canonical).map_err(|e| {
            format!(
                "the PKCS#11 module {} could not be loaded ({})",
                path.display(),
                error_name(&e)
            )
        })?;
        match context.initialize(init_args()) {
            // Someone else in this process initialised it (under another name): use it.
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(format!(
                    "the PKCS#11 module {} failed to initialise ({})",
                    path.display(),
                    error_name(&e)
                ))
            }
        }
        let module = Arc::new(Self {
            path: canonical.clone(),
            state: RwLock::new(State {
                context,
                initialized: true,
                generation: 0,
                logins: Mutex::new(HashMap::new()),
            }),
            object_writes: Mutex::new(()),
        });
        modules.insert(canonical, module.clone());
        Ok(module)
    }

    /// Serialises object creation and destruction in this module's tokens.
    pub(crate) fn lock_object_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.object_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The module's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The current initialisation, held for the length of an operation.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finalises and initialises the module again (which makes it look for its tokens
    /// afresh: SoftHSM2 re-reads `SOFTHSM2_CONF`), unless another thread already did since
    /// `seen_generation`. Every session and handle of the old initialisation is dropped.
    pub(crate) fn reinitialize(&self, seen_generation: u64) -> Result<(), String> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.generation != seen_generation {
            return if state.initialized {
                Ok(())
            } else {
                Err(self.not_initialized())
            };
        }
        tracing::warn!(
            module = %self.path.display(),
            "re-initialising the PKCS#11 module (a token or its session went away)"
        );
        let logins = std::mem::take(
            state
                .logins
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if state.initialized {
            for (_, session) in logins {
                // The token may be gone: a failure to close is expected and harmless.
                let _ = session.close();
            }
            if let Err(e) = state.context.clone().finalize() {
                tracing::debug!(error = %error_name(&e), "C_Finalize failed; initialising anyway");
            }
        }
        state.generation += 1;
        state.initialized = false;
        match state.context.initialize(init_args()) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                state.initialized = true;
                Ok(())
            }
            Err(e) => Err(format!(
                "the PKCS#11 module {} failed to initialise again ({})",
                self.path.display(),
                error_name(&e)
            )),
        }
    }

    fn not_initialized(&self) -> String {
        format!(
            "the PKCS#11 module {} is not initialised (its last re-initialisation failed)",
            self.path.display()
        )
    }
}

/// What a URI says about the token, matched against a slot and its token.
fn token_matches(
    uri: &Pkcs11Uri,
    slot: Slot,
    info: &cryptoki::slot::TokenInfo,
    slot_info: Option<&cryptoki::slot::SlotInfo>,
) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&uri.attributes().token, info.label())
        && eq(&uri.attributes().manufacturer, info.manufacturer_id())
        && eq(&uri.attributes().serial, info.serial_number())
        && eq(&uri.attributes().model, info.model())
        && uri.attributes().slot_id.is_none_or(|id| id == slot.id())
        && slot_info.is_none_or(|s| {
            eq(&uri.attributes().slot_description, s.slot_description())
                && eq(&uri.attributes().slot_manufacturer, s.manufacturer_id())
        })
}

impl State {
    /// This initialisation's number (see [`Module::reinitialize`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The context, if the module is initialised.
    pub(crate) fn context(&self, module: &Module) -> Result<&Pkcs11, Failure> {
        if self.initialized {
            Ok(&self.context)
        } else {
            Err(Failure::gone(module.not_initialized()))
        }
    }

    /// The one slot whose token the URI names. None: an error listing the tokens there
    /// are; several: an error asking for a narrower URI.
    pub(crate) fn find_slot(&self, module: &Module, uri: &Pkcs11Uri) -> Result<Slot, Failure> {
        let context = self.context(module)?;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| Failure::ck("the module could not list its slots", &e))?;
        let mut present = Vec::new();
        let mut matching = Vec::new();
        for slot in slots {
            let info = match context.get_token_info(slot) {
                Ok(info) => info,
                // A token pulled out between the two calls: not present.
                Err(_) => continue,
            };
            let slot_info = if uri.attributes().slot_description.is_some()
                || uri.attributes().slot_manufacturer.is_some()
            {
                context.get_slot_info(slot).ok()
            } else {
                None
            };
            present.push(if info.token_initialized() {
                format!("{:?} (slot {})", info.label(), slot.id())
            } else {
                format!("an uninitialised token (slot {})", slot.id())
            });
            // An uninitialised token holds no keys (SoftHSM2 always shows one).
            if info.token_initialized() && token_matches(uri, slot, &info, slot_info.as_ref()) {
                matching.push(slot);
            }
        }
        match matching.as_slice() {
            [slot] => Ok(*slot),
            [] => Err(Failure::gone(format!(
                "no token matches the URI (CKR_TOKEN_NOT_PRESENT); tokens present: {}",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ))),
            _ => Err(Failure::fixed(format!(
                "{} tokens match the URI ({}); name one with token=, serial= or slot-id=",
                matching.len(),
                present.join(", ")
            ))),
        }
    }

    /// Logs in as the user on `slot` (once per initialisation), with `pin`; a token
    /// without a login requirement needs none, one with a PIN pad gets none.
    pub(crate) fn ensure_login(
        &self,
        module: &Module,
        slot: Slot,
        pin: Option<&RawAuthPin>,
    ) -> Result<(), Failure> {
        let context = self.context(module)?;
        let mut logins = self.logins.lock().unwrap_or_else(PoisonError::into_inner);
        if logins.contains_key(&slot.id()) {
            return Ok(());
        }
        let info = context
            .get_token_info(slot)
            .map_err(|e| Failure::ck("the token's information could not be read", &e))?;
        let session = context
            .open_ro_session_no_drop(slot)
            .map_err(|e| Failure::ck("the token refused a session", &e))?;
        if info.login_required() {
            let result = if info.protected_authentication_path() && pin.is_none() {
                session.login(UserType::User, None)
            } else {
                match pin {
                    Some(pin) => session.login_with_raw(UserType::User, pin),
                    None => {
                        let _ = session.close();
                        return Err(Failure::fixed(
                            "the token needs a PIN and none is configured: give the URI a \
                             pin-source or set the [pkcs11] PIN file or variable",
                        ));
                    }
                }
            };
            match result {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => {
                    let _ = session.close();
                    return Err(if pin_refused(&e) {
                        Failure {
                            message: format!(
                                "the token refused the PIN ({}); check the PIN source (the \
                                 token locks after too many wrong PINs)",
                                error_name(&e)
                            ),
                            gone: false,
                            pin_refused: true,
                        }
                    } else {
                        Failure::ck("logging in to the token failed", &e)
                    });
                }
            }
        }
        logins.insert(slot.id(), session);
        Ok(())
    }
}

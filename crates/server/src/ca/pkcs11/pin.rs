//! The token's user PIN: read from a file (should be 0600) or an environment variable,
//! held in a zeroize-on-drop secret, never logged and never put into a message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cryptoki::types::RawAuthPin;
use secrecy::ExposeSecretMut;

use super::super::keys::{KeyError, PinSource};

/// Reads the PIN from `source`. A file's trailing newline (`\n` or `\r\n`) is dropped; a
/// file group or others may read is used with a warning. Errors name the file or the
/// variable, never the PIN.
pub(crate) fn read_pin(source: &PinSource) -> Result<RawAuthPin, KeyError> {
    // Into the zeroize-on-drop box at once, so every copy of the PIN is wiped.
    let mut pin = RawAuthPin::new(Box::new(match source {
        PinSource::File(path) => read_pin_file(path)?,
        PinSource::Env(name) => match std::env::var_os(name) {
            Some(value) => value.into_encoded_bytes(),
            None => {
                return Err(KeyError::Pkcs11(format!(
                    "the PIN variable {name} is not set"
                )))
            }
        },
    }));
    let bytes = pin.expose_secret_mut();
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(KeyError::Pkcs11(match source {
            PinSource::File(path) => format!("{}: the PIN file is empty", path.display()),
            PinSource::Env(name) => format!("the PIN variable {name} is empty"),
        }));
    }
    Ok(pin)
}

fn read_pin_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o044 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = %format!("{:o}", meta.permissions().mode() & 0o777),
            "the PKCS#11 PIN file can be read by group or others; make it 0600"
        );
    }
    std::fs::read(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn expose(pin: &RawAuthPin) -> Vec<u8> {
        pin.expose_secret().clone()
    }

    #[test]
    fn pins_come_from_files_without_the_newline_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, "1234\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pin = read_pin(&PinSource::File(file.clone())).unwrap();
        assert_eq!(expose(&pin), b"1234");
        std::fs::write(&file, "12 34\r\n").unwrap();
        assert_eq!(
            expose(&read_pin(&PinSource::File(file.clone())).unwrap()),
            b"12 34"
        );
        std::fs::write(&file, "\n").unwrap();
        let e = read_pin(&PinSource::File(file.clone())).err().unwrap();
        assert!(e.to_string().contains("the PIN file is empty"), "{e}");
        let e = read_pin(&PinSource::File(dir.path().join("missing")))
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
        // PATH is set in every test run; its value is not a PIN but shows the variable is
        // read. A variable that is not set is named in the error.
        assert!(read_pin(&PinSource::Env("PATH".into())).is_ok());
        let e = read_pin(&PinSource::Env("CERTWRIGHT_NO_SUCH_PIN_VAR".into()))
            .err()
            .unwrap();
        assert!(e
            .to_string()
            .contains("CERTWRIGHT_NO_SUCH_PIN_VAR is not set"));
    }
}

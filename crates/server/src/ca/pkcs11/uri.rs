//! RFC 7512 `pkcs11:` URIs: which token, which key object, and (in the query) which
//! module and where the PIN comes from. A PIN written into the URI (`pin-value`) is
//! refused: secrets come only from a 0600 file or an environment variable.

use std::fmt;
use std::path::PathBuf;

use super::super::keys::KeyError;

/// The object class a URI's `type` attribute names. Only private keys are CA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=private`: a private key (the only class the CA signs with).
    Private,
}

/// An RFC 7512 `pkcs11:` URI naming a token object.
///
/// Path attributes select the token (`token`, `manufacturer`, `serial`, `model`,
/// `slot-id`, `slot-description`, `slot-manufacturer`) and the object (`object` — the
/// label, `id` — the CKA_ID bytes, `type` — `private` or absent); `library-*` attributes
/// are accepted and ignored. Query attributes: `module-path` (the `.so` to load) and
/// `pin-source` (a `file:` URI or a plain path). `pin-value` and unknown attributes are
/// refused. [`fmt::Display`] prints the URI back (percent-encoded, canonical order); it
/// never holds a PIN to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    // Boxed: a URI sits in `KeyLocation` beside a path, and is rarely copied.
    attributes: Box<UriAttributes>,
}

/// The decoded attributes of a [`Pkcs11Uri`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UriAttributes {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `manufacturer`: the token's manufacturer ID.
    pub manufacturer: Option<String>,
    /// `serial`: the token's serial number.
    pub serial: Option<String>,
    /// `model`: the token's model.
    pub model: Option<String>,
    /// `slot-id`: the slot's number.
    pub slot_id: Option<u64>,
    /// `slot-description`: the slot's description.
    pub slot_description: Option<String>,
    /// `slot-manufacturer`: the slot's manufacturer ID.
    pub slot_manufacturer: Option<String>,
    /// `object`: the key's label (CKA_LABEL).
    pub object: Option<String>,
    /// `id`: the key's CKA_ID, as bytes.
    pub id: Option<Vec<u8>>,
    /// `type`: the object class (`private`), when given.
    pub object_type: Option<ObjectType>,
    /// `module-path`: the PKCS#11 module to load; wins over the settings' module.
    pub module_path: Option<PathBuf>,
    /// `pin-source`: the file holding the user PIN; wins over the settings' PIN source.
    pub pin_source: Option<PathBuf>,
}

/// Path attributes RFC 7512 defines that say nothing about which key to use.
const IGNORED: &[&str] = &[
    "library-manufacturer",
    "library-description",
    "library-version",
];

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI (RFC 7512, percent-decoding per RFC 3986). Refuses
    /// `pin-value`, unknown or repeated attributes, bad percent-encoding, and values that
    /// are not UTF-8 (except `id`, which is bytes).
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        let bad = |detail: String| KeyError::Invalid(format!("a pkcs11: URI: {detail}"));
        let rest = value
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("does not start with \"pkcs11:\"".into()))?;
        if rest.contains('#') {
            return Err(bad("a fragment (#) is not allowed".into()));
        }
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut uri = UriAttributes::default();
        let mut seen: Vec<String> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut attributes = Vec::new();
        if !path.is_empty() {
            attributes.extend(path.split(';').map(|a| (a, false)));
        }
        if let Some(query) = query {
            if !query.is_empty() {
                attributes.extend(query.split('&').map(|a| (a, true)));
            }
        }
        for (attribute, in_query) in attributes {
            let (name, raw) = attribute
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute {attribute:?} has no \"=\"")))?;
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return Err(bad(format!("attribute {name:?} appears twice")));
            }
            seen.push(name.clone());
            if name == "pin-value" {
                return Err(bad(
                    "pin-value is refused: a PIN must not be written into a URI or a config \
                     file; use pin-source=file:/path/to/a/0600/file or the [pkcs11] pin \
                     settings (a file or an environment variable)"
                        .into(),
                ));
            }
            let query_only = matches!(name.as_str(), "module-path" | "pin-source" | "module-name");
            if query_only != in_query && !unknown_name(&name) {
                let place = if query_only {
                    "query (after ?)"
                } else {
                    "path (before ?)"
                };
                return Err(bad(format!("attribute {name:?} belongs in the {place}")));
            }
            let bytes = percent_decode(raw).map_err(|e| bad(format!("attribute {name:?}: {e}")))?;
            if bytes.is_empty() {
                return Err(bad(format!("attribute {name:?} is empty")));
            }
            if name == "id" {
                uri.id = Some(bytes);
                continue;
            }
            if IGNORED.contains(&name.as_str()) {
                continue;
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| bad(format!("attribute {name:?} is not UTF-8")))?;
            match name.as_str() {
                "token" => uri.token = Some(text),
                "manufacturer" => uri.manufacturer = Some(text),
                "serial" => uri.serial = Some(text),
                "model" => uri.model = Some(text),
                "slot-description" => uri.slot_description = Some(text),
                "slot-manufacturer" => uri.slot_manufacturer = Some(text),
                "object" => uri.object = Some(text),
                "slot-id" => {
                    uri.slot_id =
                        Some(text.parse().map_err(|_| {
                            bad(format!("slot-id {text:?} is not a decimal number"))
                        })?)
                }
                "type" => {
                    uri.object_type = match text.as_str() {
                        "private" => Some(ObjectType::Private),
                        other => {
                            return Err(bad(format!(
                                "type={other} does not name a private key (use type=private \
                                 or leave type out)"
                            )))
                        }
                    }
                }
                "module-path" => uri.module_path = Some(PathBuf::from(text)),
                "module-name" => {
                    return Err(bad(
                        "module-name is not supported: name the module's file with \
                         module-path=… or the [pkcs11] module setting"
                            .into(),
                    ))
                }
                "pin-source" => uri.pin_source = Some(pin_source_path(&text).map_err(bad)?),
                _ => unknown.push(name),
            }
        }
        if !unknown.is_empty() {
            return Err(bad(format!(
                "unknown attribute{} {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            attributes: Box::new(uri),
        })
    }

    /// The URI's attributes.
    pub fn attributes(&self) -> &UriAttributes {
        &self.attributes
    }

    /// The object the URI names, for messages: `object "L"` / `id %01%02` / both.
    pub(crate) fn describe_object(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.attributes.object {
            parts.push(format!("label {label:?}"));
        }
        if let Some(id) = &self.attributes.id {
            parts.push(format!("id {}", encode_bytes(id)));
        }
        parts.join(" and ")
    }
}

/// An attribute name that is no RFC 7512 attribute at all (reported as unknown).
fn unknown_name(name: &str) -> bool {
    !matches!(
        name,
        "token"
            | "manufacturer"
            | "serial"
            | "model"
            | "slot-id"
            | "slot-description"
            | "slot-manufacturer"
            | "object"
            | "id"
            | "type"
            | "library-manufacturer"
            | "library-description"
            | "library-version"
            | "module-path"
            | "module-name"
            | "pin-source"
    )
}

/// The path of a `pin-source` value: `file:///p`, `file:/p`, `file://localhost/p` or a
/// plain path. Other schemes (a command, …) are refused.
fn pin_source_path(value: &str) -> Result<PathBuf, String> {
    if let Some(rest) = value.strip_prefix("file:") {
        let path = if let Some(auth) = rest.strip_prefix("//") {
            let (host, path) = auth.split_at(auth.find('/').unwrap_or(auth.len()));
            if !(host.is_empty() || host == "localhost") {
                return Err(format!(
                    "pin-source {value:?} names another host; only local files are read"
                ));
            }
            path
        } else {
            rest
        };
        if path.is_empty() {
            return Err("pin-source \"file:\" names no file".into());
        }
        return Ok(PathBuf::from(path));
    }
    // A scheme is letters, digits, + - . before a colon that comes before any slash.
    if let Some(colon) = value.find(':') {
        let scheme = &value[..colon];
        if !scheme.is_empty()
            && !scheme.contains('/')
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(format!(
                "pin-source scheme \"{scheme}:\" is not supported; give a file (file:/path \
                 or a plain path)"
            ));
        }
    }
    if value.starts_with('|') {
        return Err("pin-source commands (|…) are not supported; give a file".into());
    }
    Ok(PathBuf::from(value))
}

/// Percent-decodes `raw` (RFC 3986): `%XX` becomes the byte, everything else stays.
fn percent_decode(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at {:?}", &raw[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes `value`, leaving RFC 3986 unreserved characters and `keep` as they are.
fn encode(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every byte as `%XX` (how RFC 7512 writes `id`).
fn encode_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path: Vec<String> = Vec::new();
        let text = [
            ("token", &self.attributes.token),
            ("manufacturer", &self.attributes.manufacturer),
            ("serial", &self.attributes.serial),
            ("model", &self.attributes.model),
            ("slot-description", &self.attributes.slot_description),
            ("slot-manufacturer", &self.attributes.slot_manufacturer),
        ];
        for (name, value) in text {
            if let Some(value) = value {
                path.push(format!("{name}={}", encode(value, b"")));
            }
        }
        if let Some(slot) = self.attributes.slot_id {
            path.push(format!("slot-id={slot}"));
        }
        if let Some(object) = &self.attributes.object {
            path.push(format!("object={}", encode(object, b"")));
        }
        if self.attributes.object_type.is_some() {
            path.push("type=private".into());
        }
        if let Some(id) = &self.attributes.id {
            path.push(format!("id={}", encode_bytes(id)));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        let mut query: Vec<String> = Vec::new();
        if let Some(module) = &self.attributes.module_path {
            query.push(format!(
                "module-path={}",
                encode(&module.to_string_lossy(), b"/")
            ));
        }
        if let Some(pin) = &self.attributes.pin_source {
            query.push(format!(
                "pin-source=file:{}",
                encode(&pin.to_string_lossy(), b"/")
            ));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(value: &str) -> String {
        Pkcs11Uri::parse(value).err().unwrap().to_string()
    }

    #[test]
    fn path_and_query_attributes_parse_and_percent_decode() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20CA;manufacturer=SoftHSM%20project;serial=abc123;model=SoftHSM%20v2;\
             slot-id=42;object=intermediate;type=private;id=%01%02%ff;\
             library-manufacturer=x;library-version=2.6\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ca/pin",
        )
        .unwrap();
        assert_eq!(uri.attributes().token.as_deref(), Some("My CA"));
        assert_eq!(
            uri.attributes().manufacturer.as_deref(),
            Some("SoftHSM project")
        );
        assert_eq!(uri.attributes().serial.as_deref(), Some("abc123"));
        assert_eq!(uri.attributes().model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(uri.attributes().slot_id, Some(42));
        assert_eq!(uri.attributes().object.as_deref(), Some("intermediate"));
        assert_eq!(uri.attributes().object_type, Some(ObjectType::Private));
        assert_eq!(uri.attributes().id.as_deref(), Some(&[1u8, 2, 0xff][..]));
        assert_eq!(
            uri.attributes().module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(
            uri.attributes().pin_source.as_deref(),
            Some(std::path::Path::new("/etc/ca/pin"))
        );
        // Multi-byte UTF-8, encoded, decodes; an `id` may be any bytes.
        let uri = Pkcs11Uri::parse("pkcs11:object=cl%C3%A9;id=%00").unwrap();
        assert_eq!(uri.attributes().object.as_deref(), Some("clé"));
        assert_eq!(uri.attributes().id.as_deref(), Some(&[0u8][..]));
        // Letters of the unreserved set and sub-delims pass as they are.
        let uri = Pkcs11Uri::parse("pkcs11:object=a-b_c.d~e:f@g").unwrap();
        assert_eq!(uri.attributes().object.as_deref(), Some("a-b_c.d~e:f@g"));
        // A bare `pkcs11:` names nothing but parses; type may be missing.
        assert_eq!(Pkcs11Uri::parse("pkcs11:").unwrap(), Pkcs11Uri::default());
    }

    #[test]
    fn pin_source_takes_file_uris_and_plain_paths_only() {
        for (value, path) in [
            ("file:/run/pin", "/run/pin"),
            ("file:///run/pin", "/run/pin"),
            ("file://localhost/run/pin", "/run/pin"),
            ("/run/pin", "/run/pin"),
            ("relative/pin", "relative/pin"),
            ("%2Frun%2Fpin", "/run/pin"),
        ] {
            let uri = Pkcs11Uri::parse(&format!("pkcs11:object=k?pin-source={value}")).unwrap();
            assert_eq!(
                uri.attributes().pin_source,
                Some(PathBuf::from(path)),
                "{value}"
            );
        }
        assert!(err("pkcs11:object=k?pin-source=file://other/pin").contains("another host"));
        assert!(err("pkcs11:object=k?pin-source=env:PIN").contains("\"env:\" is not supported"));
        assert!(err("pkcs11:object=k?pin-source=%7C/bin/getpin").contains("commands"));
        assert!(err("pkcs11:object=k?pin-source=file:").contains("names no file"));
    }

    #[test]
    fn a_pin_in_the_uri_is_refused_and_never_echoed() {
        let e = err("pkcs11:token=ca;object=k?pin-value=123456");
        assert!(e.contains("pin-value is refused"), "{e}");
        assert!(!e.contains("123456"), "{e}");
        // Also in the path, and in capitals.
        let e = err("pkcs11:token=ca;PIN-VALUE=654321;object=k");
        assert!(e.contains("pin-value is refused"), "{e}");
        assert!(!e.contains("654321"), "{e}");
    }

    #[test]
    fn bad_uris_are_refused_with_what_is_wrong() {
        assert!(err("pkcs12:token=a").contains("does not start with"));
        let e = err("pkcs11:token=a;color=blue;x-vendor=1");
        assert!(
            e.contains("unknown attributes") && e.contains("\"color\""),
            "{e}"
        );
        assert!(e.contains("\"x-vendor\""), "{e}");
        assert!(err("pkcs11:object=a;object=b").contains("appears twice"));
        assert!(err("pkcs11:object=a%2").contains("bad percent-encoding"));
        assert!(err("pkcs11:object=a%zz").contains("bad percent-encoding"));
        assert!(err("pkcs11:object=%ff").contains("not UTF-8"));
        assert!(err("pkcs11:object").contains("no \"=\""));
        assert!(err("pkcs11:object=").contains("is empty"));
        assert!(err("pkcs11:slot-id=one").contains("not a decimal number"));
        assert!(err("pkcs11:type=cert;object=a").contains("does not name a private key"));
        assert!(err("pkcs11:object=a;module-path=/x.so").contains("belongs in the query"));
        assert!(err("pkcs11:object=a?token=b").contains("belongs in the path"));
        assert!(err("pkcs11:object=a?module-name=softhsm2").contains("module-name"));
        assert!(err("pkcs11:object=a#frag").contains("fragment"));
    }

    #[test]
    fn display_round_trips_and_encodes() {
        let text = "pkcs11:token=My%20CA;serial=0a1b;slot-id=7;object=int%3Bermediate;\
                    type=private;id=%01%AB?module-path=/usr/lib/softhsm/libsofthsm2.so&\
                    pin-source=file:/etc/ca/pin";
        let uri = Pkcs11Uri::parse(text).unwrap();
        let shown = uri.to_string();
        assert_eq!(shown, text);
        assert_eq!(Pkcs11Uri::parse(&shown).unwrap(), uri);
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k").unwrap().to_string(),
            "pkcs11:object=k"
        );
        assert_eq!(
            uri.describe_object(),
            "label \"int;ermediate\" and id %01%AB"
        );
    }
}

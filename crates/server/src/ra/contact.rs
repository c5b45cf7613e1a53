//! Account contact checks (RFC 8555 §7.3): only `mailto:` with one plain address.

use super::Error;
use certwright_proto::identifier::normalize_dns_name;

/// Most contacts one account may list.
pub const MAX_CONTACTS: usize = 10;

/// Checks a contact list; returns the contacts as stored.
pub fn validate_contacts(contacts: &[String]) -> Result<Vec<String>, Error> {
    if contacts.len() > MAX_CONTACTS {
        return Err(Error::InvalidContact(format!(
            "at most {MAX_CONTACTS} contacts are allowed, got {}",
            contacts.len()
        )));
    }
    contacts.iter().map(|c| validate_contact(c)).collect()
}

fn validate_contact(contact: &str) -> Result<String, Error> {
    let Some(address) = contact.strip_prefix("mailto:") else {
        let scheme = contact.split(':').next().unwrap_or_default();
        return Err(Error::UnsupportedContact(format!(
            "contact {contact:?} uses scheme {scheme:?}; only mailto: is supported"
        )));
    };
    let invalid = |why: &str| Error::InvalidContact(format!("contact {contact:?} {why}"));
    if address.contains(['?', ',', ' ', '<', '>', '%']) {
        return Err(invalid(
            "must hold exactly one plain address, without headers or encoding",
        ));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(invalid("is not an email address"));
    };
    if local.is_empty() || local.len() > 64 || !local.is_ascii() || local.contains('@') {
        return Err(invalid("has an invalid local part"));
    }
    normalize_dns_name(domain).map_err(|_| invalid("has an invalid domain"))?;
    if domain.starts_with("*.") {
        return Err(invalid("has an invalid domain"));
    }
    Ok(contact.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which refusal: "unsupported" (scheme) or "invalid" (address).
    fn kind(result: Result<Vec<String>, Error>) -> &'static str {
        match result.unwrap_err() {
            Error::UnsupportedContact(_) => "unsupported",
            Error::InvalidContact(_) => "invalid",
            other => panic!("not a contact refusal: {other:?}"),
        }
    }

    #[test]
    fn mailto_only_and_well_formed() {
        assert!(validate_contacts(&["mailto:ops@example.com".into()]).is_ok());
        let one = |c: &str| kind(validate_contacts(&[c.to_owned()]));
        assert_eq!(one("tel:+1555"), "unsupported");
        assert_eq!(one("mailto:not-an-address"), "invalid");
        assert_eq!(one("mailto:a@b@example.com"), "invalid");
        assert_eq!(one("mailto:a@example.com,b@example.com"), "invalid");
        assert_eq!(one("mailto:a@example.com?subject=x"), "invalid");
        assert_eq!(one("mailto:a@localhost"), "invalid");
        let many: Vec<String> = (0..11)
            .map(|i| format!("mailto:a{i}@example.com"))
            .collect();
        assert_eq!(kind(validate_contacts(&many)), "invalid");
    }
}

//! Account contact checks (RFC 8555 §7.3): only `mailto:` with one plain address.

use certwright_proto::identifier::normalize_dns_name;
use certwright_proto::Problem;

/// Most contacts one account may list.
pub const MAX_CONTACTS: usize = 10;

/// Checks a contact list; returns the contacts as stored.
pub fn validate_contacts(contacts: &[String]) -> Result<Vec<String>, Problem> {
    if contacts.len() > MAX_CONTACTS {
        return Err(Problem::invalid_contact(format!(
            "at most {MAX_CONTACTS} contacts are allowed, got {}",
            contacts.len()
        )));
    }
    contacts.iter().map(|c| validate_contact(c)).collect()
}

fn validate_contact(contact: &str) -> Result<String, Problem> {
    let Some(address) = contact.strip_prefix("mailto:") else {
        let scheme = contact.split(':').next().unwrap_or_default();
        return Err(Problem::unsupported_contact(format!(
            "contact {contact:?} uses scheme {scheme:?}; only mailto: is supported"
        )));
    };
    let invalid = |why: &str| Problem::invalid_contact(format!("contact {contact:?} {why}"));
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
    use certwright_proto::ProblemType;

    #[test]
    fn mailto_only_and_well_formed() {
        assert!(validate_contacts(&["mailto:ops@example.com".into()]).is_ok());
        let kind = |c: &str| validate_contacts(&[c.to_owned()]).unwrap_err().kind;
        assert_eq!(kind("tel:+1555"), ProblemType::UnsupportedContact);
        assert_eq!(kind("mailto:not-an-address"), ProblemType::InvalidContact);
        assert_eq!(kind("mailto:a@b@example.com"), ProblemType::InvalidContact);
        assert_eq!(
            kind("mailto:a@example.com,b@example.com"),
            ProblemType::InvalidContact
        );
        assert_eq!(
            kind("mailto:a@example.com?subject=x"),
            ProblemType::InvalidContact
        );
        assert_eq!(kind("mailto:a@localhost"), ProblemType::InvalidContact);
        let many: Vec<String> = (0..11)
            .map(|i| format!("mailto:a{i}@example.com"))
            .collect();
        assert_eq!(
            validate_contacts(&many).unwrap_err().kind,
            ProblemType::InvalidContact
        );
    }
}

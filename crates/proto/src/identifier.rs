//! Identifier syntax: DNS names (lower-cased, IDNs as A-labels), wildcards and IP addresses
//! (RFC 8738, canonical text form). Pure functions; policy lives in the server.

use std::net::IpAddr;

use crate::types::{Identifier, IdentifierType};

/// An identifier after syntax checks and normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedIdentifier {
    /// The identifier as the order and certificate carry it (e.g. `*.example.com`).
    pub identifier: Identifier,
    /// For wildcards, the base name the authorization is for (`example.com`).
    pub wildcard: bool,
}

impl NormalizedIdentifier {
    /// The identifier an authorization covers: the base name for a wildcard.
    pub fn authorization_identifier(&self) -> Identifier {
        match self.identifier.value.strip_prefix("*.") {
            Some(base) if self.wildcard => Identifier::dns(base),
            _ => self.identifier.clone(),
        }
    }
}

/// Why an identifier's syntax was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The name, and what is wrong with it.
    #[error("{0:?} is not a valid DNS name: {1}")]
    BadDnsName(String, &'static str),
    /// The value is not an IPv4 or IPv6 address.
    #[error("{0:?} is not a valid IP address")]
    BadIp(String),
}

/// Normalizes a DNS name: lower case, IDN U-labels converted to A-labels, LDH syntax,
/// at least two labels, at most 253 octets; a leading `*.` marks a wildcard.
pub fn normalize_dns_name(raw: &str) -> Result<NormalizedIdentifier, IdentifierError> {
    let bad = |why| IdentifierError::BadDnsName(raw.to_owned(), why);
    let (wildcard, rest) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if rest.is_empty() {
        return Err(bad("empty name"));
    }
    if rest.ends_with('.') {
        return Err(bad("a trailing dot is not allowed"));
    }
    if rest.contains('*') {
        return Err(bad(
            "a wildcard is only allowed as the whole leftmost label",
        ));
    }
    let ascii = if rest.is_ascii() {
        rest.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(rest).map_err(|_| bad("not a valid internationalized name"))?
    };
    if ascii.len() > 253 {
        return Err(bad("longer than 253 octets"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(
            "must be a fully qualified name with at least two labels",
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 octets"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits and hyphens are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with a hyphen"));
        }
        if label.starts_with("xn--") && idna::domain_to_unicode(label).1.is_err() {
            return Err(bad("an xn-- label is not valid punycode"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "the top-level label is all digits (an IP address is an ip identifier)",
        ));
    }
    let value = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    };
    Ok(NormalizedIdentifier {
        identifier: Identifier::dns(value),
        wildcard,
    })
}

/// Parses an IP identifier into its canonical text form (RFC 5952 for IPv6).
pub fn normalize_ip(raw: &str) -> Result<NormalizedIdentifier, IdentifierError> {
    let ip: IpAddr = raw
        .parse()
        .map_err(|_| IdentifierError::BadIp(raw.to_owned()))?;
    Ok(NormalizedIdentifier {
        identifier: Identifier::ip(ip.to_string()),
        wildcard: false,
    })
}

/// Normalizes any identifier according to its type.
pub fn normalize(id: &Identifier) -> Result<NormalizedIdentifier, IdentifierError> {
    match id.kind {
        IdentifierType::Dns => normalize_dns_name(&id.value),
        IdentifierType::Ip => normalize_ip(&id.value),
    }
}

/// The reverse-DNS name of an address, the TLS SNI of tls-alpn-01 for an IP identifier
/// (RFC 8738 §6): `4.3.2.1.in-addr.arpa` for 1.2.3.4; 32 reversed nibbles under `ip6.arpa` for IPv6.
pub fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(33);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".to_owned());
            labels.join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc_8738() {
        assert_eq!(
            reverse_dns_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_dns_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34);
    }

    #[test]
    fn dns_names_are_normalized() {
        assert_eq!(
            normalize_dns_name("WWW.Example.COM")
                .unwrap()
                .identifier
                .value,
            "www.example.com"
        );
        assert_eq!(
            normalize_dns_name("bücher.example")
                .unwrap()
                .identifier
                .value,
            "xn--bcher-kva.example"
        );
        let w = normalize_dns_name("*.Example.com").unwrap();
        assert!(w.wildcard);
        assert_eq!(w.authorization_identifier(), Identifier::dns("example.com"));
    }

    #[test]
    fn bad_dns_names_are_refused() {
        for bad in [
            "",
            "example",
            "example.com.",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "*.*.example.com",
            "w*.example.com",
            "1.2.3.4",
            "xn--zz.example",
            &format!("{}.example", "a".repeat(64)),
        ] {
            assert!(normalize_dns_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ips_are_canonical() {
        assert_eq!(
            normalize_ip("2001:DB8:0:0::1").unwrap().identifier.value,
            "2001:db8::1"
        );
        assert_eq!(
            normalize_ip("192.0.2.1").unwrap().identifier.value,
            "192.0.2.1"
        );
        assert!(normalize_ip("192.0.2.256").is_err());
    }
}

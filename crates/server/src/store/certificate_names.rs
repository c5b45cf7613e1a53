//! The inventory's name index (`certificate_names`, migration 0016): each certificate's
//! identifiers in a searchable form, written in the transaction that stores the
//! certificate. A DNS name is kept lower-case with its labels reversed
//! (`www.example.com` → `com.example.www`), so that every name under a suffix is one key
//! range; an IP address as written. The key is (kind, name, not_after, serial): one name's
//! certificates come in the inventory's keyset order.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::LazyLock;

use certwright_proto::types::{Identifier, IdentifierType};

use super::engine::tx::{Param, Tx};
use super::Result;

/// Certificates with up to this many identifiers get a prepared `INSERT` (the query-plan
/// test checks these); more are formatted on the spot, in the same shape.
const NAME_ROWS: usize = 4;

/// The `INSERT` of a certificate's index rows, for 1 to `NAME_ROWS` of them.
pub(super) static INSERT_NAMES: LazyLock<Vec<String>> =
    LazyLock::new(|| (1..=NAME_ROWS).map(format_insert).collect());

/// The `INSERT` of `count` (at least one) rows: `$1` the serial, `$2` not_after, then
/// kind and name of each.
fn format_insert(count: usize) -> String {
    insert_sql_after(count, 2, "$2", "$1")
}

/// The `INSERT` of `count` (at least one) rows whose kind and name are the parameters
/// after `$offset` (two each), with `not_after` and `serial` the given parameters: a
/// statement of its own.
pub(super) fn insert_sql_after(
    count: usize,
    offset: usize,
    not_after: &str,
    serial: &str,
) -> String {
    let rows: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "(${}, ${}, {not_after}, {serial})",
                offset + 2 * i + 1,
                offset + 2 * i + 2
            )
        })
        .collect();
    format!(
        "INSERT INTO certificate_names (kind, name, not_after, serial) VALUES {}",
        rows.join(", ")
    )
}

/// [`insert_sql_after`]'s rows inserted once per row of `from` (a CTE of one row or
/// none): for `orders::complete_sql`, whose rows go in only if the order changes.
pub(super) fn insert_select_sql_after(
    count: usize,
    offset: usize,
    not_after: &str,
    serial: &str,
    from: &str,
) -> String {
    let rows: Vec<String> = (0..count)
        .map(|i| format!("(${}, ${})", offset + 2 * i + 1, offset + 2 * i + 2))
        .collect();
    format!(
        "INSERT INTO certificate_names (kind, name, not_after, serial)
         SELECT v.kind, v.name, {not_after}, {serial} FROM {from}, (VALUES {}) AS v (kind, name)",
        rows.join(", ")
    )
}

/// The distinct index keys of a certificate's identifiers, in key order.
pub(super) fn keys(names: &[Identifier]) -> BTreeSet<(&'static str, String)> {
    names.iter().map(key).collect()
}

fn insert_sql(count: usize) -> Cow<'static, str> {
    match INSERT_NAMES.get(count - 1) {
        Some(sql) => Cow::Borrowed(sql),
        None => Cow::Owned(format_insert(count)),
    }
}

/// `name` (a DNS name, lower-cased) with its labels reversed: `com.example.www`.
pub(crate) fn reversed(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let mut labels: Vec<&str> = lower.split('.').collect();
    labels.reverse();
    labels.join(".")
}

/// The index key of an identifier: its kind and searchable name.
pub(crate) fn key(id: &Identifier) -> (&'static str, String) {
    match id.kind {
        IdentifierType::Dns => ("dns", reversed(&id.value)),
        IdentifierType::Ip => ("ip", id.value.to_ascii_lowercase()),
    }
}

/// The index key of a name as the inventory shows it (a value without its kind): an
/// address when it parses as one, else a DNS name.
pub(crate) fn key_of_value(value: &str) -> (&'static str, String) {
    match value.parse::<std::net::IpAddr>() {
        Ok(_) => ("ip", value.to_ascii_lowercase()),
        Err(_) => ("dns", reversed(value)),
    }
}

/// What a name search looks up in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameLookup {
    /// One key: (kind, name).
    Exact(&'static str, String),
    /// Every DNS name in [from, to): the names under a suffix.
    Under { from: String, to: String },
}

impl NameLookup {
    /// The lookup for a search text: an IP address; `.example.com` for every name under
    /// example.com (not example.com itself, nor `anexample.com`); else one DNS name,
    /// `*.example.com` being the wildcard name itself.
    pub(crate) fn parse(text: &str) -> Self {
        let text = text.trim();
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Self::Exact("ip", ip.to_string());
        }
        match text.strip_prefix('.') {
            Some(suffix) => {
                // `com.example.` … `com.example/`: '/' sorts right after '.'.
                let base = reversed(suffix);
                Self::Under {
                    from: format!("{base}."),
                    to: format!("{base}/"),
                }
            }
            None => Self::Exact("dns", reversed(text)),
        }
    }
}

/// Writes the index rows of a certificate (inside its transaction): one per distinct
/// identifier, in one statement.
pub(super) async fn insert_in(
    tx: &mut dyn Tx,
    serial: &str,
    not_after: i64,
    names: &[Identifier],
) -> Result<()> {
    let keys = keys(names);
    if keys.is_empty() {
        return Ok(());
    }
    let mut args = vec![Param::from(serial), Param::from(not_after)];
    for (kind, name) in &keys {
        args.push(Param::from(*kind));
        args.push(Param::from(name.as_str()));
    }
    tx.execute(&insert_sql(keys.len()), &args).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_by_reversed_labels() {
        assert_eq!(reversed("WWW.Example.com"), "com.example.www");
        assert_eq!(reversed("*.example.com"), "com.example.*");
        assert_eq!(reversed("localhost"), "localhost");
        assert_eq!(
            key(&Identifier::ip("2001:DB8::1")),
            ("ip", "2001:db8::1".into())
        );
    }

    #[test]
    fn searches_become_one_key_or_one_range() {
        assert_eq!(
            NameLookup::parse("www.example.com"),
            NameLookup::Exact("dns", "com.example.www".into())
        );
        assert_eq!(
            NameLookup::parse("*.example.com"),
            NameLookup::Exact("dns", "com.example.*".into())
        );
        assert_eq!(
            NameLookup::parse(".example.com"),
            NameLookup::Under {
                from: "com.example.".into(),
                to: "com.example/".into()
            }
        );
        assert_eq!(
            NameLookup::parse("10.0.0.1"),
            NameLookup::Exact("ip", "10.0.0.1".into())
        );
        assert_eq!(
            NameLookup::parse("2001:DB8:0::1"),
            NameLookup::Exact("ip", "2001:db8::1".into())
        );
        let lookup = |n: &str| NameLookup::parse(n);
        // The range holds exactly the names under the suffix.
        let NameLookup::Under { from, to } = lookup(".example.com") else {
            unreachable!()
        };
        let inside = |name: &str| {
            let k = reversed(name);
            k >= from && k < to
        };
        assert!(inside("www.example.com") && inside("*.example.com") && inside("a.b.example.com"));
        assert!(!inside("example.com") && !inside("anexample.com") && !inside("example.com.evil"));
    }

    #[test]
    fn the_insert_has_one_row_per_name() {
        assert_eq!(
            format_insert(2),
            "INSERT INTO certificate_names (kind, name, not_after, serial) VALUES ($3, $4, $2, $1), ($5, $6, $2, $1)"
        );
        assert!(matches!(insert_sql(9), Cow::Owned(_)));
    }
}

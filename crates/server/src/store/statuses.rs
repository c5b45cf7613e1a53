//! The status literals of the store's SQL, spliced in from the RA's transition table
//! (`status::transitions`) and the proto status enums, so that a guard cannot drift
//! from the state machine it enforces.
//!
//! Statuses stay literals in the SQL text (not parameters): the partial indexes on
//! `status = 'processing'` and `status = 'pending'` only serve statements that name the
//! status. Each such statement is built once, on first use ([`status_sql!`]), and is a
//! `&'static str` from then on: the hot path neither formats nor allocates SQL.

use crate::status::transitions::{Guard, StoredStatus, Transition};

/// `'pending'`: a status as an SQL string literal.
pub(super) fn quoted(status: impl StoredStatus) -> String {
    format!("'{}'", status.name())
}

/// `column = 'a'`, or `column IN ('a', 'b')`: `column` holds one of `statuses`.
pub(super) fn is_in<S: StoredStatus>(column: &str, statuses: &[S]) -> String {
    match statuses {
        [one] => format!("{column} = {}", quoted(*one)),
        many => {
            let list: Vec<String> = many.iter().map(|s| quoted(*s)).collect();
            format!("{column} IN ({})", list.join(", "))
        }
    }
}

/// The condition that `column` is in the statuses `transition` may start from.
///
/// # Panics
/// If the transition is not guarded (a statement for it has no status condition).
pub(super) fn guard<S: StoredStatus>(column: &str, transition: &Transition<S>) -> String {
    match transition.from {
        Guard::In(statuses) => is_in(column, statuses),
        Guard::Any => panic!("{transition:?} is not guarded"),
    }
}

/// `status = 'x'`: the assignment of `transition`.
pub(super) fn set<S: StoredStatus>(transition: &Transition<S>) -> String {
    format!("status = {}", quoted(transition.to))
}

/// Statements with status literals spliced in, each built once on first use:
///
/// ```text
/// status_sql! {
///     /// What it does.
///     static NAME = ("… {a} …", a = set(&TRANSITION));
/// }
/// ```
///
/// The arguments in parentheses are `format!`'s. Each use also defines
/// `status_statements()`, listing the file's statements for the store's SQL tests.
macro_rules! status_sql {
    ($($(#[$doc:meta])* static $name:ident = ($($format:tt)+);)+) => {
        $(
            $(#[$doc])*
            static $name: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| format!($($format)+));
        )+

        /// This file's statements with spliced statuses, by name.
        #[cfg(test)]
        pub(super) fn status_statements() -> Vec<(&'static str, &'static str)> {
            vec![$((stringify!($name), $name.as_str())),+]
        }
    };
}
pub(super) use status_sql;

#[cfg(test)]
mod tests {
    use certwright_proto::types::{
        AccountStatus, AuthorizationStatus, ChallengeStatus, OrderStatus,
    };

    use super::super::query_plans::{built_statements, SOURCES};
    use crate::status::transitions::*;

    /// Whether `word` is a status of some resource.
    fn is_status(word: &str) -> bool {
        AccountStatus::parse(word).is_some()
            || OrderStatus::parse(word).is_some()
            || AuthorizationStatus::parse(word).is_some()
            || ChallengeStatus::parse(word).is_some()
    }

    /// The contents of the `'…'` literals in `sql`.
    fn quoted_literals(sql: &str) -> Vec<&str> {
        sql.split('\'').skip(1).step_by(2).collect()
    }

    /// The statuses `sql` compares `column` with (`column = 'a'`, `column IN ('a', 'b')`),
    /// other than where it assigns it; `None` if it does not.
    fn condition<'a>(sql: &'a str, column: &str) -> Option<Vec<&'a str>> {
        let mut found = None;
        for (at, _) in sql.match_indices(column) {
            if sql[..at].ends_with("SET ") {
                continue;
            }
            let rest = &sql[at + column.len()..];
            let list = if let Some(one) = rest.strip_prefix(" = '") {
                &one[..one.find('\'').unwrap()]
            } else if let Some(many) = rest.strip_prefix(" IN (") {
                &many[..many.find(')').unwrap()]
            } else {
                continue;
            };
            let statuses = list.split(", ").map(|s| s.trim_matches('\'')).collect();
            assert!(found.is_none(), "two conditions on {column} in {sql}");
            found = Some(statuses);
        }
        found
    }

    /// The status `sql` assigns (`SET status = 'x'`), if a literal.
    fn assigned(sql: &str) -> Option<&str> {
        let rest = sql.split_once("SET status = '")?.1;
        Some(&rest[..rest.find('\'').unwrap()])
    }

    fn names<S: StoredStatus>(statuses: &[S]) -> Vec<&'static str> {
        statuses.iter().map(|s| s.name()).collect()
    }

    /// The built statement `name` of `file`, whitespace collapsed.
    fn statement(file: &str, name: &str) -> String {
        let all = built_statements();
        let (_, _, sql) = all
            .iter()
            .find(|(f, n, _)| *f == file && *n == name)
            .unwrap_or_else(|| panic!("no statement {name} in {file}"));
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// `file`'s statement `name` makes `transition`: it sets `to` (or a parameter that
    /// the caller takes from the table) where `status` is in `from`.
    fn makes<S: StoredStatus>(file: &str, name: &str, transition: &Transition<S>) {
        let sql = statement(file, name);
        match assigned(&sql) {
            Some(to) => assert_eq!(to, transition.to.name(), "{sql}"),
            None => assert!(
                sql.contains("SET status = $1") || sql.contains("THEN $1 ELSE status"),
                "{sql} sets no status"
            ),
        }
        let want = transition.from_statuses().map(names);
        assert_eq!(condition(&sql, "status"), want, "{sql}");
    }

    #[test]
    fn no_status_is_written_into_the_sql_by_hand() {
        for (file, source) in SOURCES {
            for line in source.lines() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for word in quoted_literals(line) {
                    assert!(
                        !is_status(word),
                        "{file}: '{word}' is written by hand, not spliced from the \
                         transition table (statuses.rs): {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_spliced_literal_is_a_status() {
        let all = built_statements();
        assert!(all.len() > 20, "only {} statements", all.len());
        for (file, name, sql) in all {
            let sql = super::super::audit::without_inline_entry(sql);
            let literals = quoted_literals(&sql);
            assert!(!literals.is_empty(), "{file} {name}: no status in {sql}");
            for word in literals {
                assert!(is_status(word), "{file} {name}: '{word}' is no status");
            }
        }
    }

    #[test]
    fn each_guarded_update_matches_the_transition_table() {
        makes("accounts.rs", "DEACTIVATE", &ACCOUNT_DEACTIVATE);
        makes(
            "accounts.rs",
            "DEACTIVATE_AUTHORIZATIONS",
            &AUTHORIZATION_DEACTIVATE,
        );
        makes("authorizations.rs", "DEACTIVATE", &AUTHORIZATION_DEACTIVATE);
        makes("authorizations.rs", "START", &CHALLENGE_START);
        let start = statement("authorizations.rs", "START");
        let authz = condition(&start, "challenges.authorization_id)");
        assert_eq!(authz, AUTHORIZATION_VALIDATE.from_statuses().map(names));
        for outcome in [CHALLENGE_SUCCEED, CHALLENGE_FAIL] {
            makes("authorizations.rs", "FINISH_CHALLENGE", &outcome);
        }
        for outcome in [AUTHORIZATION_VALIDATE, AUTHORIZATION_INVALIDATE] {
            makes("authorizations.rs", "FINISH_AUTHORIZATION", &outcome);
        }
        makes("orders.rs", "BEGIN_FINALIZE", &ORDER_BEGIN_FINALIZE);
        makes("orders.rs", "COMPLETE", &ORDER_COMPLETE);
        makes("orders.rs", "FAIL", &ORDER_FAIL);
    }

    #[test]
    fn new_rows_and_leases_have_the_statuses_of_the_table() {
        let created = [
            ("accounts.rs", "INSERT_ACCOUNT", ACCOUNT_CREATED.name()),
            ("orders.rs", "INSERT_ORDER", ORDER_CREATED.name()),
            (
                "orders.rs",
                "INSERT_AUTHORIZATION",
                AUTHORIZATION_CREATED.name(),
            ),
            ("orders.rs", "INSERT_CHALLENGES", CHALLENGE_CREATED.name()),
        ];
        for (file, name, status) in created {
            let sql = statement(file, name);
            assert!(sql.starts_with("INSERT INTO"), "{sql}");
            let literals = quoted_literals(&sql);
            assert!(literals.iter().all(|l| *l == status), "{sql}");
            assert!(!literals.is_empty(), "{sql}");
        }
        let leased = [
            ("leases.rs", "STALE_CHALLENGES", CHALLENGE_START.to.name()),
            ("leases.rs", "CLAIM_CHALLENGE", CHALLENGE_START.to.name()),
            ("leases.rs", "STALE_ORDERS", ORDER_BEGIN_FINALIZE.to.name()),
            ("leases.rs", "CLAIM_ORDER", ORDER_BEGIN_FINALIZE.to.name()),
        ];
        for (file, name, status) in leased {
            let sql = statement(file, name);
            assert_eq!(condition(&sql, "status"), Some(vec![status]), "{sql}");
        }
    }
}

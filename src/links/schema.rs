//! Whether the database's schema is the one this binary was built for: the migrations applied
//! (refinery's history) against the ones embedded in the binary, checked at start-up and by
//! every readiness probe.
//!
//! - **Current**: every embedded migration is applied, and nothing else.
//! - **Behind**: an embedded migration is not applied yet (a binary rolled out before its
//!   migration ran): not ready, creates refused with 503 `schema-mismatch`; redirects of what
//!   the tiers hold go on.
//! - **Ahead**: migrations this binary does not know are applied (a binary rolled back after a
//!   newer one migrated). Ready only when every one of them is *expand-only*: its file name
//!   ends in `_expand` (`V3__link_tags_expand.sql`): it only adds (a table, a nullable column, an
//!   index), so an older binary's statements still work. Redirect SQL never names a column added
//!   after it. Anything else is treated as Behind is.
//! - **Unknown**: not read yet, or the history could not be read: creates are not refused for
//!   it (they fail on their own if the schema is wrong).

use std::sync::atomic::{AtomicU8, Ordering};

/// The file-name suffix (before `.sql`) that marks a migration expand-only.
pub const EXPAND_ONLY_SUFFIX: &str = "_expand";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    Unknown,
    Current,
    Behind,
    /// Newer, every unknown migration expand-only: usable.
    AheadExpandOnly,
    /// Newer, with a migration that may have changed or removed what this binary uses.
    Ahead,
}

impl SchemaState {
    pub fn label(self) -> &'static str {
        match self {
            SchemaState::Unknown => "unknown",
            SchemaState::Current => "current",
            SchemaState::Behind => "behind",
            SchemaState::AheadExpandOnly => "ahead_expand_only",
            SchemaState::Ahead => "ahead",
        }
    }

    /// Creates (and readiness) are refused in this state.
    pub fn refuses(self) -> bool {
        matches!(self, SchemaState::Behind | SchemaState::Ahead)
    }

    fn from_u8(raw: u8) -> Self {
        match raw {
            1 => SchemaState::Current,
            2 => SchemaState::Behind,
            3 => SchemaState::AheadExpandOnly,
            4 => SchemaState::Ahead,
            _ => SchemaState::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            SchemaState::Unknown => 0,
            SchemaState::Current => 1,
            SchemaState::Behind => 2,
            SchemaState::AheadExpandOnly => 3,
            SchemaState::Ahead => 4,
        }
    }
}

/// Compares the migrations `applied` (version, name) with the ones `embedded` in the binary.
pub fn compare(embedded: &[(i64, String)], applied: &[(i64, String)]) -> SchemaState {
    let missing = embedded
        .iter()
        .any(|(version, _)| !applied.iter().any(|(applied, _)| applied == version));
    if missing {
        return SchemaState::Behind;
    }
    let unknown: Vec<&String> = applied
        .iter()
        .filter(|(version, _)| !embedded.iter().any(|(known, _)| known == version))
        .map(|(_, name)| name)
        .collect();
    if unknown.is_empty() {
        SchemaState::Current
    } else if unknown
        .iter()
        .all(|name| name.ends_with(EXPAND_ONLY_SUFFIX))
    {
        SchemaState::AheadExpandOnly
    } else {
        SchemaState::Ahead
    }
}

/// The last state found, shared by the prober (which checks) and the use cases (which read).
#[derive(Debug)]
pub struct SchemaCheck {
    embedded: Vec<(i64, String)>,
    state: AtomicU8,
}

impl SchemaCheck {
    /// For a binary built with the migrations `embedded`; Unknown until the first check.
    pub fn new(embedded: Vec<(i64, String)>) -> Self {
        SchemaCheck {
            embedded,
            state: AtomicU8::new(SchemaState::Unknown.to_u8()),
        }
    }

    pub fn state(&self) -> SchemaState {
        SchemaState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Compares the migrations `applied` with the embedded ones and keeps the result; logs
    /// once when the state changes.
    pub fn check(&self, applied: &[(i64, String)]) -> SchemaState {
        let now = compare(&self.embedded, applied);
        let was = SchemaState::from_u8(self.state.swap(now.to_u8(), Ordering::Relaxed));
        if now != was {
            let newest = applied
                .last()
                .map(|(version, name)| format!("V{version}__{name}"));
            match now {
                SchemaState::Behind => tracing::error!(
                    schema = now.label(),
                    ?newest,
                    "the database schema is older than this binary: not ready, creates refused until `shortener migrate` runs"
                ),
                SchemaState::Ahead => tracing::error!(
                    schema = now.label(),
                    ?newest,
                    "the database schema is newer than this binary and not expand-only: not ready, creates refused"
                ),
                SchemaState::AheadExpandOnly => tracing::warn!(
                    schema = now.label(),
                    ?newest,
                    "the database schema is newer than this binary, expand-only: served as usual"
                ),
                SchemaState::Current if was != SchemaState::Unknown => tracing::info!(
                    schema = now.label(),
                    "the database schema matches this binary again"
                ),
                _ => {}
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(i64, &str)]) -> Vec<(i64, String)> {
        items.iter().map(|(v, n)| (*v, (*n).to_owned())).collect()
    }

    #[test]
    fn behind_current_and_ahead() {
        let embedded = list(&[(1, "initial"), (2, "link_management")]);
        assert_eq!(
            compare(&embedded, &list(&[(1, "initial")])),
            SchemaState::Behind
        );
        assert_eq!(compare(&embedded, &[]), SchemaState::Behind);
        assert_eq!(compare(&embedded, &embedded), SchemaState::Current);
        let expand = list(&[(1, "initial"), (2, "link_management"), (3, "tags_expand")]);
        assert_eq!(compare(&embedded, &expand), SchemaState::AheadExpandOnly);
        let contract = list(&[
            (1, "initial"),
            (2, "link_management"),
            (3, "tags_expand"),
            (4, "drop_old_column"),
        ]);
        assert_eq!(compare(&embedded, &contract), SchemaState::Ahead);
        assert!(SchemaState::Behind.refuses() && SchemaState::Ahead.refuses());
        assert!(!SchemaState::AheadExpandOnly.refuses() && !SchemaState::Unknown.refuses());
    }
}

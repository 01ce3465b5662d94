//! Operator commands that change one link (`shortener disable` / `enable`), run from the
//! command line on a connection of their own.

use super::{PgTarget, StorageError};

/// Whether a link may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Served (clears `disabled_at`).
    Enabled,
    /// Answered 410 (sets `disabled_at` to now, unless it is already set).
    Disabled,
}

/// Sets the state of the link named `code`. Answers `false` when no link has that code.
pub async fn set_link_state(
    target: &PgTarget,
    code: &str,
    state: LinkState,
) -> Result<bool, StorageError> {
    let sql = match state {
        LinkState::Disabled => {
            "UPDATE links SET disabled_at = coalesce(disabled_at, now()) WHERE code = $1"
        }
        LinkState::Enabled => "UPDATE links SET disabled_at = NULL WHERE code = $1",
    };
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let updated = client.execute(sql, &[&code]).await?;
        Ok::<_, StorageError>(updated == 1)
    })
    .await
}

//! The management use cases of an API key's holder: listing its links, editing one, deleting
//! one. A `links` key manages the links it made; an `admin` key every link (anonymous ones
//! included). A link is named by its exact code: an alias that merely has the shape of another
//! link's generated code never reaches that link. Every change goes through the change feed,
//! so no tier of any instance keeps serving the old version.

use std::sync::Arc;

use thiserror::Error;

use super::changes::ChangeFeed;
use super::keys::KeyHolder;
use crate::clock::Clock;
use crate::domain::{Code, ExpiresAt, ExpiryError, KeyScope, TargetUrl, UrlError, UrlPolicy};
use crate::storage::{Audit, Changed, Db, LinkEdit, LinkRecord, ListedLink, StorageError};

/// Most links one page of a listing holds.
pub const MAX_PAGE: u16 = 1000;
/// Links in a page when the caller does not say.
pub const DEFAULT_PAGE: u16 = 100;

/// A link as its owner sees it: the row, and its clicks by people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedLink {
    pub link: LinkRecord,
    pub clicks: i64,
    /// The public base URL and the code.
    pub short_url: String,
}

impl ManagedLink {
    /// The link's version as its `ETag` (and the `etag` of its JSON).
    pub fn etag(&self) -> String {
        etag_of(self.link.version)
    }
}

/// The `ETag` of version `version` of a link.
pub fn etag_of(version: i64) -> String {
    format!("\"{version}\"")
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<ManagedLink>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Cursor>,
}

/// Where a page of a listing starts: below this link id (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

/// An `If-Match` precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// One of these entity tags.
    Tags(Vec<String>),
}

/// What an edit changes (`None`: left as it is); values read at the edge, checked here.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    pub target: Option<TargetUrl>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<ExpiresAt>>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Error)]
pub enum ManageError {
    #[error("no link has this code")]
    NotFound,
    #[error("this link was deleted")]
    Gone,
    #[error("this key may not change this link")]
    Forbidden,
    #[error("the link's ETag is not the one given in If-Match")]
    PreconditionFailed,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// The database could not take it now (503).
    #[error("the database is unavailable")]
    Unavailable(#[source] StorageError),
    #[error("the change failed")]
    Failed(#[source] StorageError),
}

impl From<StorageError> for ManageError {
    fn from(error: StorageError) -> Self {
        if error.is_transient() {
            ManageError::Unavailable(error)
        } else {
            ManageError::Failed(error)
        }
    }
}

/// Edits, deletes and lists links for their owners.
pub struct Manager {
    db: Db,
    feed: Arc<ChangeFeed>,
    url_policy: UrlPolicy,
    /// Without a trailing slash.
    public_base_url: String,
    clock: Clock,
}

impl Manager {
    pub fn new(
        db: Db,
        feed: Arc<ChangeFeed>,
        url_policy: UrlPolicy,
        public_base_url: String,
        clock: Clock,
    ) -> Self {
        Manager {
            db,
            feed,
            url_policy,
            public_base_url,
            clock,
        }
    }

    /// The holder's links (every link for an admin key), newest first, deleted ones left out.
    pub async fn list(
        &self,
        holder: KeyHolder,
        cursor: Option<Cursor>,
        limit: u16,
    ) -> Result<Page, ManageError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let owner = (holder.scope != KeyScope::Admin).then_some(holder.id);
        let mut rows = self
            .db
            .list_links(owner, cursor.map(|cursor| cursor.0), i64::from(limit) + 1)
            .await?;
        let next = (rows.len() > usize::from(limit)).then(|| {
            rows.truncate(usize::from(limit));
            Cursor(rows.last().map_or(0, |last| last.link.id))
        });
        Ok(Page {
            items: rows.into_iter().map(|row| self.managed(row)).collect(),
            next,
        })
    }

    /// Applies `edit` to the link named exactly `code`, if the holder may and `if_match` holds.
    pub async fn update(
        &self,
        holder: KeyHolder,
        code: &Code,
        edit: Edit,
        if_match: Option<IfMatch>,
    ) -> Result<ManagedLink, ManageError> {
        if let Some(target) = &edit.target {
            self.url_policy.admit(target)?;
        }
        let now = self.clock.now();
        let expires_at = match edit.expires_at {
            Some(Some(at)) => Some(Some(at.check_after(now)?.get())),
            Some(None) => Some(None),
            None => None,
        };
        let change = LinkEdit {
            target_url: edit.target.map(TargetUrl::into_string),
            expires_at,
            disabled: edit.disabled,
            delete: false,
        };
        let audit = Audit {
            actor: format!("key:{}", holder.id),
            action: "patch",
            detail: describe(&change),
        };
        let link = self
            .change(holder, code, &change, &audit, if_match.as_ref())
            .await?
            .ok_or(ManageError::Gone)?;
        let clicks = self.db.daily_clicks(link.id).await?.clicks();
        Ok(self.managed(ListedLink { link, clicks }))
    }

    /// Deletes the link named exactly `code` (again: nothing happens), if the holder may and
    /// `if_match` holds. From then on the code answers 410 and is never issued again.
    pub async fn delete(
        &self,
        holder: KeyHolder,
        code: &Code,
        if_match: Option<IfMatch>,
    ) -> Result<(), ManageError> {
        let change = LinkEdit {
            delete: true,
            ..LinkEdit::default()
        };
        let audit = Audit {
            actor: format!("key:{}", holder.id),
            action: "delete",
            detail: String::new(),
        };
        match self
            .change(holder, code, &change, &audit, if_match.as_ref())
            .await
        {
            Ok(_) | Err(ManageError::Gone) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads the link, checks who asks and the precondition, applies the change (read again
    /// when another changed it meanwhile), and sends it through the feed. `None` when the link
    /// was already deleted and `change` deletes it.
    async fn change(
        &self,
        holder: KeyHolder,
        code: &Code,
        change: &LinkEdit,
        audit: &Audit,
        if_match: Option<&IfMatch>,
    ) -> Result<Option<LinkRecord>, ManageError> {
        loop {
            let link = self
                .db
                .link_by_code(code.as_str())
                .await?
                .ok_or(ManageError::NotFound)?;
            let may = holder.scope == KeyScope::Admin || link.owner == Some(holder.id);
            if !may {
                return Err(ManageError::Forbidden);
            }
            if link.deleted_at.is_some() {
                return Err(ManageError::Gone);
            }
            if let Some(IfMatch::Tags(tags)) = if_match
                && !tags.iter().any(|tag| *tag == etag_of(link.version))
            {
                return Err(ManageError::PreconditionFailed);
            }
            match self
                .db
                .change_link(link.id, link.version, change, audit)
                .await?
            {
                Changed::Applied { link, seq } => {
                    self.feed.made(&link, seq).await;
                    return Ok(Some(link));
                }
                // Changed by another meanwhile: with a precondition that is a failed one;
                // without, read it again and apply the change to what it is now.
                Changed::Moved if if_match.is_some_and(|m| *m != IfMatch::Any) => {
                    return Err(ManageError::PreconditionFailed);
                }
                Changed::Moved => continue,
            }
        }
    }

    fn managed(&self, row: ListedLink) -> ManagedLink {
        ManagedLink {
            short_url: format!("{}/{}", self.public_base_url, row.link.code),
            link: row.link,
            clicks: row.clicks,
        }
    }
}

/// What changed, for the audit log (never the whole target: it may be long).
fn describe(change: &LinkEdit) -> String {
    let mut parts = Vec::new();
    if change.target_url.is_some() {
        parts.push("url");
    }
    if change.expires_at.is_some() {
        parts.push("expires_at");
    }
    match change.disabled {
        Some(true) => parts.push("disabled"),
        Some(false) => parts.push("enabled"),
        None => {}
    }
    parts.join(",")
}

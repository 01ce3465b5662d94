//! `Creator::create_batch`: up to [`MAX_BATCH_ITEMS`] creates answered together, each with its
//! own outcome, written in one transaction with the batch's Idempotency-Key.
//!
//! Each item is admitted on its own (a bad URL is that item's 400, not the batch's), reused
//! when it asks to be and its caller has a live link to the same URL, or given an id. The new
//! links are one unit: one transaction holds them and the answer stored under the batch's key,
//! so a retry of the batch finds all of it or none (never links without the answer that names
//! them, which a retry would duplicate). The unit goes through the group-commit writer's queue
//! and takes one of its slots, whole, whatever the writer's batch limit (ADR 0012).

use std::sync::Mutex;

use super::creator::{Creator, Reuse, record_of, reuse_digest};
use super::idempotency::replay_or_refuse;
use super::{Caller, CreateError, CreateFailure, Idempotency, ManagedLink, NewLink};
use crate::domain::{Alias, ExpiryError, UrlError};
use crate::storage::{BatchRow, LinkRecord, RowOutcome, UnitKey, UnitOutcome};

/// Most items in one batch.
pub const MAX_BATCH_ITEMS: usize = 1_000;

/// The status a batch's answer is stored with (its items carry their own).
const BATCH_ANSWERED: u16 = 200;

/// What became of one item.
#[derive(Debug)]
pub enum BatchItem {
    /// Made now (201).
    Created(ManagedLink),
    /// The caller's existing link to the same URL (`reuse`, 200).
    Reused(ManagedLink),
    /// Not made, and why.
    Refused(CreateError),
}

/// What a batch answers.
#[derive(Debug)]
pub enum BatchCreated {
    /// Each item's outcome, in order, and the answer's body (stored under the key).
    Answered { items: Vec<BatchItem>, body: String },
    /// A retry: the answer stored the first time.
    Replayed { status: u16, body: String },
}

/// How the answer of a batch is written (the HTTP layer's): called in the batch's transaction,
/// so that what is stored under its key is what was sent.
pub type RenderBatch<'a> = &'a (dyn Fn(&[BatchItem]) -> Result<String, serde_json::Error> + Sync);

/// What was decided for an item before the write.
#[derive(Clone)]
enum Plan {
    Refused(Refusal),
    Reused(Box<ManagedLink>),
    /// The row at this place of the unit.
    Written(usize),
}

/// A refusal decided before or by the write (cloneable: the answer is made in the
/// transaction, and again for the caller).
#[derive(Clone)]
enum Refusal {
    Url(UrlError),
    Expiry(ExpiryError),
    AliasTaken(Alias),
    NoFreeId,
}

impl Refusal {
    fn error(&self) -> CreateError {
        match self {
            Refusal::Url(error) => CreateError::Url(error.clone()),
            Refusal::Expiry(error) => CreateError::Expiry(error.clone()),
            Refusal::AliasTaken(alias) => CreateError::AliasTaken(alias.clone()),
            Refusal::NoFreeId => CreateError::Failed(CreateFailure::NoFreeId { attempts: 1 }),
        }
    }
}

impl Creator {
    /// Makes `items` for `caller`, or answers again what the batch's Idempotency-Key was first
    /// answered. An error is the whole batch's (nothing of it was written).
    pub async fn create_batch(
        &self,
        caller: &Caller,
        items: Vec<NewLink>,
        idempotency: Option<Idempotency>,
        render: RenderBatch<'_>,
    ) -> Result<BatchCreated, CreateError> {
        if self.schema_refuses() {
            return Err(CreateError::SchemaMismatch);
        }
        let now = self.clock.now();
        let mut plans = Vec::with_capacity(items.len());
        let mut rows = Vec::new();
        let mut aliases = Vec::new();
        let digests: Vec<Option<[u8; 32]>> = items
            .iter()
            .map(|link| link.reusable().then(|| reuse_digest(caller, &link.target)))
            .collect();
        let wanted: Vec<[u8; 32]> = items
            .iter()
            .zip(&digests)
            .filter(|(link, _)| link.reuse == Reuse::Existing)
            .filter_map(|(_, digest)| *digest)
            .collect();
        let mut existing = if wanted.is_empty() {
            Default::default()
        } else {
            self.db.reusable_links(&wanted).await?
        };
        for (link, digest) in items.into_iter().zip(digests) {
            if let Err(refusal) = self.admit_item(&link, now) {
                plans.push(Plan::Refused(refusal));
                continue;
            }
            if link.reuse == Reuse::Existing
                && let Some(found) = digest.and_then(|digest| existing.get(&digest))
            {
                plans.push(Plan::Reused(Box::new(
                    self.managed(found.link.clone(), found.clicks),
                )));
                continue;
            }
            let Some(id) = self.next_id(now) else {
                return match self
                    .replay_or(CreateError::NoWorkerId, idempotency.as_ref())
                    .await?
                {
                    super::Created::Replayed { status, body } => {
                        Ok(BatchCreated::Replayed { status, body })
                    }
                    _ => Err(CreateError::NoWorkerId),
                };
            };
            let code = match &link.alias {
                Some(alias) => alias.as_str().to_owned(),
                None => String::from_utf8_lossy(&self.codec.encode(id)).into_owned(),
            };
            plans.push(Plan::Written(rows.len()));
            aliases.push(link.alias.clone());
            rows.push(BatchRow {
                expires_at: link.expires_at.map(|at| at.get()),
                owner: caller.holder().map(|holder| holder.id),
                max_visits: link
                    .max_visits
                    .map(|max| i64::try_from(max.get()).unwrap_or(i64::MAX)),
                reuse_digest: digest,
                ..BatchRow::new(id, code, link.target.into_string(), now)
            });
        }
        existing.clear();
        let key = idempotency.as_ref().map(|idempotency| UnitKey {
            scope: idempotency.scope.stored(),
            key: idempotency.key.as_str().to_owned(),
            fresh_since: idempotency.fresh_since(now),
            fingerprint: idempotency.fingerprint.as_bytes().to_vec(),
            made_at: now,
        });
        // What the answer was made of, kept for the caller (the last try's, if retried).
        let answered: Mutex<Option<Vec<BatchItem>>> = Mutex::new(None);
        let answer = |outcomes: &[RowOutcome]| {
            let items = self.items(&plans, &rows, &aliases, outcomes);
            match render(&items) {
                Ok(body) => {
                    *answered
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(items);
                    Some(body)
                }
                Err(error) => {
                    tracing::error!(%error, "a batch's answer could not be written");
                    None
                }
            }
        };
        let written = self
            .writer
            .write_unit(&rows, key.as_ref(), BATCH_ANSWERED, &answer)
            .await
            .map_err(super::creator::written)?;
        match written {
            UnitOutcome::Written {
                outcomes,
                answer: body,
            } => {
                for (row, outcome) in rows.into_iter().zip(&outcomes) {
                    if *outcome == RowOutcome::Created {
                        self.fill_cache(row).await;
                    }
                }
                let items = answered
                    .into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .unwrap_or_default();
                Ok(BatchCreated::Answered { items, body })
            }
            UnitOutcome::Stored(stored) => {
                let fingerprint = idempotency.as_ref().map(|i| &i.fingerprint);
                let stored = replay_or_refuse(stored, fingerprint)?;
                Ok(BatchCreated::Replayed {
                    status: stored.status,
                    body: stored.body,
                })
            }
            UnitOutcome::KeyInUse => Err(CreateError::KeyInUse),
            UnitOutcome::Unanswerable => Err(CreateError::Failed(CreateFailure::BatchAnswer)),
        }
    }

    /// Whether an item may be made now: where it points, and whether its expiry is ahead.
    fn admit_item(&self, link: &NewLink, now: time::OffsetDateTime) -> Result<(), Refusal> {
        self.url_policy.admit(&link.target).map_err(Refusal::Url)?;
        if let Some(expires_at) = link.expires_at {
            expires_at.check_after(now).map_err(Refusal::Expiry)?;
        }
        Ok(())
    }

    /// Each item's outcome, from the plans and what the write did with the rows.
    fn items(
        &self,
        plans: &[Plan],
        rows: &[BatchRow],
        aliases: &[Option<Alias>],
        outcomes: &[RowOutcome],
    ) -> Vec<BatchItem> {
        plans
            .iter()
            .map(|plan| match plan {
                Plan::Refused(refusal) => BatchItem::Refused(refusal.error()),
                Plan::Reused(link) => BatchItem::Reused(ManagedLink::clone(link)),
                Plan::Written(at) => {
                    let row = &rows[*at];
                    match (&outcomes[*at], &aliases[*at]) {
                        (RowOutcome::Created, _) => {
                            BatchItem::Created(self.managed(record_of(row.clone()), 0))
                        }
                        (RowOutcome::CodeTaken, Some(alias)) => {
                            BatchItem::Refused(Refusal::AliasTaken(alias.clone()).error())
                        }
                        // A generated id or code already in use (a clock step): the item
                        // may be sent again.
                        _ => {
                            tracing::warn!(id = row.id, "a batch item's generated id was in use");
                            BatchItem::Refused(Refusal::NoFreeId.error())
                        }
                    }
                }
            })
            .collect()
    }

    /// A link as its owner sees it.
    fn managed(&self, link: LinkRecord, clicks: i64) -> ManagedLink {
        ManagedLink {
            short_url: format!("{}/{}", self.public_base_url, link.code),
            link,
            clicks,
        }
    }
}

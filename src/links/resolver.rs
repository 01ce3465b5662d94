//! The read path: a code to its link, through the tiers.
//!
//! moka first; on a miss, one lookup in Postgres (a replica, then the primary's read pool)
//! shared by every request that misses the same code at the same time (single-flight), its
//! answer filled back into moka. A code no link has is remembered in the negative cache.
//! Errors are never cached: while Postgres is down, cached links keep being served and
//! misses answer 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;

use super::{KeyHolder, LinkCache, RemoteCache, ResolvedLink};
use crate::clicks::{ClickKind, ClickRecorder};
use crate::clock::{Clock, StepWatch};
use crate::domain::{Code, KeyScope};
use crate::ids::{CodeCodec, EPOCH_UNIX_MS, monotonic_ms, split_id};
use crate::storage::{DailyClicks, Db, LinkRecord, StorageError};
use crate::telemetry::metrics::{ResolveMetrics, ResolveOutcome};
use crate::telemetry::{Chain, request_span};
use tracing::Instrument;

/// Whether a redirect counts as a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// A `GET`: counted, as a person's or a bot's click.
    Counted(ClickKind),
    /// A `HEAD`: not counted.
    Uncounted,
}

/// Why a code resolves to no link to send the client to. A failed lookup keeps its cause
/// (shared: every request waiting on one lookup gets its error); it was logged where it happened.
#[derive(Debug, Error, Clone)]
pub enum ResolveError {
    #[error("no link has this code")]
    NotFound,
    #[error("the link has expired or was disabled")]
    Gone,
    /// The lookup could not be made (no connection, timeout, database down).
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<StorageError>),
    /// The lookup failed in a way retrying will not fix.
    #[error("the lookup failed")]
    Internal(#[source] Arc<StorageError>),
}

/// A link and its daily click series.
pub struct LinkStats {
    pub link: Arc<ResolvedLink>,
    /// The daily rows kept (`SHORTENER_STATS_RETENTION`), oldest first.
    pub days: Vec<DailyClicks>,
    /// Totals over the link's life: the days kept and those pruned.
    pub clicks: i64,
    pub bot_clicks: i64,
    pub last_click_at: Option<OffsetDateTime>,
    /// Whether the target may be shown to who asked.
    pub url_shown: bool,
}

/// Resolves codes to links. Cheap to share behind the application state.
pub struct Resolver {
    cache: Arc<LinkCache>,
    db: Db,
    codec: CodeCodec,
    clicks: Arc<ClickRecorder>,
    /// Generated codes younger than this are read from the primary (`SHORTENER_REPLICA_LAG_BOUND`).
    replica_lag_bound: Duration,
    /// The Redis tier, when Redis is configured.
    remote: Option<Arc<RemoteCache>>,
    metrics: ResolveMetrics,
    clock: Clock,
    /// After a step of the wall clock, an id's time no longer says how old its code is.
    steps: StepWatch,
}

impl Resolver {
    pub fn new(
        cache: Arc<LinkCache>,
        db: Db,
        codec: CodeCodec,
        clicks: Arc<ClickRecorder>,
        replica_lag_bound: Duration,
    ) -> Self {
        Resolver {
            cache,
            db,
            codec,
            clicks,
            replica_lag_bound,
            remote: None,
            metrics: ResolveMetrics::default(),
            clock: Clock::system(),
            steps: StepWatch::default(),
        }
    }

    /// Reads expiries and the age of codes off `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Counts every resolution's outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: ResolveMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Asks `remote` (Redis) between moka and Postgres, and fills it from Postgres.
    pub fn with_remote(mut self, remote: Option<Arc<RemoteCache>>) -> Self {
        self.remote = remote;
        self
    }

    /// The cache this resolver fills (shared with the creator).
    pub fn cache(&self) -> Arc<LinkCache> {
        Arc::clone(&self.cache)
    }

    /// The redirect use case: the link to send the client to, its click counted. A link with
    /// a visit limit takes one of its visits on the primary first (every redirect of it, GET
    /// or HEAD, a person's or a bot's): none left is 410, a primary that does not answer 503,
    /// never a redirect that was not counted.
    pub async fn redirect(
        &self,
        code: &Code,
        visit: Visit,
    ) -> Result<Arc<ResolvedLink>, ResolveError> {
        let link = self.resolve(code).await?;
        if link.is_gone(&self.clock) {
            return Err(ResolveError::Gone);
        }
        if link.visit_limited {
            Box::pin(self.take_visit(&link)).await?;
        }
        if let Visit::Counted(kind) = visit {
            self.clicks.record(link.id, kind);
        }
        Ok(link)
    }

    async fn take_visit(&self, link: &ResolvedLink) -> Result<(), ResolveError> {
        match self.db.take_visit(link.id).await {
            Ok(Some(_left)) => Ok(()),
            Ok(None) => Err(ResolveError::Gone),
            Err(error) => Err(lookup_failed(error)),
        }
    }

    /// The link named by `code` if it answers redirects now: not found and gone as a redirect
    /// would be, and a link with a visit limit and no visit left gone too (read on the
    /// primary; nothing is taken).
    pub async fn live(&self, code: &Code) -> Result<Arc<ResolvedLink>, ResolveError> {
        let link = self.resolve(code).await?;
        if link.is_gone(&self.clock) {
            return Err(ResolveError::Gone);
        }
        if link.visit_limited {
            let left = self.db.visits_left(link.id).await.map_err(lookup_failed)?;
            if left.unwrap_or(0) <= 0 {
                return Err(ResolveError::Gone);
            }
        }
        Ok(link)
    }

    /// The stats use case: a link (expired and disabled ones too, not deleted ones) and its
    /// clicks, read from the primary. The target of a link with a visit limit is shown only to
    /// its owner or an admin (`viewer`).
    pub async fn stats(
        &self,
        code: &Code,
        viewer: Option<KeyHolder>,
    ) -> Result<LinkStats, ResolveError> {
        let link = self.resolve(code).await?;
        if link.deleted {
            return Err(ResolveError::Gone);
        }
        let stored = self.db.daily_clicks(link.id).await.map_err(lookup_failed)?;
        let (pruned_clicks, pruned_bots, pruned_last) =
            stored.pruned.map_or((0, 0, None), |(clicks, bots, last)| {
                (clicks, bots, Some(last))
            });
        let days = stored.days;
        let url_shown = !link.visit_limited
            || viewer.is_some_and(|viewer| {
                viewer.scope == KeyScope::Admin || link.owner() == Some(viewer.id)
            });
        Ok(LinkStats {
            clicks: pruned_clicks + days.iter().map(|day| day.clicks).sum::<i64>(),
            bot_clicks: pruned_bots + days.iter().map(|day| day.bot_clicks).sum::<i64>(),
            last_click_at: days
                .iter()
                .map(|day| day.last_click_at)
                .chain(pruned_last)
                .max(),
            link,
            days,
            url_shown,
        })
    }

    /// The link named by `code`, gone or not.
    pub async fn resolve(&self, code: &Code) -> Result<Arc<ResolvedLink>, ResolveError> {
        let code = code.as_str();
        if let Some(link) = self.cache.found.get(code).await {
            self.metrics.count(ResolveOutcome::Moka);
            return Ok(link);
        }
        // Boxed: the lookup's future (pool checkout, query) is kilobytes, and an unboxed one
        // would make every hit's future that large, copied in memory on every request.
        Box::pin(self.resolve_miss(code)).await
    }

    /// A code not in the positive cache: the negative cache, then one lookup for everyone.
    async fn resolve_miss(&self, code: &str) -> Result<Arc<ResolvedLink>, ResolveError> {
        if self.cache.absent.contains_key(code) {
            self.metrics.count(ResolveOutcome::Negative);
            return Err(ResolveError::NotFound);
        }
        if !self.cache.is_trusted() {
            return self.resolve_untrusted(code).await;
        }
        let creates_before = self.cache.creates_so_far();
        let changes_before = self.cache.changes_so_far();
        // Which tier answered, set by the lookup if this request is the one that runs it.
        let answered_by = AtomicU8::new(ResolveOutcome::Coalesced as u8);
        let loaded = self
            .cache
            .found
            // In the request's span: the lookup is what logs (a negative hit, the scanner's
            // path, makes no span).
            .try_get_with(
                Box::from(code),
                self.load(code, &answered_by).instrument(request_span()),
            )
            .await;
        match loaded {
            Ok(link) => {
                self.metrics.count(tier_of(&answered_by));
                if !self
                    .cache
                    .check_after_lookup(code, &link, changes_before)
                    .await
                {
                    // Read before a change heard meanwhile: read again, past it.
                    return self.load(code, &answered_by).await;
                }
                Ok(link)
            }
            Err(error) => {
                let error = ResolveError::clone(&error);
                self.count_failure(&error);
                if matches!(error, ResolveError::NotFound) {
                    self.cache.remember_absent(code, creates_before).await;
                }
                Err(error)
            }
        }
    }

    /// A miss while changes cannot be heard: looked up and kept only briefly.
    async fn resolve_untrusted(&self, code: &str) -> Result<Arc<ResolvedLink>, ResolveError> {
        if let Some(link) = self.cache.untrusted_get(code).await {
            self.metrics.count(ResolveOutcome::Moka);
            return Ok(link);
        }
        let answered_by = AtomicU8::new(ResolveOutcome::Coalesced as u8);
        match self.load(code, &answered_by).await {
            Ok(link) => {
                self.metrics.count(tier_of(&answered_by));
                self.cache.keep_untrusted(code, Arc::clone(&link)).await;
                Ok(link)
            }
            Err(error) => {
                self.count_failure(&error);
                Err(error)
            }
        }
    }

    fn count_failure(&self, error: &ResolveError) {
        self.metrics.count(match error {
            ResolveError::NotFound | ResolveError::Gone => ResolveOutcome::NotFound,
            ResolveError::Unavailable(_) => ResolveOutcome::Unavailable,
            ResolveError::Internal(_) => ResolveOutcome::Error,
        });
    }

    /// One lookup in Postgres; run once per code however many requests wait for it.
    ///
    /// A replica first, unless the code is a generated one younger than the replica lag
    /// bound (its id carries its creation time): that goes straight to the primary, which
    /// has it (read-your-writes without a round trip). For an older generated code the
    /// replica's "no such link" is final (unless that replica lags past the bound now), so a
    /// scan of unknown codes costs the primary nothing; an alias the replica does not know
    /// yet, a replica lagging past the bound, or a replica that fails, falls back to the
    /// primary.
    async fn load(
        &self,
        code: &str,
        answered_by: &AtomicU8,
    ) -> Result<Arc<ResolvedLink>, ResolveError> {
        let answered = |tier: ResolveOutcome| answered_by.store(tier as u8, Ordering::Relaxed);
        // A version older than one heard of is not taken from Redis or a replica.
        let newest_heard = self.cache.known_version(code).await;
        if let Some(remote) = &self.remote
            && let Some(link) = remote.get(code).await
            && link.version() >= newest_heard
        {
            answered(ResolveOutcome::Redis);
            return Ok(link);
        }
        // Generated-shape codes are looked up by the id they decode to (the primary key),
        // anything else (or an alias that merely has that shape) by the code itself.
        let decoded = self.codec.decode(code.as_bytes());
        let young = decoded.is_some_and(|id| self.is_younger_than_lag_bound(id));
        if !young && let Some(answer) = self.db.find_link_on_replica(code, decoded).await {
            match answer.found {
                Ok(Some(record)) if record.version >= newest_heard => {
                    answered(ResolveOutcome::Replica);
                    return self.found_in_postgres(code, record);
                }
                // Behind a change heard of: the primary has it.
                Ok(Some(_)) => {}
                // Final for a generated code older than the lag bound, unless this replica
                // lags past that bound now: then the primary may have it.
                Ok(None) if decoded.is_some() && !answer.lagging => {
                    return Err(ResolveError::NotFound);
                }
                // An alias the replica may not have yet.
                Ok(None) => {}
                // Logged and passed over by storage; the primary answers instead.
                Err(_) => {}
            }
        }
        let record = self
            .db
            .find_link_on_primary(code, decoded)
            .await
            .map_err(lookup_failed)?
            .ok_or(ResolveError::NotFound)?;
        answered(ResolveOutcome::Primary);
        self.found_in_postgres(code, record)
    }

    /// A link read from Postgres, filled back into Redis in the background.
    fn found_in_postgres(
        &self,
        code: &str,
        record: LinkRecord,
    ) -> Result<Arc<ResolvedLink>, ResolveError> {
        if let Some(remote) = &self.remote {
            remote.fill(code, &record);
        }
        resolved(record)
    }

    /// Whether the id was issued within the replica lag bound of now (either side, to
    /// allow for clocks that differ between instances). Within the bound after the wall clock
    /// stepped (either way), every id counts as young: a code made a moment before a step
    /// forward looks old by the clock, and ids issued after a step back carry the time they
    /// borrowed ahead.
    fn is_younger_than_lag_bound(&self, id: i64) -> bool {
        let (issued_ms, _, _) = split_id(id);
        let issued_unix_ms = EPOCH_UNIX_MS.saturating_add(issued_ms);
        let now_unix_ms = self.clock.unix_ms();
        let bound = self.replica_lag_bound.as_millis() as u64;
        let stepped = self
            .steps
            .since_step(now_unix_ms, monotonic_ms())
            .is_some_and(|since| since < bound);
        stepped || now_unix_ms.abs_diff(issued_unix_ms) < bound
    }
}

/// The tier a lookup recorded as its answer's.
fn tier_of(answered_by: &AtomicU8) -> ResolveOutcome {
    ResolveOutcome::ALL
        .get(usize::from(answered_by.load(Ordering::Relaxed)))
        .copied()
        .unwrap_or(ResolveOutcome::Coalesced)
}

fn resolved(record: LinkRecord) -> Result<Arc<ResolvedLink>, ResolveError> {
    ResolvedLink::from_record(record).ok_or(ResolveError::NotFound)
}

/// Logs a failed lookup once, where it happened, and says what the caller may answer.
fn lookup_failed(error: StorageError) -> ResolveError {
    if error.is_transient() {
        crate::throttled!(warn, error = %Chain(&error), sqlstate = error.sqlstate(), "link lookup: database unavailable");
        ResolveError::Unavailable(Arc::new(error))
    } else {
        tracing::error!(error = %Chain(&error), sqlstate = error.sqlstate(), "link lookup failed");
        ResolveError::Internal(Arc::new(error))
    }
}

//! The worker-id lease: a fixed worker id or one leased at start-up, how long a lease lives,
//! how often it is renewed, and how early ids stop before it could expire.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::ids::{MAX_WORKER_ID, WorkerId};
use crate::lease::{LeaseConfig, LeaseSettings};

/// Names this host in the lease's holder (a pod's name under Kubernetes). Not an option of
/// ours: the system sets it.
const HOST_VARIABLE: &str = "HOSTNAME";

#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Fixed Snowflake worker id 0..=1023 (e.g. a StatefulSet ordinal); leased at start-up if unset.
    #[arg(long, env = "SHORTENER_WORKER_ID")]
    pub worker_id: Option<String>,
    /// How long a worker-id lease lives without renewal.
    #[arg(long, env = "SHORTENER_LEASE_TTL", default_value = "30s")]
    pub lease_ttl: String,
    /// How often the worker-id lease is renewed.
    #[arg(long, env = "SHORTENER_LEASE_RENEW_EVERY", default_value = "10s")]
    pub lease_renew_every: String,
    /// Ids stop this long before the lease could expire (clock drift, a late answer).
    #[arg(long, env = "SHORTENER_LEASE_SAFETY_MARGIN", default_value = "5s")]
    pub lease_safety_margin: String,
}

impl LeaseArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<LeaseConfig> {
        let fixed = match &self.worker_id {
            None => Some(None),
            Some(raw) => errors.take("SHORTENER_WORKER_ID", worker_id(raw)).map(Some),
        };
        let ttl = errors.take("SHORTENER_LEASE_TTL", parse::duration(&self.lease_ttl));
        let renew_every = errors.take(
            "SHORTENER_LEASE_RENEW_EVERY",
            parse::duration(&self.lease_renew_every),
        );
        let safety_margin = errors.take(
            "SHORTENER_LEASE_SAFETY_MARGIN",
            parse::duration(&self.lease_safety_margin),
        );
        let settings = LeaseSettings {
            ttl: ttl?,
            renew_every: renew_every?,
            safety_margin: safety_margin?,
        };
        check(settings, errors);
        Some(LeaseConfig {
            fixed: fixed?,
            settings,
            host: host_name(),
        })
    }
}

/// The margin must leave a usable lease, and the lease must outlive at least two renewal
/// periods, so one failed renewal does not stop creates.
fn check(settings: LeaseSettings, errors: &mut ConfigErrors) {
    if settings.safety_margin >= settings.ttl {
        errors.push(
            "SHORTENER_LEASE_SAFETY_MARGIN",
            "must be shorter than SHORTENER_LEASE_TTL",
        );
    } else if settings.renew_every * 2 > settings.ttl - settings.safety_margin {
        errors.push(
            "SHORTENER_LEASE_RENEW_EVERY",
            "at most half of SHORTENER_LEASE_TTL minus SHORTENER_LEASE_SAFETY_MARGIN (one \
             renewal may fail without stopping creates)",
        );
    }
}

fn worker_id(raw: &str) -> Result<WorkerId, String> {
    let raw = raw.trim();
    raw.parse::<u16>()
        .ok()
        .and_then(WorkerId::new)
        .ok_or_else(|| format!("'{raw}' is not a worker id in 0..={MAX_WORKER_ID}"))
}

/// This host's name, for the lease's holder; `unknown-host` when the system gives none.
pub(super) fn host_name() -> String {
    std::env::var(HOST_VARIABLE).unwrap_or_else(|_| "unknown-host".into())
}

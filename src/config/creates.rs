//! The create path: the public base URL of short links, the code key, which targets are
//! refused, and how creates are batched into transactions (group commit).

use std::path::PathBuf;

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::domain::{Blocklist, UrlPolicy};
use crate::ids::CodeKey;
use crate::links::WriterSettings;

/// The code key used when none is configured. Development only: anyone can read it here.
pub const DEVELOPMENT_CODE_KEY: &str = "shortener development key: public, never use in production";
const MIN_CODE_KEY_LEN: usize = 16;

/// The secret of the code permutation, given directly or in a file.
#[derive(Debug, Args)]
pub struct CodeKeyArgs {
    /// Secret key of the code permutation (at least 16 characters).
    #[arg(long, env = "SHORTENER_CODE_KEY", hide_env_values = true)]
    pub code_key: Option<String>,
    /// File holding the secret key of the code permutation.
    #[arg(long, env = "SHORTENER_CODE_KEY_FILE")]
    pub code_key_file: Option<PathBuf>,
}

/// Where the code key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    /// None was configured: the public development key (a warning says so).
    Development,
}

impl CodeKeyArgs {
    /// The key, and where it came from. Errors never repeat the secret.
    pub fn key(&self) -> Result<(CodeKey, KeySource), String> {
        let names = ["SHORTENER_CODE_KEY", "SHORTENER_CODE_KEY_FILE"];
        let secret = parse::secret(self.code_key.clone(), self.code_key_file.clone(), names)?;
        let Some(secret) = secret else {
            return Ok((
                CodeKey::derive(DEVELOPMENT_CODE_KEY.as_bytes()),
                KeySource::Development,
            ));
        };
        if secret.len() < MIN_CODE_KEY_LEN {
            return Err(format!(
                "the code key must be at least {MIN_CODE_KEY_LEN} characters (value not shown)"
            ));
        }
        Ok((CodeKey::derive(secret.as_bytes()), KeySource::Configured))
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Base of every short_url; URLs pointing at its host are refused.
    #[arg(
        long,
        env = "SHORTENER_PUBLIC_BASE_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_base_url: String,
    #[command(flatten)]
    pub code_key: CodeKeyArgs,
    /// File of blocked hosts, one a line (subdomains are blocked too).
    #[arg(long, env = "SHORTENER_BLOCKLIST_FILE")]
    pub blocklist_file: Option<PathBuf>,
    /// How often the blocklist file is looked at for a change (a Kubernetes ConfigMap update
    /// included), e.g. 5s; `0s`: only SIGHUP reloads it.
    #[arg(long, env = "SHORTENER_BLOCKLIST_WATCH_INTERVAL", default_value = "5s")]
    pub blocklist_watch_interval: String,
    /// Refuse targets at literal private, loopback and link-local addresses (169.254.169.254
    /// included) and port 0: on for a public instance, off for an intranet shortener.
    #[arg(long, env = "SHORTENER_BLOCK_PRIVATE_TARGETS", default_value = "false")]
    pub block_private_targets: String,
    /// Most creates written in one transaction (group commit); 1 writes each on its own.
    #[arg(long, env = "SHORTENER_CREATE_BATCH_MAX", default_value = "256")]
    pub create_batch_max: String,
    /// How long a batch that found other creates waiting waits for more (never when the queue
    /// was idle); 0s writes what is queued at once.
    #[arg(long, env = "SHORTENER_CREATE_LINGER", default_value = "0s")]
    pub create_linger: String,
    /// Batches written at once, each on a write-pool connection (at most the write pool's size).
    #[arg(long, env = "SHORTENER_CREATE_WRITERS", default_value = "1")]
    pub create_writers: String,
    /// Most creates waiting to be written; more are answered 503 at once.
    #[arg(long, env = "SHORTENER_CREATE_QUEUE", default_value = "4096")]
    pub create_queue: String,
}

/// How links are made.
#[derive(Debug, Clone)]
pub struct CreateConfig {
    /// Without a trailing slash.
    pub public_base_url: String,
    /// What a target may not point at. Its `listen` is the configured main listener; the
    /// service puts the address it really bound there.
    pub policy: UrlPolicy,
    pub code_key: CodeKey,
    pub key_source: KeySource,
    /// Where the blocklist was read from: read again on SIGHUP.
    pub blocklist_file: Option<PathBuf>,
    /// How often that file is looked at for a change; `None`: never.
    pub blocklist_watch: Option<std::time::Duration>,
    pub writer: WriterSettings,
}

impl CreateArgs {
    /// `listen`: the main listener, which a target may not point back at.
    pub(super) fn parse(
        &self,
        listen: Option<std::net::SocketAddr>,
        errors: &mut ConfigErrors,
    ) -> Option<CreateConfig> {
        let public = errors.take(
            "SHORTENER_PUBLIC_BASE_URL",
            public_base_url(&self.public_base_url),
        );
        let key = errors.take("SHORTENER_CODE_KEY", self.code_key.key());
        let blocklist = match &self.blocklist_file {
            None => Some(Blocklist::default()),
            Some(path) => errors.take("SHORTENER_BLOCKLIST_FILE", read_blocklist(path)),
        };
        let watch = errors.take(
            "SHORTENER_BLOCKLIST_WATCH_INTERVAL",
            parse::duration_or_zero(&self.blocklist_watch_interval),
        );
        let block_private = errors.take(
            "SHORTENER_BLOCK_PRIVATE_TARGETS",
            parse::switch(&self.block_private_targets),
        );
        let batch_max = errors.take(
            "SHORTENER_CREATE_BATCH_MAX",
            parse::positive::<usize>(&self.create_batch_max),
        );
        let linger = errors.take(
            "SHORTENER_CREATE_LINGER",
            parse::duration_or_zero(&self.create_linger),
        );
        let writers = errors.take(
            "SHORTENER_CREATE_WRITERS",
            parse::positive::<usize>(&self.create_writers),
        );
        let queue = errors.take(
            "SHORTENER_CREATE_QUEUE",
            parse::positive::<usize>(&self.create_queue),
        );
        let (public_base_url, own_host, own_port) = public?;
        let (code_key, key_source) = key?;
        Some(CreateConfig {
            public_base_url,
            policy: UrlPolicy {
                own_host,
                own_port,
                listen: listen?,
                block_private: block_private?,
                blocklist: blocklist?,
            },
            code_key,
            key_source,
            blocklist_file: self.blocklist_file.clone(),
            blocklist_watch: Some(watch?).filter(|every| !every.is_zero()),
            writer: WriterSettings {
                batch_max: batch_max?,
                linger: linger?,
                queue: queue?,
                concurrency: writers?,
                // SHORTENER_DB_ACQUIRE_TIMEOUT's, set once the database settings are read.
                queue_wait: std::time::Duration::from_millis(250),
            },
        })
    }
}

/// The base URL without its trailing slash, its host and its port.
fn public_base_url(raw: &str) -> Result<(String, String, u16), String> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "'{raw}' must be an http(s) URL without query or fragment"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("'{raw}' has no host"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((url.as_str().trim_end_matches('/').to_owned(), host, port))
}

/// Reads and parses a blocklist file at start-up (SIGHUP reloads are the service's own).
fn read_blocklist(path: &std::path::Path) -> Result<Blocklist, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Blocklist::parse(&text).map_err(|errors| format!("{}: {}", path.display(), errors.join("; ")))
}

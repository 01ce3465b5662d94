//! The command line: the subcommands and their options. Every option is a flag and an
//! environment variable (clap reads the flag, else the variable, else the default, as text);
//! each section's `parse` turns its text into typed values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::cache::CacheArgs;
use super::clicks::ClickArgs;
use super::creates::{CodeKeyArgs, CreateArgs};
use super::database::{DatabaseArgs, PrimaryArgs};
use super::lease::LeaseArgs;
use super::limits::LimitArgs;
use super::redis::RedisArgs;
use super::retention::RetentionArgs;
use super::server::ServerArgs;
use super::telemetry::TelemetryArgs;
use crate::lease::{LeaseConfig, LeaseSettings};

#[derive(Debug, Parser)]
#[command(
    name = "shortener",
    version,
    about = "A URL shortener built for high redirect volume"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the main listener and the admin listener.
    Serve(Box<ServeArgs>),
    /// Apply the SQL migrations to DATABASE_URL, idempotently, then exit.
    Migrate(MigrateArgs),
    /// Take a link down (it answers 410), or every link to a host (--host): sets disabled_at,
    /// records who and why in the audit log; every instance follows within a second.
    Disable(LinkArgs),
    /// Serve a disabled link again: clears its disabled_at.
    Enable(LinkArgs),
    /// API keys: make one (printed once, on standard output), list them, revoke one. Run as
    /// the owner of the tables (the service's role only reads the keys).
    Apikey(ApikeyArgs),
    /// The audit log: edits, deletes, takedowns and revocations, newest last.
    Audit(AuditArgs),
    /// Load tests only: write N links straight into Postgres with COPY, their ids from a leased
    /// worker id and their codes from the code key, as the service would make them.
    #[command(hide = true)]
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct ApikeyArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    #[command(subcommand)]
    pub action: ApikeyAction,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyAction {
    /// Make a key and print it, alone, on the first line of standard output (it is shown only
    /// this once: only its digest is stored).
    Create {
        /// What the key is for (shown by `list`).
        #[arg(long)]
        name: String,
        /// `links`: create, list, edit and delete its own links; `admin`: every link.
        #[arg(long, value_parser = ["links", "admin"])]
        scope: String,
    },
    /// One line per key: its id, then name, scope, created, last used and revoked (`-` for
    /// never); never the key.
    List,
    /// Revoke the key with this id: every instance refuses it within 5 s.
    Revoke {
        /// The key's id, as `list` shows it.
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    /// How many of the newest entries to show.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Print the name of every environment variable `serve` reads, one a line, and exit
    /// (deployment checks use it: a misspelt name is otherwise silently ignored).
    #[arg(long)]
    pub list_config_names: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub creates: CreateArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub clicks: ClickArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    /// The role the service runs as (e.g. shortener_app, a group role its login roles are
    /// members of): after migrating, it is given exactly the rights the service uses (rows of
    /// its tables; the API keys only read) and no others. The role must exist
    /// (deploy/postgres/roles.sql makes it). Unset: no grants are made.
    #[arg(long, env = "SHORTENER_DATABASE_APP_ROLE")]
    pub app_role: Option<String>,
    /// How long to wait for the database to answer before migrating (a server still
    /// starting, as in Compose or a fresh cluster): tried again and again until then.
    #[arg(long, env = "SHORTENER_MIGRATE_WAIT", default_value = "60s")]
    pub wait: String,
}

impl MigrateArgs {
    /// How long to wait for the database.
    pub fn wait(&self) -> Result<std::time::Duration, String> {
        super::parse::duration(&self.wait)
    }

    /// The application role, if one is named: a plain identifier (lower-case letters, digits
    /// and `_`, at most 63 bytes, not starting with a digit), quoted as it is.
    pub fn app_role(&self) -> Result<Option<&str>, String> {
        let Some(role) = self.app_role.as_deref() else {
            return Ok(None);
        };
        let plain = !role.is_empty()
            && role.len() <= 63
            && !role.starts_with(|c: char| c.is_ascii_digit())
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if plain {
            Ok(Some(role))
        } else {
            Err(format!(
                "{role:?} is not a plain role name (lower-case letters, digits and _, at most 63, not starting with a digit)"
            ))
        }
    }
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    /// When Redis is configured, the new version is written there and announced.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The link's code (generated code or alias), as in its short URL.
    #[arg(required_unless_present = "host", conflicts_with = "host")]
    pub code: Option<String>,
    /// Every link whose target's host is HOST (compared without case; not its subdomains),
    /// instead of one code: a phishing host taken down, or back, in one command. Needs
    /// --reason.
    #[arg(long, requires = "reason")]
    pub host: Option<String>,
    /// Why, kept with the change in the audit log (`shortener audit`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who, kept in the audit log as `cli:<BY>` (without it: `cli`).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    /// The code key the service under test uses.
    #[command(flatten)]
    pub code_key: CodeKeyArgs,
    /// How many links to write.
    #[arg(long)]
    pub links: u64,
    /// Write the generated codes to this file, one a line, in id order.
    #[arg(long)]
    pub codes_out: Option<PathBuf>,
}

impl SeedArgs {
    /// The lease seeding holds: the lowest free worker id, the default timings.
    pub fn lease(&self) -> LeaseConfig {
        LeaseConfig {
            fixed: None,
            settings: LeaseSettings::default(),
            host: super::lease::host_name(),
        }
    }
}

//! `shortener apikey create|list|revoke` and `shortener audit`: the commands of whoever runs
//! the service, on a connection of their own as the owner of the tables. A key is printed once,
//! when it is made, alone on the first line of standard output (everything else goes to the
//! log on standard error); only its digest is stored.

use std::process::ExitCode;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Runtime;

use crate::config::{ApikeyAction, ApikeyArgs, AuditArgs, command_logs};
use crate::domain::{ApiKey, KEY_CHARS, KeyId, KeyScope};
use crate::storage::{self, PgTarget};
use crate::telemetry::{self, Chain};

pub fn run(runtime: &Runtime, args: &ApikeyArgs) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let _logs = telemetry::init(&command_logs());
    match &args.action {
        ApikeyAction::Create { name, scope } => create(runtime, &target, name, scope),
        ApikeyAction::List => list(runtime, &target),
        ApikeyAction::Revoke { id } => revoke(runtime, &target, KeyId(*id)),
    }
}

fn create(runtime: &Runtime, target: &PgTarget, name: &str, scope: &str) -> ExitCode {
    let Some(scope) = KeyScope::parse(scope) else {
        eprintln!("invalid --scope: links or admin");
        return ExitCode::from(super::EXIT_CONFIG);
    };
    let mut random = [0u8; KEY_CHARS];
    if let Err(error) = getrandom::fill(&mut random) {
        tracing::error!(%error, "no random numbers from the operating system; no key made");
        return ExitCode::FAILURE;
    }
    let key = ApiKey::from_random(random);
    match runtime.block_on(storage::create_api_key(target, name, scope, key.digest())) {
        Ok(id) => {
            println!("{}", key.reveal());
            tracing::info!(
                id = id.0,
                scope = scope.as_str(),
                "API key made; it is shown this once"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot store the key");
            ExitCode::FAILURE
        }
    }
}

fn list(runtime: &Runtime, target: &PgTarget) -> ExitCode {
    match runtime.block_on(storage::list_api_keys(target)) {
        Ok(keys) => {
            for key in keys {
                println!(
                    "{} {} {} {} {} {}",
                    key.id,
                    key.name,
                    key.scope.as_str(),
                    rfc3339(Some(key.created_at)),
                    rfc3339(key.last_used_at),
                    rfc3339(key.revoked_at),
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot list the keys");
            ExitCode::FAILURE
        }
    }
}

fn revoke(runtime: &Runtime, target: &PgTarget, id: KeyId) -> ExitCode {
    match runtime.block_on(storage::revoke_api_key(target, id, "cli")) {
        Ok(true) => {
            tracing::info!(
                id = id.0,
                "API key revoked; every instance refuses it within 5 s"
            );
            ExitCode::SUCCESS
        }
        Ok(false) => {
            tracing::error!(id = id.0, "no API key has this id");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot revoke the key");
            ExitCode::FAILURE
        }
    }
}

pub fn audit(runtime: &Runtime, args: &AuditArgs) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let _logs = telemetry::init(&command_logs());
    match runtime.block_on(storage::audit_log(&target, args.limit.max(1))) {
        Ok(entries) => {
            for entry in entries {
                println!(
                    "{} {} {} {} {}",
                    rfc3339(Some(entry.at)),
                    entry.actor,
                    entry.action,
                    entry.target,
                    if entry.detail.is_empty() {
                        "-"
                    } else {
                        &entry.detail
                    },
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot read the audit log");
            ExitCode::FAILURE
        }
    }
}

/// An instant as RFC 3339, `-` for none.
fn rfc3339(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

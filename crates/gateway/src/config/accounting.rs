//! `database:` and `accounting:`: where keys and the ledger live, and how spend is counted.

use serde::Deserialize;

use super::{Config, Secret};

/// The database used when the configuration names none: a SQLite file in the working
/// directory, so that `switchyard serve` needs nothing else.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchyard.db";

/// `database:`: keys, teams, users and the spend ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created when missing), `sqlite::memory:` (gone at exit), or
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: Secret,
}

/// `accounting:`: the ledger's batching, key lookups and reservations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingConfig {
    /// Most spend records written in one batch.
    pub ledger_batch_size: usize,
    /// Longest a spend record waits before it is written, in milliseconds; what a crash can lose.
    pub ledger_flush_interval_ms: u64,
    /// How long a replica trusts a virtual key it looked up, in milliseconds: a key revoked
    /// or changed through another replica (or the CLI) takes effect here within this time.
    pub key_cache_ttl_ms: u64,
    /// Completion tokens reserved for a request that sets no `max_tokens`, when its cost is
    /// estimated against a budget or a token limit.
    pub reserve_output_tokens: u64,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        Self {
            ledger_batch_size: 256,
            ledger_flush_interval_ms: 200,
            key_cache_ttl_ms: 10_000,
            reserve_output_tokens: 512,
        }
    }
}

/// A model's `limits:`: for all of its clients together.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (input and output) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_parallel: Option<u64>,
}

impl Config {
    /// The database to use: the configured one, or the embedded default.
    pub fn database_url(&self) -> &str {
        self.database.as_ref().map_or(DEFAULT_DATABASE_URL, |d| d.url.expose())
    }

    pub(super) fn accounting_problems(&self, problems: &mut Vec<String>) {
        let url = self.database_url();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) {
            problems.push(
                "database.url: must be sqlite://FILE, sqlite::memory: or postgres://user@host/database"
                    .to_owned(),
            );
        }
        let accounting = &self.accounting;
        if accounting.ledger_batch_size == 0 {
            problems.push("accounting.ledger_batch_size: must be at least 1".to_owned());
        }
        if accounting.ledger_flush_interval_ms == 0 {
            problems.push("accounting.ledger_flush_interval_ms: must be at least 1".to_owned());
        }
        for (m, model) in self.models.iter().enumerate() {
            let limits = [
                ("rpm", model.limits.rpm),
                ("tpm", model.limits.tpm),
                ("max_parallel", model.limits.max_parallel),
            ];
            for (key, value) in limits {
                if value == Some(0) {
                    problems.push(format!(
                        "models[{m}].limits.{key}: 0 would refuse every request; remove it to have no limit"
                    ));
                }
            }
        }
    }
}

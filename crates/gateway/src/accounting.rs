//! Accounting at the gateway: the store, the ledger, the meter, the key cache and the price
//! book, built from the configuration ([docs/accounting.md](../../../docs/accounting.md)).
//!
//! - [`KeyCache`] turns a presented virtual key into an [`Identity`]: SHA-256 of the secret,
//!   then a cache, then the store. A replica trusts what it looked up for
//!   `accounting.key_cache_ttl_ms`, so a key revoked elsewhere stops working here within that
//!   time (at once on the replica whose admin API revoked it). Unknown keys are remembered for a
//!   second, so that a client retrying a bad key does not send every retry to the database.
//! - [`PriceBook`] prices a deployment's answer: its configured `price`, else the built-in
//!   catalog's price for its provider and upstream model.
//! - [`StoreSpent`] tells the meter what the ledger says was spent, so that budgets survive
//!   restarts.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use switchyard_accounting::{
    keys,
    ledger::{Ledger, LedgerConfig, LedgerHandle},
    meter::{Meter, MeterError, SpentSource},
    model::{Identity, Nanos, Scope, now_ms},
    prices::{Catalog, Price},
    store::{Store, StoreError},
};
use switchyard_router::RouteTable;
use switchyard_types::llm::{ErrorClass, LlmError};

use crate::config::{Config, PriceConfig};

/// What the request path needs of accounting, shared by every handler.
#[derive(Clone)]
pub struct Accounts {
    /// Keys, teams, users and the ledger's tables.
    pub store: Store,
    /// Where spend records go.
    pub ledger: LedgerHandle,
    /// Virtual keys, looked up once and remembered for a while.
    pub keys: KeyCache,
    /// Rate limits and budgets.
    pub meter: Meter,
    /// What each deployment's tokens cost.
    pub prices: Arc<PriceBook>,
}

/// Why accounting could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Redis is configured for shared limits but could not be used.
    #[error("{0}; start Redis or remove `redis:` from the configuration to keep limits per replica")]
    Meter(#[from] MeterError),
}

/// Opens the database (migrating it), starts the ledger's writer and the meter.
///
/// The returned [`Ledger`] is the writer task: close it after the server has drained, so that
/// every record is written before the process exits.
pub async fn start(config: &Config, table: &RouteTable) -> Result<(Accounts, Ledger), AccountingError> {
    let store = Store::connect(config.database_url()).await?;
    let settings = &config.accounting;
    let ledger = Ledger::start(
        store.clone(),
        LedgerConfig {
            batch_size: settings.ledger_batch_size,
            flush_interval: Duration::from_millis(settings.ledger_flush_interval_ms),
        },
    );
    let spent: Arc<dyn SpentSource> = Arc::new(StoreSpent(store.clone()));
    let meter = match &config.redis {
        Some(redis) => Meter::redis(redis.url.expose(), "switchyard", spent).await?,
        None => Meter::in_memory(spent),
    };
    let prices = Arc::new(PriceBook::new(config, |name| {
        let group = table.groups().iter().find(|g| g.name() == name);
        group.map(|g| g.endpoints().iter().map(|e| Arc::clone(&e.label)).collect()).unwrap_or_default()
    }));
    let accounts = Accounts {
        keys: KeyCache::new(store.clone(), Duration::from_millis(settings.key_cache_ttl_ms)),
        ledger: ledger.handle(),
        store,
        meter,
        prices,
    };
    Ok((accounts, ledger))
}

/// Virtual keys, looked up once and remembered for a while.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    found: moka::future::Cache<String, Arc<Identity>>,
    unknown: moka::future::Cache<String, ()>,
}

impl KeyCache {
    /// A cache over `store` that trusts a lookup for `ttl`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            found: moka::future::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            unknown: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1).min(ttl))
                .build(),
        }
    }

    /// Who `secret` belongs to, or why it cannot be used.
    pub async fn identify(&self, secret: &str) -> Result<Arc<Identity>, LlmError> {
        let hash = keys::hash(secret);
        let identity = match self.found.get(&hash).await {
            Some(identity) => identity,
            None if self.unknown.contains_key(&hash) => return Err(unknown_key()),
            None => match self.load(&hash).await? {
                Some(identity) => {
                    self.found.insert(hash, Arc::clone(&identity)).await;
                    identity
                }
                None => {
                    self.unknown.insert(hash, ()).await;
                    return Err(unknown_key());
                }
            },
        };
        if let Some(why) = identity.key.unusable(now_ms()) {
            return Err(LlmError::new(
                ErrorClass::Unauthenticated,
                format!(
                    "This virtual key ({}) is {why}. Ask an admin for a new key (switchyard keys create).",
                    identity.key.id
                ),
            ));
        }
        Ok(identity)
    }

    /// Forgets every lookup: called after the admin API changed a key, team or user, so that
    /// this replica applies the change at once.
    pub fn forget_all(&self) {
        self.found.invalidate_all();
        self.unknown.invalidate_all();
    }

    async fn load(&self, hash: &str) -> Result<Option<Arc<Identity>>, LlmError> {
        let Some(key) = self.store.key_by_hash(hash).await.map_err(unavailable)? else { return Ok(None) };
        if !keys::hashes_equal(&key.key_hash, hash) {
            return Ok(None);
        }
        let team = match &key.team_id {
            Some(id) => self.store.team(id).await.map_err(unavailable)?.map(Arc::new),
            None => None,
        };
        let user = match &key.user_id {
            Some(id) => self.store.user(id).await.map_err(unavailable)?.map(Arc::new),
            None => None,
        };
        Ok(Some(Arc::new(Identity { key: Arc::new(key), team, user })))
    }
}

/// The error for a virtual key the gateway does not know.
pub(crate) fn unknown_key() -> LlmError {
    LlmError::new(
        ErrorClass::Unauthenticated,
        "The virtual key is not known to this gateway. Check the key your client sends (Authorization: Bearer sk-sy-...), or ask an admin for one (switchyard keys create).",
    )
}

fn unavailable(error: StoreError) -> LlmError {
    tracing::warn!(%error, "could not look up a virtual key");
    LlmError::new(
        ErrorClass::Overloaded,
        "The gateway could not check the key: its database did not answer. Retry in a moment.",
    )
}

/// The ledger's totals, for the meter's budgets.
pub struct StoreSpent(pub Store);

impl SpentSource for StoreSpent {
    fn spent_since(&self, scope: &Scope, since_ms: i64) -> BoxFuture<'_, Result<Nanos, String>> {
        let scope = scope.clone();
        Box::pin(async move { self.0.spent_since(&scope, since_ms).await.map_err(|e| e.to_string()) })
    }
}

/// What each deployment's tokens cost.
#[derive(Debug, Default)]
pub struct PriceBook {
    /// By configured model name, then deployment label.
    models: HashMap<String, Vec<(Arc<str>, Priced)>>,
}

#[derive(Debug)]
enum Priced {
    /// The deployment's own `price`.
    Configured(Price),
    /// The catalog's price for this provider preset and upstream model; `None` for a
    /// wildcard deployment, whose upstream model is the part of the client's model after
    /// `prefix`.
    Catalog { provider: String, model: Option<String>, prefix: String },
}

impl PriceBook {
    /// Prices every deployment of `config`; `labels` gives each model's deployment labels in
    /// configuration order (as the route table has them).
    pub fn new(config: &Config, labels: impl Fn(&str) -> Vec<Arc<str>>) -> Self {
        let mut models = HashMap::new();
        for model in &config.models {
            let name = &model.name.value;
            let prefix = name.strip_suffix('*').unwrap_or("").to_owned();
            let labels = labels(name);
            let priced = model
                .deployments
                .iter()
                .zip(labels)
                .map(|(d, label)| {
                    let priced = match &d.price {
                        Some(price) => Priced::Configured(price_of(price)),
                        None => Priced::Catalog {
                            provider: d.provider.value.clone(),
                            model: (d.model.value != "*").then(|| d.model.value.clone()),
                            prefix: prefix.clone(),
                        },
                    };
                    (label, priced)
                })
                .collect();
            models.insert(name.clone(), priced);
        }
        Self { models }
    }

    /// The price of `deployment` of `model` for a request that named `requested`.
    pub fn price(&self, model: &str, deployment: &str, requested: &str) -> Option<Price> {
        let (_, priced) = self.models.get(model)?.iter().find(|(label, _)| &**label == deployment)?;
        priced.price(requested)
    }

    /// The dearest price among `model`'s deployments, for a reservation.
    pub fn dearest(&self, model: &str, requested: &str) -> Option<Price> {
        self.models
            .get(model)?
            .iter()
            .filter_map(|(_, priced)| priced.price(requested))
            .max_by(|a, b| (a.input + a.output).total_cmp(&(b.input + b.output)))
    }
}

impl Priced {
    fn price(&self, requested: &str) -> Option<Price> {
        match self {
            Self::Configured(price) => Some(*price),
            Self::Catalog { provider, model, prefix } => {
                let model = match model {
                    Some(model) => model.as_str(),
                    None => requested.strip_prefix(prefix.as_str())?,
                };
                Catalog::builtin().price(provider, model).copied()
            }
        }
    }
}

fn price_of(config: &PriceConfig) -> Price {
    Price {
        input: config.input,
        output: config.output,
        cached_input: config.cached_input,
        cache_creation: config.cache_creation,
        reasoning: config.reasoning,
    }
}

/// The database URL for a person to read: its kind and where, never its password.
pub fn describe_database(url: &str) -> String {
    if url == "sqlite::memory:" {
        "SQLite in memory (gone when the gateway stops)".to_owned()
    } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        format!("SQLite at {}", path.split('?').next().unwrap_or(path))
    } else {
        format!("PostgreSQL at {}", switchyard_accounting::store::redact_url(url))
    }
}

//! The accounting vocabulary: keys, teams, users, limits, identities and spend records.
//!
//! These are plain data, shared by the store (which persists them), the meters (which enforce
//! limits) and the ledger (which records spend). Times are Unix milliseconds (`i64`), so that
//! SQLite and PostgreSQL store them the same way; money is US dollars as `f64` in records and
//! reports, and integer nano-dollars ([`Nanos`]) wherever it is counted against a limit, so
//! that counting is exact and atomic (Redis `INCRBY`).

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};
pub use switchyard_types::llm::Usage;

/// Integer nano-dollars: 1 USD = 1e9. Exact to add, and big enough for 9 billion dollars.
pub type Nanos = i64;

/// Dollars to nano-dollars, rounded up so that no spend rounds to free.
pub fn to_nanos(usd: f64) -> Nanos {
    if usd.is_finite() && usd > 0.0 { (usd * 1e9).ceil().min(i64::MAX as f64) as Nanos } else { 0 }
}

/// Nano-dollars to dollars.
pub fn to_usd(nanos: Nanos) -> f64 {
    nanos as f64 / 1e9
}

/// How often a budget starts again. Periods are calendar periods in UTC: a daily budget resets
/// at midnight UTC, a weekly one on Monday at midnight UTC, a monthly one on the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Never: the budget is a lifetime total.
    #[default]
    None,
    /// Every day.
    Daily,
    /// Every week, from Monday.
    Weekly,
    /// Every calendar month.
    Monthly,
}

impl Period {
    /// The name used in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    /// Parses [`Period::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

/// The limits of a key, a team or a user. `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most it may spend per period, in dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// When the budget starts again.
    #[serde(default)]
    pub budget_period: Period,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input and output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.budget_usd.is_none() && self.rpm.is_none() && self.tpm.is_none() && self.max_parallel.is_none()
    }
}

/// Free-form metadata an operator attaches to a key, a team or a user.
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// A virtual key as stored: never the key itself, only its hash and a prefix to recognise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's public id (`key_...`), used in the API, reports and the ledger.
    pub id: String,
    /// SHA-256 of the key, hex; never serialised to clients.
    #[serde(skip_serializing, default)]
    pub key_hash: String,
    /// The key's first characters (`sk-sy-AbCd`), so a person can tell keys apart.
    pub key_prefix: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The team it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The user it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The models it may call (configured model names); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Its own limits.
    #[serde(default)]
    pub limits: Limits,
    /// Tags, copied onto each of its spend records.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Operator metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it stops working (Unix ms), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// When it was revoked (Unix ms), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl KeyRecord {
    /// Why the key cannot be used at `now` (Unix ms), if it cannot.
    pub fn unusable(&self, now: i64) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some("expired")
        } else {
            None
        }
    }

    /// Whether it may call the configured model `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// A team: keys belong to it and share its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// Its id, chosen by the operator or generated (`team_...`).
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its limits, shared by all its keys.
    #[serde(default)]
    pub limits: Limits,
    /// The models its keys may call; empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Operator metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When it was created (Unix ms).
    pub created_at: i64,
}

/// A user: keys belong to them and share their limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Their id, chosen by the operator or generated (`user_...`).
    pub id: String,
    /// Their email, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The team they belong to, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Their limits, shared by all their keys.
    #[serde(default)]
    pub limits: Limits,
    /// Operator metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When they were created (Unix ms).
    pub created_at: i64,
}

/// Who a request comes from: its key, and the key's team and user when it has them.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The key.
    pub key: Arc<KeyRecord>,
    /// Its team.
    pub team: Option<Arc<Team>>,
    /// Its user.
    pub user: Option<Arc<User>>,
}

impl Identity {
    /// Whether the key and its team let it call the configured model `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.key.allows_model(model)
            && self.team.as_ref().is_none_or(|t| t.models.is_empty() || t.models.iter().any(|m| m == model))
    }
}

/// What a limit or a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A virtual key, by id.
    Key(String),
    /// A team, by id.
    Team(String),
    /// A user, by id.
    User(String),
    /// A configured model, by name (limits across all clients).
    Model(String),
}

impl Scope {
    /// `key`, `team`, `user` or `model`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Team(_) => "team",
            Self::User(_) => "user",
            Self::Model(_) => "model",
        }
    }

    /// The id or name within its kind.
    pub fn id(&self) -> &str {
        match self {
            Self::Key(id) | Self::Team(id) | Self::User(id) | Self::Model(id) => id,
        }
    }
}

/// One finished request, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRecord {
    /// The gateway's request id (`x-request-id`).
    pub request_id: String,
    /// When the request ended (Unix ms).
    pub at: i64,
    /// The virtual key's id; `None` for the master key or an unauthenticated loopback client.
    pub key_id: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// The key's user.
    pub user_id: Option<String>,
    /// The end user the client named (`user` in the body), for reporting.
    pub end_user: Option<String>,
    /// The configured model the request resolved to, or the name the client sent if none.
    pub model: String,
    /// The deployment that served it (`provider/model` label), when one did.
    pub deployment: Option<String>,
    /// The provider preset of that deployment.
    pub provider: Option<String>,
    /// Tokens by kind.
    pub usage: Usage,
    /// Whether the usage was counted by the gateway (the provider reported none).
    pub usage_estimated: bool,
    /// What it cost, in dollars.
    pub cost_usd: f64,
    /// Whether it was answered from the gateway's cache.
    pub cache_hit: bool,
    /// What a cache hit saved, in dollars.
    pub cost_saved_usd: f64,
    /// From arrival to the end of the answer, in milliseconds.
    pub latency_ms: f64,
    /// For streams, until the first chunk, in milliseconds.
    pub ttft_ms: Option<f64>,
    /// The HTTP status the client received.
    pub status: u16,
    /// The error class, when it failed.
    pub error: Option<String>,
    /// The key's tags.
    pub tags: Vec<String>,
}

/// Time now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

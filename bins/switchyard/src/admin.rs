//! `switchyard keys|teams|users|spend`: the accounting database from the command line.
//!
//! These commands open the gateway's database directly (the configuration's `database.url`, or
//! `--database`), so they work whether or not a gateway is running. A running gateway applies
//! a change within `accounting.key_cache_ttl_ms` (the admin API applies it at once on the
//! replica that served it).

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_accounting::{
    model::{KeyRecord, Limits, Period, now_ms},
    period::{format_utc, parse_utc},
    store::{
        GroupBy, KeyFilter, KeyPatch, NewKey, NewTeam, NewUser, ReportQuery, ReportRow, Store, TeamPatch,
        UserPatch,
    },
};
use switchyard_gateway::config::{Config, DEFAULT_DATABASE_URL};

/// Where the database is.
#[derive(Args)]
pub(crate) struct Database {
    /// The gateway's configuration file, whose `database.url` is used.
    #[arg(long, short, env = "SWITCHYARD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The database URL, instead of the configuration's (sqlite://FILE or postgres://...).
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", global = true)]
    database: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

/// Limits of a key, a team or a user.
#[derive(Args, Default)]
pub(crate) struct LimitArgs {
    /// Budget in US dollars per period.
    #[arg(long, value_name = "USD")]
    budget: Option<f64>,
    /// When the budget starts again: none, daily, weekly or monthly (UTC calendar periods).
    #[arg(long, value_parser = parse_period)]
    period: Option<Period>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens (input and output) per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    max_parallel: Option<u64>,
}

impl LimitArgs {
    fn given(&self) -> bool {
        self.budget.is_some()
            || self.period.is_some()
            || self.rpm.is_some()
            || self.tpm.is_some()
            || self.max_parallel.is_some()
    }

    /// These limits over `base`: each flag given replaces its value.
    fn over(&self, base: Limits) -> Limits {
        Limits {
            budget_usd: self.budget.or(base.budget_usd),
            budget_period: self.period.unwrap_or(base.budget_period),
            rpm: self.rpm.or(base.rpm),
            tpm: self.tpm.or(base.tpm),
            max_parallel: self.max_parallel.or(base.max_parallel),
        }
    }
}

/// `switchyard keys ...`.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a virtual key; its secret is printed once.
    Create {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// List keys (revoked ones with --all).
    List {
        /// Only this team's keys.
        #[arg(long)]
        team: Option<String>,
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
        /// Revoked keys too.
        #[arg(long)]
        all: bool,
    },
    /// Show one key.
    Show {
        /// The key's id (key_...).
        id: String,
    },
    /// Change a key: each option given replaces its value.
    Update {
        /// The key's id (key_...).
        id: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Revoke a key: it stops working (on running gateways within their key cache time).
    Revoke {
        /// The key's id (key_...).
        id: String,
    },
    /// Give a key a new secret, printed once; the old one stops working.
    Rotate {
        /// The key's id (key_...).
        id: String,
    },
}

/// What a key is made of.
#[derive(Args)]
pub(crate) struct KeyArgs {
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// The team it belongs to.
    #[arg(long)]
    team: Option<String>,
    /// The user it belongs to.
    #[arg(long)]
    user: Option<String>,
    /// A model it may call (repeat for several; none: every model).
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// A tag for its spend records (repeat for several).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Expire after this long: 30d, 12h, 90m or 3600s.
    #[arg(long, value_parser = parse_duration_ms)]
    expires_in: Option<i64>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `switchyard teams ...` and `switchyard users ...`.
#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Create one.
    Create {
        /// Its id (generated when not given).
        #[arg(long)]
        id: Option<String>,
        /// A name (teams) or an email (users).
        #[arg(long, alias = "email")]
        name: Option<String>,
        /// Users: the team they belong to.
        #[arg(long)]
        team: Option<String>,
        /// Teams: a model its keys may call (repeat for several; none: every model).
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List them.
    List,
    /// Show one.
    Show {
        /// Its id.
        id: String,
    },
    /// Change its limits.
    Update {
        /// Its id.
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Delete one (refused while keys belong to it).
    Delete {
        /// Its id.
        id: String,
    },
}

/// `switchyard spend`.
#[derive(Args)]
pub(crate) struct SpendArgs {
    /// Group by: key, team, user, end_user, model, deployment, day (comma-separated).
    #[arg(long, default_value = "key")]
    group_by: String,
    /// From this date or time (2026-12-01, 2026-12-01T08:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Until this date or time, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Only this key.
    #[arg(long)]
    key: Option<String>,
    /// Only this team.
    #[arg(long)]
    team: Option<String>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
}

/// What a command printed, or why it failed.
type Outcome = Result<(), String>;

/// Runs `keys`, `teams`, `users` or `spend` on a fresh runtime.
pub(crate) fn run(database: &Database, command: impl AsyncFnOnce(&Store, bool) -> Outcome) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    runtime.block_on(async {
        let url = match database_url(database) {
            Ok(url) => url,
            Err(err) => return fail(&err),
        };
        let store = match Store::connect(&url).await {
            Ok(store) => store,
            Err(err) => return fail(&err.to_string()),
        };
        let outcome = command(&store, database.json).await;
        store.close().await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err),
        }
    })
}

fn database_url(database: &Database) -> Result<String, String> {
    if let Some(url) = &database.database {
        return Ok(url.clone());
    }
    match &database.config {
        Some(path) => Config::load(path).map(|c| c.database_url().to_owned()).map_err(|e| e.to_string()),
        None => Ok(DEFAULT_DATABASE_URL.to_owned()),
    }
}

#[allow(clippy::print_stderr, reason = "a command-line tool reports its failure on stderr")]
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {}", message.trim_end());
    ExitCode::FAILURE
}

#[allow(clippy::print_stdout, reason = "a command-line tool prints its answer")]
fn print(text: &str) {
    println!("{text}");
}

fn json(value: &impl Serialize) -> Outcome {
    serde_json::to_string_pretty(value).map(|text| print(&text)).map_err(|e| e.to_string())
}

// === keys ===

pub(crate) async fn keys(store: &Store, as_json: bool, command: KeysCommand) -> Outcome {
    let err = |e: switchyard_accounting::store::StoreError| e.to_string();
    match command {
        KeysCommand::Create { key } => {
            let new = NewKey {
                name: key.name,
                team_id: key.team,
                user_id: key.user,
                models: key.models,
                limits: key.limits.over(Limits::default()),
                tags: key.tags,
                expires_at: key.expires_in.map(|ms| now_ms().saturating_add(ms)),
                ..NewKey::default()
            };
            let (record, secret) = store.create_key(new).await.map_err(err)?;
            secret_out(&record, &secret, "Created", as_json)
        }
        KeysCommand::List { team, user, all } => {
            let keys = store
                .list_keys(KeyFilter { team_id: team, user_id: user, include_revoked: all })
                .await
                .map_err(err)?;
            if as_json {
                return json(&keys);
            }
            if keys.is_empty() {
                print("No keys. Create one with: switchyard keys create --name NAME");
            }
            for key in &keys {
                print(&key_line(key));
            }
            Ok(())
        }
        KeysCommand::Show { id } => {
            let key = store.key(&id).await.map_err(err)?.ok_or_else(|| no_such("key", &id))?;
            if as_json { json(&key) } else { key_details(&key) }
        }
        KeysCommand::Update { id, key } => {
            let current = store.key(&id).await.map_err(err)?.ok_or_else(|| no_such("key", &id))?;
            let patch = KeyPatch {
                name: key.name.map(Some),
                team_id: key.team.map(Some),
                user_id: key.user.map(Some),
                models: (!key.models.is_empty()).then_some(key.models),
                limits: key.limits.given().then(|| key.limits.over(current.limits.clone())),
                tags: (!key.tags.is_empty()).then_some(key.tags),
                metadata: None,
                expires_at: key.expires_in.map(|ms| Some(now_ms().saturating_add(ms))),
            };
            let record = store.update_key(&id, patch).await.map_err(err)?;
            if as_json { json(&record) } else { key_details(&record) }
        }
        KeysCommand::Revoke { id } => {
            let record = store.revoke_key(&id).await.map_err(err)?;
            if as_json {
                return json(&record);
            }
            print(&format!(
                "Revoked {} ({}...). Running gateways refuse it within their key cache time (accounting.key_cache_ttl_ms).",
                record.id, record.key_prefix
            ));
            Ok(())
        }
        KeysCommand::Rotate { id } => {
            let (record, secret) = store.rotate_key(&id).await.map_err(err)?;
            secret_out(&record, &secret, "Rotated", as_json)
        }
    }
}

fn secret_out(record: &KeyRecord, secret: &str, did: &str, as_json: bool) -> Outcome {
    if as_json {
        #[derive(Serialize)]
        struct WithSecret<'a> {
            key: &'a str,
            #[serde(flatten)]
            record: &'a KeyRecord,
        }
        return json(&WithSecret { key: secret, record });
    }
    print(&format!(
        "{did} {}{}.",
        record.id,
        record.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
    ));
    print(&format!("\n    {secret}\n"));
    print(
        "This is the only time the secret is shown: store it now. Clients send it as `Authorization: Bearer <secret>`.",
    );
    Ok(())
}

fn key_line(key: &KeyRecord) -> String {
    let state = match key.unusable(now_ms()) {
        Some(why) => format!(" [{why}]"),
        None => String::new(),
    };
    let name = key.name.as_deref().unwrap_or("-");
    let team = key.team_id.as_deref().unwrap_or("-");
    format!("{}  {}...  {name}  team {team}  {}{state}", key.id, key.key_prefix, limits_text(&key.limits))
}

fn key_details(key: &KeyRecord) -> Outcome {
    print(&key_line(key));
    let models = if key.models.is_empty() { "every model".to_owned() } else { key.models.join(", ") };
    print(&format!("  models: {models}"));
    if let Some(user) = &key.user_id {
        print(&format!("  user: {user}"));
    }
    if !key.tags.is_empty() {
        print(&format!("  tags: {}", key.tags.join(", ")));
    }
    print(&format!("  created: {}", format_utc(key.created_at)));
    if let Some(at) = key.expires_at {
        print(&format!("  expires: {}", format_utc(at)));
    }
    if let Some(at) = key.revoked_at {
        print(&format!("  revoked: {}", format_utc(at)));
    }
    Ok(())
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(usd) = limits.budget_usd {
        let per = match limits.budget_period {
            Period::None => String::new(),
            period => format!(" {}", period.as_str()),
        };
        parts.push(format!("budget ${usd:.2}{per}"));
    }
    if let Some(rpm) = limits.rpm {
        parts.push(format!("{rpm} rpm"));
    }
    if let Some(tpm) = limits.tpm {
        parts.push(format!("{tpm} tpm"));
    }
    if let Some(n) = limits.max_parallel {
        parts.push(format!("{n} in flight"));
    }
    if parts.is_empty() { "no limits".to_owned() } else { parts.join(", ") }
}

fn no_such(kind: &str, id: &str) -> String {
    format!("there is no {kind} with id `{id}`; `switchyard {kind}s list` shows which exist")
}

// === teams and users ===

pub(crate) async fn teams(store: &Store, as_json: bool, command: GroupCommand) -> Outcome {
    let err = |e: switchyard_accounting::store::StoreError| e.to_string();
    match command {
        GroupCommand::Create { id, name, team: _, models, limits } => {
            let team = store
                .create_team(NewTeam {
                    id,
                    name,
                    limits: limits.over(Limits::default()),
                    models,
                    ..NewTeam::default()
                })
                .await
                .map_err(err)?;
            if as_json {
                json(&team)
            } else {
                done(&format!("Created team {}: {}", team.id, limits_text(&team.limits)))
            }
        }
        GroupCommand::List => {
            let teams = store.list_teams().await.map_err(err)?;
            if as_json {
                return json(&teams);
            }
            for team in &teams {
                print(&format!(
                    "{}  {}  {}",
                    team.id,
                    team.name.as_deref().unwrap_or("-"),
                    limits_text(&team.limits)
                ));
            }
            Ok(())
        }
        GroupCommand::Show { id } => {
            let team = store.team(&id).await.map_err(err)?.ok_or_else(|| no_such("team", &id))?;
            json(&team)
        }
        GroupCommand::Update { id, limits } => {
            let current = store.team(&id).await.map_err(err)?.ok_or_else(|| no_such("team", &id))?;
            let patch = TeamPatch { limits: Some(limits.over(current.limits)), ..TeamPatch::default() };
            let team = store.update_team(&id, patch).await.map_err(err)?;
            if as_json {
                json(&team)
            } else {
                done(&format!("Team {}: {}", team.id, limits_text(&team.limits)))
            }
        }
        GroupCommand::Delete { id } => {
            store.delete_team(&id).await.map_err(err)?;
            done(&format!("Deleted team {id}."))
        }
    }
}

pub(crate) async fn users(store: &Store, as_json: bool, command: GroupCommand) -> Outcome {
    let err = |e: switchyard_accounting::store::StoreError| e.to_string();
    match command {
        GroupCommand::Create { id, name, team, models: _, limits } => {
            let user = store
                .create_user(NewUser {
                    id,
                    email: name,
                    team_id: team,
                    limits: limits.over(Limits::default()),
                    ..NewUser::default()
                })
                .await
                .map_err(err)?;
            if as_json {
                json(&user)
            } else {
                done(&format!("Created user {}: {}", user.id, limits_text(&user.limits)))
            }
        }
        GroupCommand::List => {
            let users = store.list_users().await.map_err(err)?;
            if as_json {
                return json(&users);
            }
            for user in &users {
                print(&format!(
                    "{}  {}  team {}  {}",
                    user.id,
                    user.email.as_deref().unwrap_or("-"),
                    user.team_id.as_deref().unwrap_or("-"),
                    limits_text(&user.limits)
                ));
            }
            Ok(())
        }
        GroupCommand::Show { id } => {
            let user = store.user(&id).await.map_err(err)?.ok_or_else(|| no_such("user", &id))?;
            json(&user)
        }
        GroupCommand::Update { id, limits } => {
            let current = store.user(&id).await.map_err(err)?.ok_or_else(|| no_such("user", &id))?;
            let patch = UserPatch { limits: Some(limits.over(current.limits)), ..UserPatch::default() };
            let user = store.update_user(&id, patch).await.map_err(err)?;
            if as_json {
                json(&user)
            } else {
                done(&format!("User {}: {}", user.id, limits_text(&user.limits)))
            }
        }
        GroupCommand::Delete { id } => {
            store.delete_user(&id).await.map_err(err)?;
            done(&format!("Deleted user {id}."))
        }
    }
}

fn done(message: &str) -> Outcome {
    print(message);
    Ok(())
}

// === spend ===

pub(crate) async fn spend(store: &Store, as_json: bool, args: SpendArgs) -> Outcome {
    let time = |name: &str, value: Option<String>| -> Result<Option<i64>, String> {
        value
            .map(|v| {
                parse_utc(&v).ok_or_else(|| {
                    format!(
                        "--{name} must be a date (2026-12-01) or a UTC time (2026-12-01T08:00:00Z); got `{v}`"
                    )
                })
            })
            .transpose()
    };
    let group_by = args
        .group_by
        .split(',')
        .map(|g| {
            GroupBy::parse(g.trim()).ok_or_else(|| {
                format!("--group-by takes key, team, user, end_user, model, deployment and day; `{g}` is none of them")
            })
        })
        .collect::<Result<Vec<GroupBy>, String>>()?;
    let query = ReportQuery {
        from_ms: time("from", args.from)?,
        to_ms: time("to", args.to)?,
        group_by,
        key_id: args.key,
        team_id: args.team,
        user_id: args.user,
        model: args.model,
    };
    let rows = store.spend_report(query).await.map_err(|e| e.to_string())?;
    if as_json {
        return json(&rows);
    }
    spend_table(&rows);
    Ok(())
}

fn spend_table(rows: &[ReportRow]) {
    if rows.is_empty() {
        print("No spend recorded in that range.");
        return;
    }
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    for row in rows {
        let group: Vec<String> =
            row.group.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("-"))).collect();
        print(&format!(
            "{:<50} {:>8} req {:>10} in {:>10} out  ${:.6}",
            group.join(" "),
            row.requests,
            row.input_tokens,
            row.output_tokens,
            row.cost_usd
        ));
    }
    print(&format!("total: {requests} requests, ${total:.6}"));
}

// === argument parsers ===

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).ok_or_else(|| format!("`{text}` is not a period: none, daily, weekly or monthly"))
}

/// `30d`, `12h`, `90m` or `3600s`, in milliseconds.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration such as 30d, 12h, 90m or 3600s");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_periods_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_duration_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration_ms("90m"), Ok(5_400_000));
        assert!(parse_duration_ms("5w").unwrap_err().contains("30d"));
        assert!(parse_duration_ms("0s").is_err());
        assert_eq!(parse_period("monthly"), Ok(Period::Monthly));
        assert!(parse_period("yearly").unwrap_err().contains("monthly"));
    }

    #[test]
    fn limits_given_replace_only_their_own_values() {
        let base = Limits { rpm: Some(10), tpm: Some(1000), ..Limits::default() };
        let args = LimitArgs { rpm: Some(20), ..LimitArgs::default() };
        let out = args.over(base);
        assert_eq!((out.rpm, out.tpm), (Some(20), Some(1000)));
        assert_eq!(limits_text(&out), "20 rpm, 1000 tpm");
    }
}

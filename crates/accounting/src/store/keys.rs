//! Virtual keys in the store: create, find, list, update, revoke and rotate.

use serde::{Deserialize, Deserializer, Serialize};
use sqlx::{Row, any::AnyRow, error::ErrorKind};

use super::{Store, StoreError, check_limits, new_id, to_json, violated};
use crate::{
    keys,
    model::{KeyRecord, Limits, Metadata, now_ms},
};

/// The columns of `keys` that make a [`KeyRecord`], in [`Store::key_from_row`]'s order.
const KEY_COLUMNS: &str = "id, key_hash, key_prefix, name, team_id, user_id, models, limits, tags, metadata, created_at, expires_at, revoked_at";

/// What a new key is made of; everything is optional (an unnamed, unlimited key for any model).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// The team it belongs to; it must exist.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The user it belongs to; they must exist.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The models it may call; empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Its own limits.
    #[serde(default)]
    pub limits: Limits,
    /// Tags, copied onto its spend records.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Operator metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When it stops working (Unix ms).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Which keys [`Store::list_keys`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Only this team's keys.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Only this user's keys.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Revoked keys too.
    #[serde(default)]
    pub include_revoked: bool,
}

/// A change to a key: each field that is `Some` replaces the stored value; `None` leaves it.
///
/// The fields a key may lack (`name`, `team_id`, `user_id`, `expires_at`) are `Option<Option<_>>`
/// so that a patch can also clear them: `Some(None)` (JSON `null`) clears, an absent field
/// leaves it. Clearing `team_id` is how a key leaves a team, which a team must be rid of before
/// it can be deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    /// A new name, or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    /// Another team (which must exist), or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub team_id: Option<Option<String>>,
    /// Another user (who must exist), or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Option<String>>,
    /// The models it may call; empty: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Its limits, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Its metadata, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// A new expiry (Unix ms), or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<i64>>,
}

/// Reads a present field (even `null`) as `Some`, so that `null` clears and absence leaves.
pub(super) fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// === impl Store ===

impl Store {
    /// Creates a key and returns it with its secret. The secret is shown this once: only its
    /// hash is stored. A `team_id` or `user_id` that does not exist is [`StoreError::NotFound`].
    pub async fn create_key(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError> {
        check_limits(&new.limits)?;
        let secret = keys::generate();
        let record = KeyRecord {
            id: new_id("key"),
            key_hash: secret.hash,
            key_prefix: secret.prefix,
            name: new.name,
            team_id: new.team_id,
            user_id: new.user_id,
            models: new.models,
            limits: new.limits,
            tags: new.tags,
            metadata: new.metadata,
            created_at: now_ms(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let result = sqlx::query(
            "INSERT INTO keys (id, key_hash, key_prefix, name, team_id, user_id, models, limits, tags, \
             metadata, created_at, expires_at, revoked_at, rotated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL)",
        )
        .bind(&record.id)
        .bind(&record.key_hash)
        .bind(&record.key_prefix)
        .bind(&record.name)
        .bind(&record.team_id)
        .bind(&record.user_id)
        .bind(to_json(&record.models))
        .bind(to_json(&record.limits))
        .bind(to_json(&record.tags))
        .bind(to_json(&record.metadata))
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok((record, secret.secret)),
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                Err(self.missing_owner(record.team_id.as_deref(), record.user_id.as_deref(), err).await)
            }
            Err(err) => Err(self.db_err("create a key")(err)),
        }
    }

    /// The key with this id.
    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1");
        let row =
            sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.map_err(self.db_err("read a key"))?;
        row.map(|row| self.key_from_row(&row)).transpose()
    }

    /// The key whose secret hashes to `hash` ([`keys::hash`]), revoked or expired ones included
    /// (the caller asks [`KeyRecord::unusable`]). A rotated key's old hash finds nothing.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db_err("look up a key"))?;
        row.map(|row| self.key_from_row(&row)).transpose()
    }

    /// The keys that match `filter`, oldest first.
    pub async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        let mut sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE 1 = 1");
        let mut n = 0;
        if filter.team_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND team_id = ${n}"));
        }
        if filter.user_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND user_id = ${n}"));
        }
        if !filter.include_revoked {
            sql.push_str(" AND revoked_at IS NULL");
        }
        sql.push_str(" ORDER BY created_at, id");
        let mut query = sqlx::query(&sql);
        if let Some(team) = &filter.team_id {
            query = query.bind(team);
        }
        if let Some(user) = &filter.user_id {
            query = query.bind(user);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(self.db_err("list keys"))?;
        rows.iter().map(|row| self.key_from_row(row)).collect()
    }

    /// Applies `patch` to the key `id` and returns the key as it now is.
    pub async fn update_key(&self, id: &str, patch: KeyPatch) -> Result<KeyRecord, StoreError> {
        if let Some(limits) = &patch.limits {
            check_limits(limits)?;
        }
        let mut sets: Vec<(&'static str, Value)> = Vec::new();
        if let Some(name) = &patch.name {
            sets.push(("name", Value::Text(name.clone())));
        }
        if let Some(team) = &patch.team_id {
            sets.push(("team_id", Value::Text(team.clone())));
        }
        if let Some(user) = &patch.user_id {
            sets.push(("user_id", Value::Text(user.clone())));
        }
        if let Some(models) = &patch.models {
            sets.push(("models", Value::Text(Some(to_json(models)))));
        }
        if let Some(limits) = &patch.limits {
            sets.push(("limits", Value::Text(Some(to_json(limits)))));
        }
        if let Some(tags) = &patch.tags {
            sets.push(("tags", Value::Text(Some(to_json(tags)))));
        }
        if let Some(metadata) = &patch.metadata {
            sets.push(("metadata", Value::Text(Some(to_json(metadata)))));
        }
        if let Some(expires_at) = patch.expires_at {
            sets.push(("expires_at", Value::Int(expires_at)));
        }
        if sets.is_empty() {
            return self.key(id).await?.ok_or_else(|| not_found("key", id));
        }
        match self.update_row("keys", KEY_COLUMNS, id, sets).await {
            Ok(Some(row)) => self.key_from_row(&row),
            Ok(None) => Err(not_found("key", id)),
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                let team = patch.team_id.as_ref().and_then(Option::as_deref);
                let user = patch.user_id.as_ref().and_then(Option::as_deref);
                Err(self.missing_owner(team, user, err).await)
            }
            Err(err) => Err(self.db_err("update a key")(err)),
        }
    }

    /// Revokes the key `id`: it stops working (once caches expire) and is listed only with
    /// [`KeyFilter::include_revoked`]. Revoking a revoked key keeps its first revocation time.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let sql = format!(
            "UPDATE keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(now_ms())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db_err("revoke a key"))?;
        row.map(|row| self.key_from_row(&row)).transpose()?.ok_or_else(|| not_found("key", id))
    }

    /// Gives the key `id` a new secret, returned this once. The id, limits and spend history stay;
    /// the old secret stops matching at once (its hash is overwritten). A revoked key cannot be
    /// rotated ([`StoreError::Conflict`]): create a new one.
    pub async fn rotate_key(&self, id: &str) -> Result<(KeyRecord, String), StoreError> {
        let secret = keys::generate();
        let sql = format!(
            "UPDATE keys SET key_hash = $1, key_prefix = $2, rotated_at = $3 \
             WHERE id = $4 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&secret.hash)
            .bind(&secret.prefix)
            .bind(now_ms())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db_err("rotate a key"))?;
        match row {
            Some(row) => Ok((self.key_from_row(&row)?, secret.secret)),
            None => match self.key(id).await? {
                Some(_) => Err(StoreError::Conflict {
                    kind: "key",
                    id: id.to_owned(),
                    reason: "is revoked and cannot be rotated; create a new key instead".to_owned(),
                }),
                None => Err(not_found("key", id)),
            },
        }
    }

    pub(super) fn key_from_row(&self, row: &AnyRow) -> Result<KeyRecord, StoreError> {
        let get = |e| self.db_err("read a key")(e);
        let id: String = row.try_get(0).map_err(get)?;
        let models: String = row.try_get(6).map_err(get)?;
        let limits: String = row.try_get(7).map_err(get)?;
        let tags: String = row.try_get(8).map_err(get)?;
        let metadata: String = row.try_get(9).map_err(get)?;
        Ok(KeyRecord {
            key_hash: row.try_get(1).map_err(get)?,
            key_prefix: row.try_get(2).map_err(get)?,
            name: row.try_get(3).map_err(get)?,
            team_id: row.try_get(4).map_err(get)?,
            user_id: row.try_get(5).map_err(get)?,
            models: self.parse_json("key", &id, "models", &models)?,
            limits: self.parse_json("key", &id, "limits", &limits)?,
            tags: self.parse_json("key", &id, "tags", &tags)?,
            metadata: self.parse_json("key", &id, "metadata", &metadata)?,
            created_at: row.try_get(10).map_err(get)?,
            expires_at: row.try_get(11).map_err(get)?,
            revoked_at: row.try_get(12).map_err(get)?,
            id,
        })
    }

    /// After a foreign-key violation (which does not say which reference broke), finds the team
    /// or user that does not exist.
    pub(super) async fn missing_owner(
        &self,
        team: Option<&str>,
        user: Option<&str>,
        err: sqlx::Error,
    ) -> StoreError {
        if let Some(team) = team {
            match self.team(team).await {
                Ok(None) => return not_found("team", team),
                Err(other) => return other,
                Ok(Some(_)) => {}
            }
        }
        if let Some(user) = user {
            match self.user(user).await {
                Ok(None) => return not_found("user", user),
                Err(other) => return other,
                Ok(Some(_)) => {}
            }
        }
        // The owner was deleted and re-created in between, or something else broke: report it.
        self.db_err("check a key's team and user")(err)
    }
}

/// A value bound into a dynamically built statement.
pub(super) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

pub(super) fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound { kind, id: id.to_owned() }
}

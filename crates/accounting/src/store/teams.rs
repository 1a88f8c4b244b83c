//! Teams and users in the store: create, read, list, update and delete.

use serde::{Deserialize, Serialize};
use sqlx::{Row, any::AnyRow, error::ErrorKind};

use super::{
    Store, StoreError, check_limits,
    keys::{Value, not_found, some},
    new_id, to_json, violated,
};
use crate::model::{Limits, Metadata, Team, User, now_ms};

const TEAM_COLUMNS: &str = "id, name, limits, models, metadata, created_at";
const USER_COLUMNS: &str = "id, email, team_id, limits, metadata, created_at";

/// What a new team is made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Its id; `None` generates `team_` and 16 random characters. A taken id is a conflict.
    #[serde(default)]
    pub id: Option<String>,
    /// A name for people.
    #[serde(default)]
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
}

/// A change to a team: each `Some` field replaces the stored value (`name: Some(None)` clears it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    /// A new name, or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    /// Its limits, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The models its keys may call; empty: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Its metadata, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// What a new user is made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Their id; `None` generates `user_` and 16 random characters. A taken id is a conflict.
    #[serde(default)]
    pub id: Option<String>,
    /// Their email.
    #[serde(default)]
    pub email: Option<String>,
    /// Their team, which must exist.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Their limits, shared by all their keys.
    #[serde(default)]
    pub limits: Limits,
    /// Operator metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

/// A change to a user: each `Some` field replaces the stored value (`Some(None)` clears it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new email, or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
    /// Another team (which must exist), or none.
    #[serde(default, deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub team_id: Option<Option<String>>,
    /// Their limits, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Their metadata, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

// === impl Store ===

impl Store {
    /// Creates a team. An id that is taken is [`StoreError::Conflict`].
    pub async fn create_team(&self, new: NewTeam) -> Result<Team, StoreError> {
        check_limits(&new.limits)?;
        let team = Team {
            id: new.id.unwrap_or_else(|| new_id("team")),
            name: new.name,
            limits: new.limits,
            models: new.models,
            metadata: new.metadata,
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO teams (id, name, limits, models, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&team.id)
        .bind(&team.name)
        .bind(to_json(&team.limits))
        .bind(to_json(&team.models))
        .bind(to_json(&team.metadata))
        .bind(team.created_at)
        .execute(&self.pool)
        .await
        .map_err(|err| self.taken_or(err, "team", &team.id, "create a team"))?;
        Ok(team)
    }

    /// The team with this id.
    pub async fn team(&self, id: &str) -> Result<Option<Team>, StoreError> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db_err("read a team"))?;
        row.map(|row| self.team_from_row(&row)).transpose()
    }

    /// Every team, by id.
    pub async fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(self.db_err("list teams"))?;
        rows.iter().map(|row| self.team_from_row(row)).collect()
    }

    /// Applies `patch` to the team `id` and returns the team as it now is.
    pub async fn update_team(&self, id: &str, patch: TeamPatch) -> Result<Team, StoreError> {
        if let Some(limits) = &patch.limits {
            check_limits(limits)?;
        }
        let mut sets: Vec<(&'static str, Value)> = Vec::new();
        if let Some(name) = patch.name {
            sets.push(("name", Value::Text(name)));
        }
        if let Some(limits) = &patch.limits {
            sets.push(("limits", Value::Text(Some(to_json(limits)))));
        }
        if let Some(models) = &patch.models {
            sets.push(("models", Value::Text(Some(to_json(models)))));
        }
        if let Some(metadata) = &patch.metadata {
            sets.push(("metadata", Value::Text(Some(to_json(metadata)))));
        }
        if sets.is_empty() {
            return self.team(id).await?.ok_or_else(|| not_found("team", id));
        }
        let row =
            self.update_row("teams", TEAM_COLUMNS, id, sets).await.map_err(self.db_err("update a team"))?;
        row.map(|row| self.team_from_row(&row)).transpose()?.ok_or_else(|| not_found("team", id))
    }

    /// Deletes the team `id`. Refused ([`StoreError::Conflict`]) while keys or users (revoked
    /// keys included: their spend history names the team) still belong to it.
    pub async fn delete_team(&self, id: &str) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM teams WHERE id = $1").bind(id).execute(&self.pool).await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Err(not_found("team", id)),
            Ok(_) => Ok(()),
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                let keys = self.count("SELECT COUNT(*) FROM keys WHERE team_id = $1", id).await?;
                let users = self.count("SELECT COUNT(*) FROM users WHERE team_id = $1", id).await?;
                Err(StoreError::Conflict {
                    kind: "team",
                    id: id.to_owned(),
                    reason: format!(
                        "still has {keys} key(s) and {users} user(s); move them to another team or clear \
                         their team (update_key / update_user with team_id null) before deleting it"
                    ),
                })
            }
            Err(err) => Err(self.db_err("delete a team")(err)),
        }
    }

    /// Creates a user. An id that is taken is [`StoreError::Conflict`]; a team that does not
    /// exist is [`StoreError::NotFound`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        check_limits(&new.limits)?;
        let user = User {
            id: new.id.unwrap_or_else(|| new_id("user")),
            email: new.email,
            team_id: new.team_id,
            limits: new.limits,
            metadata: new.metadata,
            created_at: now_ms(),
        };
        let result = sqlx::query(
            "INSERT INTO users (id, email, team_id, limits, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.team_id)
        .bind(to_json(&user.limits))
        .bind(to_json(&user.metadata))
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(user),
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                Err(self.missing_owner(user.team_id.as_deref(), None, err).await)
            }
            Err(err) => Err(self.taken_or(err, "user", &user.id, "create a user")),
        }
    }

    /// The user with this id.
    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db_err("read a user"))?;
        row.map(|row| self.user_from_row(&row)).transpose()
    }

    /// Every user, by id.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(self.db_err("list users"))?;
        rows.iter().map(|row| self.user_from_row(row)).collect()
    }

    /// Applies `patch` to the user `id` and returns the user as they now are.
    pub async fn update_user(&self, id: &str, patch: UserPatch) -> Result<User, StoreError> {
        if let Some(limits) = &patch.limits {
            check_limits(limits)?;
        }
        let team = patch.team_id.clone().flatten();
        let mut sets: Vec<(&'static str, Value)> = Vec::new();
        if let Some(email) = patch.email {
            sets.push(("email", Value::Text(email)));
        }
        if let Some(team_id) = patch.team_id {
            sets.push(("team_id", Value::Text(team_id)));
        }
        if let Some(limits) = &patch.limits {
            sets.push(("limits", Value::Text(Some(to_json(limits)))));
        }
        if let Some(metadata) = &patch.metadata {
            sets.push(("metadata", Value::Text(Some(to_json(metadata)))));
        }
        if sets.is_empty() {
            return self.user(id).await?.ok_or_else(|| not_found("user", id));
        }
        match self.update_row("users", USER_COLUMNS, id, sets).await {
            Ok(row) => {
                row.map(|row| self.user_from_row(&row)).transpose()?.ok_or_else(|| not_found("user", id))
            }
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                Err(self.missing_owner(team.as_deref(), None, err).await)
            }
            Err(err) => Err(self.db_err("update a user")(err)),
        }
    }

    /// Deletes the user `id`. Refused ([`StoreError::Conflict`]) while keys still belong to them.
    pub async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&self.pool).await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Err(not_found("user", id)),
            Ok(_) => Ok(()),
            Err(err) if violated(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                let keys = self.count("SELECT COUNT(*) FROM keys WHERE user_id = $1", id).await?;
                Err(StoreError::Conflict {
                    kind: "user",
                    id: id.to_owned(),
                    reason: format!(
                        "still has {keys} key(s); move them to another user or clear their user \
                         (update_key with user_id null) before deleting them"
                    ),
                })
            }
            Err(err) => Err(self.db_err("delete a user")(err)),
        }
    }

    /// `UPDATE table SET ... WHERE id = ... RETURNING columns`.
    pub(super) async fn update_row(
        &self,
        table: &'static str,
        columns: &'static str,
        id: &str,
        sets: Vec<(&'static str, Value)>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        let assignments: Vec<String> =
            sets.iter().enumerate().map(|(i, (column, _))| format!("{column} = ${}", i + 1)).collect();
        let sql = format!(
            "UPDATE {table} SET {} WHERE id = ${} RETURNING {columns}",
            assignments.join(", "),
            sets.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for (_, value) in sets {
            query = match value {
                Value::Text(text) => query.bind(text),
                Value::Int(int) => query.bind(int),
            };
        }
        query.bind(id).fetch_optional(&self.pool).await
    }

    async fn count(&self, sql: &'static str, id: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(sql).bind(id).fetch_one(&self.pool).await.map_err(self.db_err("count references"))
    }

    /// A unique violation as a conflict on `id`; anything else as a database error.
    fn taken_or(&self, err: sqlx::Error, kind: &'static str, id: &str, action: &'static str) -> StoreError {
        if violated(&err) == Some(ErrorKind::UniqueViolation) {
            StoreError::Conflict {
                kind,
                id: id.to_owned(),
                reason: format!("already exists; choose another id or update the existing {kind}"),
            }
        } else {
            self.db_err(action)(err)
        }
    }

    fn team_from_row(&self, row: &AnyRow) -> Result<Team, StoreError> {
        let get = |e| self.db_err("read a team")(e);
        let id: String = row.try_get(0).map_err(get)?;
        let limits: String = row.try_get(2).map_err(get)?;
        let models: String = row.try_get(3).map_err(get)?;
        let metadata: String = row.try_get(4).map_err(get)?;
        Ok(Team {
            name: row.try_get(1).map_err(get)?,
            limits: self.parse_json("team", &id, "limits", &limits)?,
            models: self.parse_json("team", &id, "models", &models)?,
            metadata: self.parse_json("team", &id, "metadata", &metadata)?,
            created_at: row.try_get(5).map_err(get)?,
            id,
        })
    }

    fn user_from_row(&self, row: &AnyRow) -> Result<User, StoreError> {
        let get = |e| self.db_err("read a user")(e);
        let id: String = row.try_get(0).map_err(get)?;
        let limits: String = row.try_get(3).map_err(get)?;
        let metadata: String = row.try_get(4).map_err(get)?;
        Ok(User {
            email: row.try_get(1).map_err(get)?,
            team_id: row.try_get(2).map_err(get)?,
            limits: self.parse_json("user", &id, "limits", &limits)?,
            metadata: self.parse_json("user", &id, "metadata", &metadata)?,
            created_at: row.try_get(5).map_err(get)?,
            id,
        })
    }
}

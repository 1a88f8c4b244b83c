//! The SQL store on every backend: migrations, keys, teams, users, spend sums and reports.
//!
//! Each test runs the same body on a SQLite file, SQLite in memory and (when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set) PostgreSQL. PostgreSQL is shared with other tests and
//! runs, so every id is unique to the run and every assertion filters by it.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use common::{TempDb, backends, postgres_url, record, unique};
use switchyard_accounting::{
    keys,
    model::{Limits, Nanos, Period, Scope, to_nanos, to_usd},
    store::{
        Backend, GroupBy, KeyFilter, KeyPatch, NewKey, NewTeam, NewUser, ReportQuery, Store, StoreError,
        TeamPatch, UserPatch,
    },
};

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_reconnecting() {
    let file = TempDb::new("migrations");
    let mut urls = vec![file.url()];
    urls.extend(postgres_url("migrations_are_idempotent_and_data_survives_reconnecting"));
    for url in urls {
        let first = Store::connect(&url).await.unwrap();
        let team = first.create_team(NewTeam { name: Some("t".into()), ..NewTeam::default() }).await.unwrap();
        first.close().await;
        // Connecting again runs the migrator again: it must find everything applied.
        let second = Store::connect(&url).await.unwrap();
        let third = Store::connect(&url).await.unwrap();
        assert_eq!(second.team(&team.id).await.unwrap(), Some(team.clone()), "{url}");
        assert_eq!(third.team(&team.id).await.unwrap(), Some(team), "{url}");
        let expected = if url.starts_with("sqlite") { Backend::Sqlite } else { Backend::Postgres };
        assert_eq!(second.backend(), expected);
    }
}

#[tokio::test]
async fn sqlite_memory_keeps_its_data_while_open() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let team = store.create_team(NewTeam::default()).await.unwrap();
    // Many operations, some concurrent: with more than one connection, or one that is closed
    // when idle, an in-memory database would vanish or split.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let id = team.id.clone();
        tasks.push(tokio::spawn(async move { store.team(&id).await.unwrap().is_some() }));
    }
    for task in tasks {
        assert!(task.await.unwrap());
    }
}

#[tokio::test]
async fn key_lifecycle() {
    let (stores, _file) = backends("key_lifecycle").await;
    for (backend, store) in stores {
        let limits = Limits {
            budget_usd: Some(12.5),
            budget_period: Period::Monthly,
            rpm: Some(60),
            ..Limits::default()
        };
        let metadata = BTreeMap::from([("owner".to_owned(), serde_json::json!({"name": "ci", "n": 3}))]);
        let new = NewKey {
            name: Some("ci key".into()),
            models: vec!["gpt-4o".into(), "claude".into()],
            limits: limits.clone(),
            tags: vec!["ci".into()],
            metadata: metadata.clone(),
            expires_at: Some(4_102_444_800_000),
            ..NewKey::default()
        };
        let (created, secret) = store.create_key(new).await.unwrap();
        assert!(keys::is_virtual_key(&secret), "{backend}");
        assert!(created.id.starts_with("key_") && created.id.len() == 20, "{backend}: {}", created.id);
        assert_eq!(created.key_prefix, &secret[..10]);
        assert_eq!(created.key_hash, keys::hash(&secret));
        assert_eq!(created.limits, limits);
        assert_eq!(created.metadata, metadata);

        // Found by the hash of its secret, exactly as created.
        let found = store.key_by_hash(&keys::hash(&secret)).await.unwrap();
        assert_eq!(found.as_ref(), Some(&created), "{backend}");
        assert_eq!(store.key(&created.id).await.unwrap().as_ref(), Some(&created), "{backend}");
        assert_eq!(store.key_by_hash(&keys::hash("sk-sy-nope")).await.unwrap(), None);

        // Rotation: same id, limits and metadata; the old secret stops matching at once.
        let (rotated, new_secret) = store.rotate_key(&created.id).await.unwrap();
        assert_ne!(new_secret, secret);
        assert_eq!(rotated.id, created.id);
        assert_eq!(rotated.limits, created.limits);
        assert_eq!(rotated.created_at, created.created_at);
        assert_eq!(
            store.key_by_hash(&keys::hash(&secret)).await.unwrap(),
            None,
            "{backend}: old secret still works"
        );
        assert_eq!(
            store.key_by_hash(&keys::hash(&new_secret)).await.unwrap().map(|k| k.id),
            Some(created.id.clone())
        );

        // Revocation: twice is fine and keeps the first time; listed only with include_revoked.
        let revoked = store.revoke_key(&created.id).await.unwrap();
        let first_revocation = revoked.revoked_at.expect("revoked_at set");
        assert_eq!(revoked.unusable(first_revocation), Some("revoked"));
        let again = store.revoke_key(&created.id).await.unwrap();
        assert_eq!(again.revoked_at, Some(first_revocation));
        let active = store.list_keys(KeyFilter::default()).await.unwrap();
        assert!(!active.iter().any(|k| k.id == created.id), "{backend}: revoked key listed");
        let all = store.list_keys(KeyFilter { include_revoked: true, ..KeyFilter::default() }).await.unwrap();
        assert!(
            all.iter().any(|k| k.id == created.id),
            "{backend}: revoked key missing with include_revoked"
        );

        // A revoked key cannot be rotated; unknown ids are NotFound.
        assert!(matches!(store.rotate_key(&created.id).await, Err(StoreError::Conflict { kind: "key", .. })));
        assert!(matches!(
            store.rotate_key("key_missing").await,
            Err(StoreError::NotFound { kind: "key", .. })
        ));
        assert!(matches!(
            store.revoke_key("key_missing").await,
            Err(StoreError::NotFound { kind: "key", .. })
        ));
        assert_eq!(store.key("key_missing").await.unwrap(), None);
    }
}

#[tokio::test]
async fn keys_belong_to_teams_and_users_and_can_be_patched() {
    let (stores, _file) = backends("keys_belong_to_teams_and_users").await;
    for (backend, store) in stores {
        let team = store.create_team(NewTeam::default()).await.unwrap();
        let other = store.create_team(NewTeam::default()).await.unwrap();
        let user = store
            .create_user(NewUser { team_id: Some(team.id.clone()), ..NewUser::default() })
            .await
            .unwrap();

        // References that do not exist are NotFound, naming what is missing.
        let missing_team = NewKey { team_id: Some(format!("team_{}", unique())), ..NewKey::default() };
        match store.create_key(missing_team.clone()).await {
            Err(StoreError::NotFound { kind: "team", id }) => assert_eq!(Some(id), missing_team.team_id),
            other => panic!("{backend}: {other:?}"),
        }
        let missing_user = NewKey {
            team_id: Some(team.id.clone()),
            user_id: Some("user_nobody".into()),
            ..NewKey::default()
        };
        assert!(
            matches!(store.create_key(missing_user).await, Err(StoreError::NotFound { kind: "user", .. })),
            "{backend}"
        );

        let (a, _) = store
            .create_key(NewKey {
                team_id: Some(team.id.clone()),
                user_id: Some(user.id.clone()),
                ..NewKey::default()
            })
            .await
            .unwrap();
        let (b, _) =
            store.create_key(NewKey { team_id: Some(team.id.clone()), ..NewKey::default() }).await.unwrap();
        let (c, _) =
            store.create_key(NewKey { team_id: Some(other.id.clone()), ..NewKey::default() }).await.unwrap();

        let ids = |keys: Vec<switchyard_accounting::model::KeyRecord>| {
            keys.into_iter().map(|k| k.id).collect::<Vec<_>>()
        };
        let by_team = store
            .list_keys(KeyFilter { team_id: Some(team.id.clone()), ..KeyFilter::default() })
            .await
            .unwrap();
        let mut expected = vec![a.id.clone(), b.id.clone()];
        let mut got = ids(by_team);
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{backend}");
        let by_user = store
            .list_keys(KeyFilter { user_id: Some(user.id.clone()), ..KeyFilter::default() })
            .await
            .unwrap();
        assert_eq!(ids(by_user), vec![a.id.clone()]);
        let both = KeyFilter {
            team_id: Some(other.id.clone()),
            user_id: Some(user.id.clone()),
            include_revoked: true,
        };
        assert!(store.list_keys(both).await.unwrap().is_empty());

        // Patches: Some replaces, Some(None) clears, absent leaves.
        let patched = store
            .update_key(
                &c.id,
                KeyPatch {
                    name: Some(Some("renamed".into())),
                    team_id: Some(Some(team.id.clone())),
                    models: Some(vec!["m".into()]),
                    limits: Some(Limits { tpm: Some(1000), ..Limits::default() }),
                    tags: Some(vec!["x".into(), "y".into()]),
                    expires_at: Some(Some(123)),
                    ..KeyPatch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(patched.name.as_deref(), Some("renamed"));
        assert_eq!(patched.team_id.as_deref(), Some(team.id.as_str()));
        assert_eq!(patched.models, vec!["m".to_owned()]);
        assert_eq!(patched.limits.tpm, Some(1000));
        assert_eq!(patched.tags, vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(patched.expires_at, Some(123));
        assert_eq!(patched.unusable(124), Some("expired"));
        assert_eq!(store.key(&c.id).await.unwrap(), Some(patched.clone()), "{backend}: patch not stored");
        let cleared = store
            .update_key(&c.id, KeyPatch { name: Some(None), expires_at: Some(None), ..KeyPatch::default() })
            .await
            .unwrap();
        assert_eq!((cleared.name, cleared.expires_at), (None, None));
        assert_eq!(cleared.tags, patched.tags, "absent fields are left");
        assert_eq!(store.update_key(&c.id, KeyPatch::default()).await.unwrap().id, c.id);

        // A patch to a team that does not exist, or of a key that does not exist.
        let to_nowhere = KeyPatch { team_id: Some(Some("team_nowhere".into())), ..KeyPatch::default() };
        assert!(matches!(
            store.update_key(&c.id, to_nowhere).await,
            Err(StoreError::NotFound { kind: "team", .. })
        ));
        let nameless = KeyPatch { name: Some(None), ..KeyPatch::default() };
        assert!(matches!(
            store.update_key("key_missing", nameless).await,
            Err(StoreError::NotFound { kind: "key", .. })
        ));

        // Limits no meter could enforce are refused.
        let bad =
            NewKey { limits: Limits { budget_usd: Some(-1.0), ..Limits::default() }, ..NewKey::default() };
        assert!(matches!(store.create_key(bad).await, Err(StoreError::Invalid { .. })));
    }
}

#[tokio::test]
async fn teams_and_users() {
    let (stores, _file) = backends("teams_and_users").await;
    for (backend, store) in stores {
        let id = format!("team-{}", unique());
        let limits = Limits { budget_usd: Some(100.0), budget_period: Period::Daily, ..Limits::default() };
        let team = store
            .create_team(NewTeam {
                id: Some(id.clone()),
                name: Some("Platform".into()),
                limits: limits.clone(),
                models: vec!["gpt-4o".into()],
                metadata: BTreeMap::from([("cost_center".to_owned(), serde_json::json!(42))]),
            })
            .await
            .unwrap();
        assert_eq!(team.id, id);
        assert_eq!(store.team(&id).await.unwrap(), Some(team.clone()), "{backend}");
        let generated = store.create_team(NewTeam::default()).await.unwrap();
        assert!(generated.id.starts_with("team_") && generated.id.len() == 21, "{}", generated.id);
        let listed = store.list_teams().await.unwrap();
        assert!(listed.contains(&team) && listed.contains(&generated), "{backend}");

        // A taken id is a conflict, for teams and users.
        let again = store.create_team(NewTeam { id: Some(id.clone()), ..NewTeam::default() }).await;
        assert!(matches!(again, Err(StoreError::Conflict { kind: "team", .. })), "{backend}: {again:?}");

        let updated = store
            .update_team(&id, TeamPatch { name: Some(None), models: Some(vec![]), ..TeamPatch::default() })
            .await
            .unwrap();
        assert_eq!((updated.name.as_deref(), updated.models.len(), &updated.limits), (None, 0, &limits));
        assert_eq!(store.team(&id).await.unwrap(), Some(updated));
        assert!(matches!(
            store.update_team("team_missing", TeamPatch { name: Some(None), ..TeamPatch::default() }).await,
            Err(StoreError::NotFound { kind: "team", .. })
        ));

        // Users.
        let uid = format!("user-{}", unique());
        let user = store
            .create_user(NewUser {
                id: Some(uid.clone()),
                email: Some("a@example.com".into()),
                team_id: Some(id.clone()),
                limits: Limits { rpm: Some(5), ..Limits::default() },
                ..NewUser::default()
            })
            .await
            .unwrap();
        assert_eq!(store.user(&uid).await.unwrap(), Some(user.clone()), "{backend}");
        assert!(store.list_users().await.unwrap().contains(&user));
        let dup = store.create_user(NewUser { id: Some(uid.clone()), ..NewUser::default() }).await;
        assert!(matches!(dup, Err(StoreError::Conflict { kind: "user", .. })), "{backend}: {dup:?}");
        let lost =
            store.create_user(NewUser { team_id: Some("team_nowhere".into()), ..NewUser::default() }).await;
        assert!(matches!(lost, Err(StoreError::NotFound { kind: "team", .. })), "{backend}: {lost:?}");
        let generated_user = store.create_user(NewUser::default()).await.unwrap();
        assert!(generated_user.id.starts_with("user_"));

        // A team with a user or keys cannot be deleted; nor a user with keys.
        let (key, _) = store
            .create_key(NewKey { team_id: Some(id.clone()), user_id: Some(uid.clone()), ..NewKey::default() })
            .await
            .unwrap();
        store.revoke_key(&key.id).await.unwrap();
        let refused = store.delete_team(&id).await;
        match &refused {
            Err(StoreError::Conflict { kind: "team", reason, .. }) => {
                assert!(reason.contains("1 key(s) and 1 user(s)"), "{backend}: {reason}")
            }
            other => panic!("{backend}: {other:?}"),
        }
        assert!(matches!(store.delete_user(&uid).await, Err(StoreError::Conflict { kind: "user", .. })));
        assert!(store.team(&id).await.unwrap().is_some());

        // Moving the key and the user away lets both go.
        store
            .update_key(&key.id, KeyPatch { team_id: Some(None), user_id: Some(None), ..KeyPatch::default() })
            .await
            .unwrap();
        let moved =
            store.update_user(&uid, UserPatch { team_id: Some(None), ..UserPatch::default() }).await.unwrap();
        assert_eq!(moved.team_id, None);
        assert_eq!(moved.email.as_deref(), Some("a@example.com"));
        assert!(matches!(
            store
                .update_user(
                    &uid,
                    UserPatch { team_id: Some(Some("team_nowhere".into())), ..UserPatch::default() }
                )
                .await,
            Err(StoreError::NotFound { kind: "team", .. })
        ));
        store.delete_user(&uid).await.unwrap();
        store.delete_team(&id).await.unwrap();
        assert_eq!(store.team(&id).await.unwrap(), None);
        assert_eq!(store.user(&uid).await.unwrap(), None);
        assert!(matches!(store.delete_team(&id).await, Err(StoreError::NotFound { kind: "team", .. })));
        assert!(matches!(store.delete_user(&uid).await, Err(StoreError::NotFound { kind: "user", .. })));
    }
}

/// What a report row should hold, computed from the records in the test.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
    creation: u64,
    reasoning: u64,
    nanos: Nanos,
    errors: u64,
}

#[tokio::test]
async fn spend_sums_and_reports_are_exact() {
    let (stores, _file) = backends("spend_sums_and_reports_are_exact").await;
    for (backend, store) in stores {
        let run = unique();
        // 1,000 records over 4 UTC days from 2026-11-20T00:00Z, 5 minutes apart.
        let start: i64 = 1_795_132_800_000;
        let records: Vec<_> = (0..1000u64).map(|i| record(i, &run, start + i as i64 * 300_000)).collect();
        let began = Instant::now();
        for chunk in records.chunks(500) {
            store.insert_spend(chunk).await.unwrap();
        }
        eprintln!("{backend}: inserted 1,000 spend records in 2 batches in {:?}", began.elapsed());

        let team = format!("team_{run}");
        let mut by_key: HashMap<String, Totals> = HashMap::new();
        let mut by_model: HashMap<String, Totals> = HashMap::new();
        let mut by_day: HashMap<String, Totals> = HashMap::new();
        let mut by_user_since: HashMap<Option<String>, Nanos> = HashMap::new();
        let since = start + 500 * 300_000;
        for r in &records {
            let day = ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
                [((r.at - start) / 86_400_000) as usize];
            for (map, group) in [
                (&mut by_key, r.key_id.clone().unwrap()),
                (&mut by_model, r.model.clone()),
                (&mut by_day, day.to_owned()),
            ] {
                let t = map.entry(group).or_default();
                t.requests += 1;
                t.input += r.usage.input;
                t.output += r.usage.output;
                t.cached += r.usage.cached_input;
                t.creation += r.usage.cache_creation;
                t.reasoning += r.usage.reasoning;
                t.nanos += to_nanos(r.cost_usd);
                t.errors += u64::from(r.error.is_some());
            }
            if r.at >= since {
                *by_user_since.entry(r.user_id.clone()).or_default() += to_nanos(r.cost_usd);
            }
        }
        assert_eq!(by_day.len(), 4, "the records span four days");

        // spent_since, per scope.
        for (key, totals) in &by_key {
            assert_eq!(
                store.spent_since(&Scope::Key(key.clone()), 0).await.unwrap(),
                totals.nanos,
                "{backend} {key}"
            );
        }
        for (model, totals) in &by_model {
            assert_eq!(
                store.spent_since(&Scope::Model(model.clone()), 0).await.unwrap(),
                totals.nanos,
                "{backend}"
            );
        }
        let total: Nanos = by_key.values().map(|t| t.nanos).sum();
        assert_eq!(store.spent_since(&Scope::Team(team.clone()), 0).await.unwrap(), total);
        assert_eq!(store.spent_since(&Scope::Team(team.clone()), start + 1000 * 300_000).await.unwrap(), 0);
        for (user, nanos) in by_user_since.iter().filter_map(|(u, n)| u.clone().map(|u| (u, *n))) {
            assert_eq!(
                store.spent_since(&Scope::User(user.clone()), since).await.unwrap(),
                nanos,
                "{backend} {user}"
            );
        }

        // Reports, filtered to this run's team.
        let check = |rows: Vec<switchyard_accounting::store::ReportRow>,
                     name: &str,
                     expected: &HashMap<String, Totals>| {
            assert_eq!(rows.len(), expected.len(), "{backend}: {name} rows");
            for row in &rows {
                let group = row.group[name].clone().expect("group value");
                let want = &expected[&group];
                let got = Totals {
                    requests: row.requests,
                    input: row.input_tokens,
                    output: row.output_tokens,
                    cached: row.cached_input_tokens,
                    creation: row.cache_creation_tokens,
                    reasoning: row.reasoning_tokens,
                    nanos: to_nanos(row.cost_usd),
                    errors: row.errors,
                };
                assert_eq!(&got, want, "{backend}: {name} {group}");
                assert_eq!(row.cost_usd, to_usd(want.nanos));
            }
            // Most expensive first.
            assert!(rows.windows(2).all(|w| w[0].cost_usd >= w[1].cost_usd), "{backend}: {name} order");
        };
        let query = |group_by: Vec<GroupBy>| ReportQuery {
            group_by,
            team_id: Some(team.clone()),
            ..ReportQuery::default()
        };
        check(store.spend_report(query(vec![GroupBy::Key])).await.unwrap(), "key", &by_key);
        check(store.spend_report(query(vec![GroupBy::Model])).await.unwrap(), "model", &by_model);
        check(store.spend_report(query(vec![GroupBy::Day])).await.unwrap(), "day", &by_day);

        // Totals, a time window, a model filter, and two groups at once.
        let totals = store.spend_report(query(vec![])).await.unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!((totals[0].requests, to_nanos(totals[0].cost_usd)), (1000, total));
        assert!(totals[0].group.is_empty());
        let day2 = ReportQuery {
            from_ms: Some(start + 86_400_000),
            to_ms: Some(start + 2 * 86_400_000),
            ..query(vec![GroupBy::Day])
        };
        let rows = store.spend_report(day2).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].group["day"].as_deref(), Some("2026-11-21"));
        assert_eq!(rows[0].requests, by_day["2026-11-21"].requests);
        let model = format!("model-{run}-3");
        let one_model =
            ReportQuery { model: Some(model.clone()), ..query(vec![GroupBy::Model, GroupBy::Deployment]) };
        let rows = store.spend_report(one_model).await.unwrap();
        assert!(rows.iter().all(|r| r.group["model"].as_deref() == Some(model.as_str())));
        assert!(
            rows.iter().any(|r| r.group["deployment"].is_none()),
            "{backend}: records without a deployment"
        );
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), by_model[&model].requests);
        let nothing = ReportQuery { team_id: Some(format!("team_{}", unique())), ..ReportQuery::default() };
        assert!(store.spend_report(nothing).await.unwrap().is_empty());

        // The rows serialise as the admin API will return them.
        let json =
            serde_json::to_value(store.spend_report(query(vec![GroupBy::Day])).await.unwrap()).unwrap();
        assert!(json[0]["group"]["day"].is_string() && json[0]["cost_usd"].is_number(), "{json}");
    }
}

#[tokio::test]
async fn spend_records_read_back_and_request_ids_may_repeat() {
    let (stores, _file) = backends("spend_records_read_back").await;
    for (backend, store) in stores {
        let run = unique();
        let mut first = record(20, &run, 1_000);
        first.request_id = format!("req-{run}");
        let mut second = record(21, &run, 2_000);
        second.request_id = first.request_id.clone();
        // Clients may reuse request ids: both records are kept.
        store.insert_spend(&[first.clone()]).await.unwrap();
        store.insert_spend(&[second.clone()]).await.unwrap();
        let back = store.spend_by_request(&first.request_id).await.unwrap();
        // Costs come back rounded up to the nano-dollar.
        for r in [&mut first, &mut second] {
            r.cost_usd = to_usd(to_nanos(r.cost_usd));
            r.cost_saved_usd = to_usd(to_nanos(r.cost_saved_usd));
        }
        assert_eq!(back, vec![first, second], "{backend}");
        store.insert_spend(&[]).await.unwrap();
    }
}

#[tokio::test]
async fn batches_whose_optional_fields_are_null_in_one_and_set_in_the_next_are_both_written() {
    let (stores, _file) = backends("batches_with_nulls").await;
    for (backend, store) in stores {
        let run = unique();
        // A batch is written in statements of up to 64 rows on one connection; the same
        // statement twice, with a stream's ttft_ms where the other had a non-streamed answer's
        // NULL, must be written both times.
        let batch: Vec<_> = (0..128u64)
            .map(|i| {
                let mut r = record(40 + i, &run, 4_000 + i as i64);
                r.ttft_ms = ((i < 64) == (i % 2 == 0)).then_some(12.5);
                r
            })
            .collect();
        for _ in 0..2 {
            store.insert_spend(&batch).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        }
    }
}

#[tokio::test]
async fn batches_of_500_are_quick() {
    let (stores, _file) = backends("batches_of_500_are_quick").await;
    for (backend, store) in stores {
        let run = unique();
        let batch: Vec<_> = (0..500).map(|i| record(i, &run, 5_000 + i as i64)).collect();
        store.insert_spend(&batch).await.unwrap();
        let began = Instant::now();
        for _ in 0..4 {
            store.insert_spend(&batch).await.unwrap();
        }
        let per_batch = began.elapsed() / 4;
        eprintln!("{backend}: {per_batch:?} per batch of 500 spend records");
        // Generous for a loaded 2-core CI machine; a row-at-a-time writer takes far longer.
        assert!(per_batch.as_millis() < 1_000, "{backend}: {per_batch:?} per batch");
        let rows = store
            .spend_report(ReportQuery { team_id: Some(format!("team_{run}")), ..ReportQuery::default() });
        assert_eq!(rows.await.unwrap()[0].requests, 2_500);
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_databases_are_explained() {
    let err = Store::connect("mysql://root:hunter2@localhost/db").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::BadUrl { .. }), "{text}");
    assert!(text.contains("mysql://root:***@localhost/db") && !text.contains("hunter2"), "{text}");
    assert!(text.contains("sqlite://PATH"), "says what to use: {text}");

    // Nothing listens on port 1.
    let err = Store::connect("postgres://postgres:hunter2@127.0.0.1:1/test").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(text.contains("postgres://postgres:***@127.0.0.1:1/test") && !text.contains("hunter2"), "{text}");
    assert!(text.contains("check that it is running"), "{text}");

    let missing_dir = std::env::temp_dir().join(format!("switchyard-no-such-dir-{}", unique())).join("a.db");
    let err = Store::connect(&format!("sqlite://{}", missing_dir.display())).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn sqlite_files_are_created_in_wal_mode() {
    let file = TempDb::new("wal");
    let store = Store::connect(&file.url()).await.unwrap();
    assert!(file.0.exists());
    store.close().await;
    // An independent connection reads the mode the store left in the file.
    let pool = sqlx::SqlitePool::connect(&file.url()).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "wal");
    pool.close().await;
}

//! The audit trail: written with each change, hash-chained, append-only, tamper-evident.

use std::future::IntoFuture as _;

use gatehouse::audit::{self, AuditContext};
use gatehouse::identity::users::{self, NewUser};
use gatehouse::identity::{DisplayName, Email, Role};
use gatehouse::store::{Db, Dialect};

use crate::on_every_backend;
use crate::support::{add_user, run_cli, spawn_app};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs SQL as someone with full database access would (not through Gatehouse).
async fn raw_sql(db: &Db, statements: &[&str]) {
    for sql in statements {
        db.query(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn try_sql(db: &Db, sql: &str) -> Result<u64, gatehouse::Error> {
    db.query(sql).execute().await
}

fn drop_guards(db: &Db) -> &'static [&'static str] {
    match db.dialect() {
        Dialect::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Dialect::Postgres => &["DROP TRIGGER audit_log_no_change ON audit_log"],
    }
}

on_every_backend! {
    async fn user_add_writes_an_audit_record_the_chain_verifies(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        assert!(run_cli(&env, &["user", "add", "--email", "a@example.com", "--role", "admin"]).status.success());
        let records = audit::records_after(&app.db, 0, 10).await.unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.action, "user.create");
        assert_eq!(r.actor, "cli");
        assert_eq!(r.entity_type, "user");
        assert_eq!(r.prev_hash, audit::GENESIS_HASH);
        let changes: serde_json::Value = serde_json::from_str(&r.changes).unwrap();
        assert_eq!(changes["role"], "admin");
        let out = run_cli(&env, &["audit", "verify"]);
        assert!(out.status.success(), "{}", stdout(&out));
        assert!(stdout(&out).contains("intact: 1 records"), "{}", stdout(&out));
    }

    async fn the_audit_log_refuses_updates_and_deletes(backend) {
        let app = spawn_app(backend).await;
        add_user(&app, "a@example.com").await;
        assert!(try_sql(&app.db, "UPDATE audit_log SET actor = 'someone-else'").await.is_err());
        assert!(try_sql(&app.db, "DELETE FROM audit_log").await.is_err());
        let records = audit::records_after(&app.db, 0, 10).await.unwrap();
        assert_eq!(records[0].actor, "cli");
    }

    async fn an_audit_row_edited_by_sql_is_caught_by_audit_verify(backend) {
        let app = spawn_app(backend).await;
        for email in ["a@example.com", "b@example.com", "c@example.com"] {
            add_user(&app, email).await;
        }
        let ids: Vec<i64> = audit::records_after(&app.db, 0, 10).await.unwrap().iter().map(|r| r.id).collect();
        raw_sql(&app.db, drop_guards(&app.db)).await;
        raw_sql(&app.db, &[&format!(
            "UPDATE audit_log SET changes = '{{\"role\":\"admin\"}}' WHERE id = {}",
            ids[1]
        )])
        .await;
        let out = run_cli(&app.cli_env(), &["audit", "verify"]);
        assert!(!out.status.success());
        let text = stdout(&out);
        assert!(text.contains(&format!("BROKEN at record {}", ids[1])), "{text}");
        assert!(text.contains("edited"), "{text}");
    }

    async fn a_removed_record_is_caught_by_audit_verify(backend) {
        let app = spawn_app(backend).await;
        for email in ["a@example.com", "b@example.com", "c@example.com"] {
            add_user(&app, email).await;
        }
        let ids: Vec<i64> = audit::records_after(&app.db, 0, 10).await.unwrap().iter().map(|r| r.id).collect();
        raw_sql(&app.db, drop_guards(&app.db)).await;
        raw_sql(&app.db, &[&format!("DELETE FROM audit_log WHERE id = {}", ids[1])]).await;
        let out = run_cli(&app.cli_env(), &["audit", "verify"]);
        assert!(!out.status.success());
        assert!(stdout(&out).contains(&format!("BROKEN at record {}", ids[2])), "{}", stdout(&out));
    }

    async fn a_kept_head_catches_removal_of_the_newest_records(backend) {
        let app = spawn_app(backend).await;
        add_user(&app, "a@example.com").await;
        add_user(&app, "b@example.com").await;
        let head_out = stdout(&run_cli(&app.cli_env(), &["audit", "head"]));
        let head = head_out.split_whitespace().next().unwrap().to_owned();
        assert_eq!(head.len(), 64);
        let ok = run_cli(&app.cli_env(), &["audit", "verify", "--head", &head]);
        assert!(ok.status.success(), "{}", stdout(&ok));
        raw_sql(&app.db, drop_guards(&app.db)).await;
        raw_sql(&app.db, &["DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"]).await;
        // Without the anchor the shortened chain still links up...
        assert!(run_cli(&app.cli_env(), &["audit", "verify"]).status.success());
        // ...with it, the removal shows.
        let out = run_cli(&app.cli_env(), &["audit", "verify", "--head", &head]);
        assert!(!out.status.success());
        assert!(stdout(&out).contains("anchor hash is not in the chain"), "{}", stdout(&out));
    }

    async fn concurrent_writers_never_fork_the_chain(backend) {
        let app = spawn_app(backend).await;
        let writers: Vec<_> = (0..16)
            .map(|i| {
                tokio::spawn(add_user(&app, &format!("user{i}@example.com")).into_future())
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let records = audit::records_after(&app.db, 0, 100).await.unwrap();
        assert_eq!(records.len(), 16);
        let report = audit::verify(&app.db, None, |_| {}).await.unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.checked, 16);
    }

    async fn concurrent_appends_that_read_the_head_first_never_fork(backend) {
        // Transactions whose first statement is the read of the chain head: the case the
        // SQLite write lock taken at BEGIN and the PostgreSQL advisory lock exist for.
        let app = spawn_app(backend).await;
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let db = app.db.clone();
                tokio::spawn(async move {
                    let mut tx = db.begin().await.unwrap();
                    audit::record(
                        &mut tx,
                        &AuditContext::system(),
                        audit::AuditEvent {
                            action: "test.append",
                            entity_type: "test",
                            entity_id: Some(i.to_string()),
                            changes: serde_json::json!({"n": i}),
                        },
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let report = audit::verify(&app.db, None, |_| {}).await.unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.checked, 16);
    }

    async fn a_failed_change_leaves_no_audit_record(backend) {
        let app = spawn_app(backend).await;
        add_user(&app, "a@example.com").await;
        let dup = users::create(
            &app.db,
            NewUser {
                email: Email::parse("A@example.com").unwrap(),
                display_name: DisplayName::default(),
                role: Role::Admin,
            },
            &AuditContext::cli(),
        )
        .await;
        assert!(dup.is_err());
        assert_eq!(audit::count(&app.db).await.unwrap(), 1);
    }
}

//! Commands: create once, complete once (duplicates and late answers change nothing);
//! many read at once.

use mir_shared::{
    domain::{command::CommandOutcome, CommandRecord, CommandStatus},
    ports::StoreError,
    testing::at_ms,
};

use crate::support::Ports;

pub fn pending(id: &str, device: &str) -> CommandRecord {
    CommandRecord {
        id: id.into(),
        device_id: device.into(),
        device_name: device.into(),
        namespace: "default".into(),
        name: "schema.v1.ActivateHVACCmd".into(),
        request: serde_json::json!({"durationSec": 1}),
        status: CommandStatus::Pending,
        response_name: None,
        response: None,
        error: None,
        created_at: at_ms(1_000),
        deadline: at_ms(11_000),
        completed_at: None,
    }
}

fn outcome(status: CommandStatus, ms: i64) -> CommandOutcome {
    CommandOutcome {
        status,
        response_name: Some("schema.v1.ActivateHVACResp".into()),
        response: Some(serde_json::json!({"success": status == CommandStatus::Success})),
        error: (status == CommandStatus::Error).then(|| "jammed".to_string()),
        completed_at: at_ms(ms),
    }
}

async fn create_get_and_complete_once(p: &Ports) {
    let rec = pending("c1", "w1");
    p.commands().create(&rec).await.unwrap();
    let e = p.commands().create(&rec).await.unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
    assert_eq!(
        p.commands().get("c1").await.unwrap(),
        Some(rec.clone()),
        "{}",
        p.kind
    );
    let (done, changed) = p
        .commands()
        .complete("c1", outcome(CommandStatus::Success, 2_000))
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(done.status, CommandStatus::Success);
    assert_eq!(done.completed_at, Some(at_ms(2_000)));
    let (again, changed) = p
        .commands()
        .complete("c1", outcome(CommandStatus::Error, 3_000))
        .await
        .unwrap();
    assert!(!changed);
    assert_eq!(again, done);
    assert_eq!(p.commands().get("c1").await.unwrap(), Some(done.clone()));
    assert_eq!(
        p.commands().get_many(&["c1".to_string()]).await.unwrap(),
        vec![done]
    );
    let e = p
        .commands()
        .complete("nope", outcome(CommandStatus::Success, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(p.commands().get("nope").await.unwrap().is_none());
    // A record created final (a dry run) stays as it is.
    let mut dry = pending("c2", "w1");
    dry.status = CommandStatus::Validated;
    p.commands().create(&dry).await.unwrap();
    let (rec, changed) = p
        .commands()
        .complete("c2", outcome(CommandStatus::Success, 5))
        .await
        .unwrap();
    assert!(!changed && rec.status == CommandStatus::Validated);
}

async fn concurrent_completions_change_it_exactly_once(p: &Ports) {
    p.commands().create(&pending("c1", "w1")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let commands = p.ports.commands.clone().expect("commands");
        tasks.push(tokio::spawn(async move {
            commands
                .complete("c1", outcome(CommandStatus::Success, 2_000 + i))
                .await
                .unwrap()
        }));
    }
    let mut changed = 0;
    let mut finals = Vec::new();
    for t in tasks {
        let (rec, c) = t.await.unwrap();
        changed += usize::from(c);
        finals.push(rec.completed_at);
    }
    assert_eq!(changed, 1, "{}", p.kind);
    let stored = p.commands().get("c1").await.unwrap().unwrap();
    assert!(finals.iter().all(|f| *f == stored.completed_at));
}

/// More ids than one BatchGetItem call takes (100), with unknown and repeated ones:
/// every known record once, as stored, the unknown ones left out.
async fn many_are_read_in_one_call_beyond_a_hundred_keys(p: &Ports) {
    let ids: Vec<String> = (0..150).map(|i| format!("m{i:03}")).collect();
    let records: Vec<CommandRecord> = ids.iter().map(|id| pending(id, "w1")).collect();
    futures::future::try_join_all(records.iter().map(|r| p.commands().create(r)))
        .await
        .unwrap();
    let (done, _) = p
        .commands()
        .complete("m007", outcome(CommandStatus::Success, 2_000))
        .await
        .unwrap();
    let mut asked = ids.clone();
    asked.extend([
        "nope-1".to_string(),
        "m007".to_string(),
        "nope-2".to_string(),
    ]);
    let mut found = p.commands().get_many(&asked).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let found_ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(found_ids, want, "{}", p.kind);
    assert_eq!(found[7], done);
    assert!(found
        .iter()
        .filter(|r| r.id != "m007")
        .all(|r| r.status == CommandStatus::Pending));
    assert!(p.commands().get_many(&[]).await.unwrap().is_empty());
}

conformance!(
    create_get_and_complete_once,
    concurrent_completions_change_it_exactly_once,
    many_are_read_in_one_call_beyond_a_hundred_keys
);

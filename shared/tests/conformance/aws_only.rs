//! What only the AWS adapters have: Timestream writes against the endpoint, the
//! DynamoDB sink's rejection of unstorable values, `AwsEnvironment` from the environment.

use std::sync::Arc;

use mir_shared::{
    adapters::{
        aws::{AwsConfig, AwsEnvironment, TelemetryConfig},
        timestream,
    },
    telemetry::FieldValue,
};

use crate::support::{random_prefix, required_endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn timestream_takes_batches_over_100_records() {
    let url = required_endpoint();
    let prefix = random_prefix();
    let mut config = AwsConfig::localstack(&url, &prefix);
    let (db, table) = (format!("{prefix}-db"), "telemetry".to_string());
    config.telemetry = Some(TelemetryConfig::Timestream {
        database: db.clone(),
        table: table.clone(),
    });
    let env = AwsEnvironment::from_config(config).await;
    let ports = &env.ports;
    timestream::create_database_and_table(
        &timestream::aws_sdk_timestreamwrite::Client::new(&env.sdk),
        &db,
        &table,
    )
    .await
    .unwrap();
    let sink = ports.telemetry_sink().unwrap();
    let records: Vec<_> = (0..250)
        .map(|i| crate::telemetry::record("d1", "schema.v1.Env", 1_000 + i, i as u64, i))
        .collect();
    let report = sink.write(&records).await.unwrap();
    assert_eq!((report.written, report.rejected.len()), (250, 0));
    // Duplicates are accepted again (idempotent), unsendable records are reported.
    let mut bad = records[3].clone();
    bad.values[1].1 = FieldValue::Double(f64::NAN);
    let report = sink
        .write(&[records[0].clone(), bad, records[1].clone()])
        .await
        .unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 1);
    assert!(
        report.rejected[0].reason.contains("windSpeed"),
        "{:?}",
        report.rejected
    );
    let stored = timestream_records(&url, &db, &table)
        .await
        .expect("moto shows the table's records");
    assert_eq!(stored.len(), 250 + 2);
    let first = &stored[0];
    assert_eq!(first["MeasureName"], "schema.v1.Env");
    assert_eq!(first["MeasureValueType"], "MULTI");
    assert_eq!(first["TimeUnit"], "NANOSECONDS");
    assert_eq!(first["Time"], "1000");
    assert_eq!(first["Version"], 1);
    let types: Vec<(&str, &str)> = first["MeasureValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["Name"].as_str().unwrap(), m["Type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("temperature", "BIGINT"),
            ("windSpeed", "DOUBLE"),
            ("raining", "BOOLEAN"),
            ("station", "VARCHAR"),
            ("nested.depth", "DOUBLE"),
            ("seq", "BIGINT")
        ]
    );
}

/// Records moto holds for a table, through its own inspection API (moto's timestream-query
/// answers empty results, so reading back through Query is covered by fixture tests).
async fn timestream_records(url: &str, db: &str, table: &str) -> Option<Vec<serde_json::Value>> {
    let body: serde_json::Value = reqwest::get(format!("{url}/moto-api/data.json"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let tables = body
        .get("timestreamwrite")?
        .get("TimestreamTable")?
        .as_array()?;
    tables
        .iter()
        .find(|t| {
            t.get("db_name").and_then(|v| v.as_str()) == Some(db)
                && t.get("name").and_then(|v| v.as_str()) == Some(table)
        })
        .and_then(|t| t.get("records")?.as_array().cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn the_dynamodb_sink_reports_unstorable_values_by_index() {
    let p = crate::support::aws().await;
    let good = crate::telemetry::record("d1", "schema.v1.Env", 1, 1, 1);
    let mut bad = good.clone();
    bad.seq = 2;
    bad.values[1].1 = FieldValue::Double(f64::INFINITY);
    let report = p.sink().write(&[bad, good]).await.unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 0);
}

/// A point that alone is bigger than a chunk may be is refused, with the reason; the
/// rest of its batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn the_dynamodb_sink_refuses_a_point_bigger_than_a_chunk() {
    let p = crate::support::aws().await;
    let good = crate::telemetry::record("d1", "schema.v1.Env", 1, 1, 1);
    let mut huge = crate::telemetry::record("d1", "schema.v1.Env", 2, 2, 2);
    huge.values[3].1 = FieldValue::Text(crate::telemetry::noise(600 * 1024, 7));
    let report = p.sink().write(&[good.clone(), huge]).await.unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 1);
    assert!(
        report.rejected[0]
            .reason
            .ends_with("a DynamoDB telemetry chunk holds at most 358400"),
        "{:?}",
        report.rejected
    );
    let q = mir_shared::ports::TelemetryQuery::new("d1", "schema.v1.Env", 0);
    assert_eq!(p.reader().query(&q).await.unwrap().items, [good]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn ports_from_the_cdk_environment_work() {
    let url = required_endpoint();
    let prefix = random_prefix();
    let tables = AwsConfig::localstack(&url, &prefix);
    let vars: std::collections::HashMap<&str, String> = [
        ("MIR_TWINS_TABLE", tables.twins_table.clone().unwrap()),
        ("MIR_EVENTS_TABLE", tables.events_table.clone().unwrap()),
        ("MIR_EVENTS_TTL_DAYS", "30".into()),
        (
            "MIR_IOT_DATA_ENDPOINT",
            "example-ats.iot.us-east-1.amazonaws.com".into(),
        ),
        ("AWS_ENDPOINT_URL", url.clone()),
    ]
    .into_iter()
    .collect();
    let config = AwsConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let env = AwsEnvironment::from_config(config).await;
    env.ensure_tables().await.unwrap();
    let ports = env.ports;
    let twin = crate::twins::twin("d1", "d1", "default", &[]);
    ports.twins().unwrap().create(&twin).await.unwrap();
    assert_eq!(
        ports.schemas().err(),
        Some(mir_shared::ports::MissingPort { port: "schemas" }),
        "a store the function may not use is absent"
    );
    assert!(ports.certificates().is_none());
    // The publisher goes to the endpoint override (moto's iot-data).
    ports
        .publisher()
        .unwrap()
        .publish("mir/d1/cmd/req", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    let _ = Arc::new(ports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn certificates_are_issued_attached_and_revoked() {
    use mir_shared::adapters::iot::{aws_sdk_iot, IotCertificates};
    use mir_shared::ports::CertificateIssuer;
    let url = required_endpoint();
    let sdk = mir_shared::adapters::aws::sdk_config(
        Some(&url),
        mir_shared::adapters::aws::SdkTimeouts::emulator(),
    )
    .await;
    let iot = aws_sdk_iot::Client::new(&sdk);
    let policy = format!("{}-device", random_prefix());
    iot.create_policy()
        .policy_name(&policy)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let issuer = IotCertificates::new(iot.clone(), &policy)
        .with_device_endpoint(Some("a1b2c3-ats.iot.eu-west-1.amazonaws.com".into()));
    let device = format!("dev-{}", random_prefix());
    // Without a CSR, by default: refused, and no thing or certificate is made.
    let refused = issuer
        .issue(&device, None)
        .await
        .expect_err("a CSR is required");
    assert!(
        matches!(refused, mir_shared::ports::CertificateError::CsrRequired),
        "{refused}"
    );
    let none = iot.describe_thing().thing_name(&device).send().await;
    assert!(
        none.expect_err("no thing")
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "no thing for a refused request"
    );
    // Without a CSR where the setting allows it: the platform makes the key pair.
    let made = issuer
        .clone()
        .allowing_generated_keys(true)
        .issue(&device, None)
        .await
        .unwrap();
    assert!(made.certificate_pem.contains("BEGIN CERTIFICATE"));
    assert!(made
        .private_key_pem
        .as_deref()
        .is_some_and(|k| k.contains("PRIVATE KEY")));
    assert_eq!(
        made.root_ca_pem.as_deref(),
        Some(mir_proto::aws::AMAZON_ROOT_CA_1),
        "devices trust the public Amazon root CA"
    );
    assert_eq!(
        made.endpoint.as_deref(),
        Some("mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883")
    );
    // With a CSR: the private key stays with the caller.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec![device.clone()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let signed = issuer.issue(&device, Some(&csr)).await.unwrap();
    assert!(signed.private_key_pem.is_none());
    assert!(signed.certificate_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(signed.endpoint, made.endpoint);
    let principals = iot
        .list_thing_principals()
        .thing_name(&device)
        .send()
        .await
        .unwrap();
    assert_eq!(principals.principals().len(), 2);
    let attached = iot
        .list_attached_policies()
        .target(principals.principals()[0].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(attached.policies()[0].policy_name(), Some(policy.as_str()));
    // Disable, then enable: every certificate of the device turns inactive, then active.
    let statuses = || async {
        let mut out = Vec::new();
        for id in [&made.certificate_id, &signed.certificate_id] {
            let d = iot
                .describe_certificate()
                .certificate_id(id)
                .send()
                .await
                .unwrap();
            out.push(
                d.certificate_description()
                    .and_then(|c| c.status().cloned()),
            );
        }
        out
    };
    use aws_sdk_iot::types::CertificateStatus;
    issuer.set_active(&device, false).await.unwrap();
    assert_eq!(statuses().await, vec![Some(CertificateStatus::Inactive); 2]);
    issuer.set_active(&device, true).await.unwrap();
    assert_eq!(statuses().await, vec![Some(CertificateStatus::Active); 2]);
    issuer.revoke_all(&device).await.unwrap();
    let thing = iot.describe_thing().thing_name(&device).send().await;
    assert!(
        thing
            .expect_err("the thing is gone")
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the thing is gone"
    );
    let cert = iot
        .describe_certificate()
        .certificate_id(&made.certificate_id)
        .send()
        .await;
    assert!(
        cert.expect_err("the certificate is gone")
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the certificate is gone"
    );
    // Revoking a device that has nothing is fine (delete is idempotent).
    issuer.revoke_all(&device).await.unwrap();
}

/// The AWS CLI (not our adapters) reads what the DynamoDB sink wrote: a chunk with its
/// points as binary and `expiresAt` (the TTL) the retention setting after the write,
/// the series summary with the same expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn the_aws_cli_reads_chunks_that_expire_after_the_retention_setting() {
    let url = required_endpoint();
    let prefix = random_prefix();
    let m: std::collections::HashMap<&str, String> = [
        ("MIR_TELEMETRY_SINK", "dynamodb".to_string()),
        ("MIR_TELEMETRY_TABLE", format!("{prefix}-telemetry")),
        ("MIR_TELEMETRY_RETENTION_DAYS", "3".to_string()),
        ("AWS_ENDPOINT_URL", url.clone()),
    ]
    .into();
    let config = AwsConfig::from_lookup(|k| m.get(k).cloned()).expect("valid");
    let env = AwsEnvironment::from_config(config).await;
    env.ensure_tables().await.expect("tables");
    let r = crate::telemetry::record("d1", "schema.v1.Env", 1_000, 1, i64::MIN);
    let before = chrono::Utc::now().timestamp();
    let report = env
        .ports
        .telemetry_sink()
        .unwrap()
        .write(&[r])
        .await
        .unwrap();
    let after = chrono::Utc::now().timestamp();
    assert_eq!(report.written, 1);
    let out = std::process::Command::new("aws")
        .args([
            "dynamodb",
            "scan",
            "--output",
            "json",
            "--region",
            "us-east-1",
        ])
        .args([
            "--endpoint-url",
            &url,
            "--table-name",
            &format!("{prefix}-telemetry"),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("the AWS CLI (`aws`) on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let items = scan["Items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "a chunk and a summary: {scan}");
    let three_days = 3 * 86_400;
    for item in items {
        let expires: i64 = item["expiresAt"]["N"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("expiresAt is a number: {item}"));
        assert!(
            (before + three_days..=after + three_days).contains(&expires),
            "{expires} is not 3 days after the write: {item}"
        );
    }
    let chunk = items
        .iter()
        .find(|i| i["pk"]["S"] == "TLM#d1#schema.v1.Env")
        .expect("the chunk");
    assert!(
        chunk["sk"]["S"]
            .as_str()
            .is_some_and(|sk| sk.starts_with("1970-01-01T00#")),
        "{chunk}"
    );
    assert!(chunk["points"]["B"].is_string(), "{chunk}");
}

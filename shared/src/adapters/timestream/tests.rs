//! Unit tests of the Timestream mapping: records, SQL, result rows.

use std::sync::Arc;

use aws_sdk_timestreamwrite::types::{MeasureValueType, TimeUnit};

use super::*;
use crate::ports::{StoreError, TelemetryCursor, TelemetryQuery, TelemetrySeries};
use crate::telemetry::{FieldValue, TelemetryRecord};

fn record() -> TelemetryRecord {
    TelemetryRecord {
        device_id: "weather-1".into(),
        name: "roof".into(),
        namespace: "default".into(),
        measure: Arc::from("schema.v1.Env"),
        time_ns: 1_700_000_000_123_456_789,
        seq: 7,
        tags: vec![
            (Arc::from("site"), Arc::from("north")),
            (Arc::from("empty"), Arc::from("")),
        ],
        values: vec![
            (Arc::from("temperature"), FieldValue::Int(21)),
            (Arc::from("windSpeed"), FieldValue::Double(2.5)),
            (Arc::from("raining"), FieldValue::Bool(false)),
            (Arc::from("station"), FieldValue::Text("roof".into())),
        ],
    }
}

#[test]
fn a_record_becomes_one_typed_multi_measure_record() {
    let TimestreamRecord(r) = TimestreamRecord::try_from(&record()).expect("valid");
    assert_eq!(r.measure_name(), Some("schema.v1.Env"));
    assert_eq!(r.measure_value_type(), Some(&MeasureValueType::Multi));
    assert_eq!(r.time(), Some("1700000000123456789"));
    assert_eq!(r.time_unit(), Some(&TimeUnit::Nanoseconds));
    assert_eq!(r.version(), Some(8));
    let dims: Vec<(&str, &str)> = r
        .dimensions()
        .iter()
        .map(|d| (d.name(), d.value()))
        .collect();
    assert_eq!(
        dims,
        [
            ("deviceId", "weather-1"),
            ("name", "roof"),
            ("namespace", "default"),
            ("site", "north")
        ]
    );
    let vals: Vec<(&str, &str, Option<&MeasureValueType>)> = r
        .measure_values()
        .iter()
        .map(|m| (m.name(), m.value(), Some(m.r#type())))
        .collect();
    assert_eq!(
        vals,
        [
            ("temperature", "21", Some(&MeasureValueType::Bigint)),
            ("windSpeed", "2.5", Some(&MeasureValueType::Double)),
            ("raining", "false", Some(&MeasureValueType::Boolean)),
            ("station", "roof", Some(&MeasureValueType::Varchar)),
            ("seq", "7", Some(&MeasureValueType::Bigint)),
        ]
    );
}

#[test]
fn sixty_four_bit_integers_are_sent_with_every_digit() {
    let mut r = record();
    r.values = vec![
        (Arc::from("min"), FieldValue::Int(i64::MIN)),
        (Arc::from("big"), FieldValue::Uint(u64::MAX)),
    ];
    let TimestreamRecord(r) = TimestreamRecord::try_from(&r).expect("valid");
    let vals: Vec<(&str, &str, &MeasureValueType)> = r
        .measure_values()
        .iter()
        .map(|m| (m.name(), m.value(), m.r#type()))
        .collect();
    assert_eq!(
        vals[..2],
        [
            ("min", "-9223372036854775808", &MeasureValueType::Bigint),
            ("big", "18446744073709551615", &MeasureValueType::Varchar),
        ]
    );
}

#[test]
fn unsendable_records_are_refused_with_a_reason() {
    let mut r = record();
    r.values[1].1 = FieldValue::Double(f64::INFINITY);
    let e = TimestreamRecord::try_from(&r).err().expect("refused");
    assert!(e.0.contains("windSpeed"), "{e}");
    let mut r = record();
    r.values.push((Arc::from("site"), FieldValue::Int(1)));
    let e = TimestreamRecord::try_from(&r).err().expect("refused");
    assert!(e.0.contains("site"), "{e}");
}

#[test]
fn every_records_and_series_statement_has_a_time_predicate() {
    let sql = Sql::new("db", "tel").with_retention_days(90);
    assert_eq!(
        sql.series("d"),
        "SELECT measure_name, COUNT(*) AS n, MAX(time) AS last_time FROM \"db\".\"tel\" WHERE deviceId = 'd' AND time > ago(90d) GROUP BY measure_name ORDER BY measure_name"
    );
    assert!(Sql::new("db", "tel")
        .series("d")
        .contains("time > ago(365d)"));
    // The next page of a window, oldest first: after the cursor (time 7, seq 3).
    let q = TelemetryQuery::new("d", "m", 5).until(100).limit(10);
    let cursor = TelemetryCursor { time_ns: 7, seq: 3 };
    let range = q.remaining(Some(cursor)).expect("a window");
    assert_eq!(
        sql.records(&q, range),
        "SELECT * FROM \"db\".\"tel\" WHERE deviceId = 'd' AND measure_name = 'm' AND time >= from_nanoseconds(7) AND time <= from_nanoseconds(99) AND (time > from_nanoseconds(7) OR seq >= 4) ORDER BY time ASC, seq ASC LIMIT 11"
    );
    // Newest first: before the cursor.
    let q = q.newest_first();
    let range = q.remaining(Some(cursor)).expect("a window");
    assert_eq!(
        sql.records(&q, range),
        "SELECT * FROM \"db\".\"tel\" WHERE deviceId = 'd' AND measure_name = 'm' AND time >= from_nanoseconds(5) AND time <= from_nanoseconds(7) AND (time < from_nanoseconds(7) OR seq <= 2) ORDER BY time DESC, seq DESC LIMIT 11"
    );
}

#[test]
fn sql_quotes_identifiers_and_escapes_strings() {
    let sql = Sql::new("mir\"db", "tel");
    let q = TelemetryQuery::new("x' OR '1'='1", "schema.v1.Env", 5)
        .limit(50)
        .newest_first();
    let range = q.remaining(None).expect("a window");
    assert_eq!(
        sql.records(&q, range),
        "SELECT * FROM \"mir\"\"db\".\"tel\" WHERE deviceId = 'x'' OR ''1''=''1' AND measure_name = 'schema.v1.Env' AND time >= from_nanoseconds(5) ORDER BY time DESC, seq DESC LIMIT 51"
    );
    assert_eq!(
        sql.dimensions("a'b"),
        "SHOW MEASURES FROM \"mir\"\"db\".\"tel\" LIKE 'a''b'"
    );
}

const RECORDS_FIXTURE: &str = r#"{
  "QueryId": "AEDACANmDJ",
  "ColumnInfo": [
    {"Name": "deviceId", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "name", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "namespace", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "site", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "measure_name", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "time", "Type": {"ScalarType": "TIMESTAMP"}},
    {"Name": "temperature", "Type": {"ScalarType": "BIGINT"}},
    {"Name": "windSpeed", "Type": {"ScalarType": "DOUBLE"}},
    {"Name": "raining", "Type": {"ScalarType": "BOOLEAN"}},
    {"Name": "station", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "seq", "Type": {"ScalarType": "BIGINT"}}
  ],
  "Rows": [
    {"Data": [{"ScalarValue": "weather-1"}, {"ScalarValue": "roof"}, {"ScalarValue": "default"}, {"ScalarValue": "north"},
              {"ScalarValue": "schema.v1.Env"}, {"ScalarValue": "2023-11-14 22:13:21.000000000"},
              {"ScalarValue": "22"}, {"ScalarValue": "3.0"}, {"ScalarValue": "true"}, {"NullValue": true}, {"ScalarValue": "8"}]},
    {"Data": [{"ScalarValue": "weather-1"}, {"ScalarValue": "roof"}, {"ScalarValue": "default"}, {"NullValue": true},
              {"ScalarValue": "schema.v1.Env"}, {"ScalarValue": "2023-11-14 22:13:20.123456789"},
              {"ScalarValue": "21"}, {"ScalarValue": "2.5"}, {"ScalarValue": "false"}, {"ScalarValue": "roof"}, {"ScalarValue": "7"}]}
  ]
}"#;

const SHOW_MEASURES_FIXTURE: &str = r#"{
  "ColumnInfo": [
    {"Name": "measure_name", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "data_type", "Type": {"ScalarType": "VARCHAR"}},
    {"Name": "dimensions", "Type": {"ArrayColumnInfo": {"Type": {"RowColumnInfo": [
      {"Name": "dimension_name", "Type": {"ScalarType": "VARCHAR"}},
      {"Name": "data_type", "Type": {"ScalarType": "VARCHAR"}}]}}}}
  ],
  "Rows": [
    {"Data": [{"ScalarValue": "schema.v1.Env"}, {"ScalarValue": "multi"},
      {"ArrayValue": [
        {"RowValue": {"Data": [{"ScalarValue": "deviceId"}, {"ScalarValue": "varchar"}]}},
        {"RowValue": {"Data": [{"ScalarValue": "site"}, {"ScalarValue": "varchar"}]}}
      ]}]}
  ]
}"#;

#[test]
fn result_rows_parse_into_typed_records_oldest_first() {
    let dims_resp: WireQueryResponse =
        serde_json::from_str(SHOW_MEASURES_FIXTURE).expect("fixture");
    let dims = QueryTable::from(&dims_resp).to_dimensions();
    assert!(dims.contains("site") && dims.contains("namespace"));
    let resp: WireQueryResponse = serde_json::from_str(RECORDS_FIXTURE).expect("fixture");
    let recs = QueryTable::from(&resp).to_records(&dims).expect("parses");
    assert_eq!(recs.len(), 2);
    let mut first = record();
    first.tags.clear();
    assert_eq!(recs[0], first);
    assert_eq!(recs[1].time_ns, 1_700_000_001_000_000_000);
    assert_eq!(recs[1].seq, 8);
    assert_eq!(&*recs[1].tags[0].1, "north");
    assert!(recs[1]
        .values
        .contains(&(Arc::from("windSpeed"), FieldValue::Double(3.0))));
    assert!(
        !recs[1].values.iter().any(|(n, _)| &**n == "station"),
        "null measures are absent"
    );
}

#[test]
fn series_rows_parse() {
    let resp: WireQueryResponse = serde_json::from_str(
        r#"{"ColumnInfo": [
             {"Name": "measure_name", "Type": {"ScalarType": "VARCHAR"}},
             {"Name": "n", "Type": {"ScalarType": "BIGINT"}},
             {"Name": "last_time", "Type": {"ScalarType": "TIMESTAMP"}}],
           "Rows": [{"Data": [{"ScalarValue": "schema.v1.Env"}, {"ScalarValue": "42"}, {"ScalarValue": "2023-11-14 22:13:20.000000000"}]}]}"#,
    )
    .expect("fixture");
    let s = QueryTable::from(&resp).to_series().expect("parses");
    assert_eq!(
        s,
        [TelemetrySeries {
            measure: "schema.v1.Env".into(),
            count: 42,
            last_time_ns: 1_700_000_000_000_000_000
        }]
    );
    let bad = QueryTable {
        columns: vec![("x".into(), None)],
        rows: vec![],
    };
    let e = bad.to_series().expect_err("no measure_name");
    assert!(
        matches!(&e, StoreError::Corrupt(m) if m.contains("lacks measure_name")),
        "{e}"
    );
}

//! Decoding and mapping telemetry batches to records (the `telemetry` handler's hot
//! path), side by side with parsing the same readings as JSON with serde_json.
//!
//! `cargo bench -p mir-fn-telemetry --bench mapping`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

use mir_fn_telemetry::map_batch;
use mir_proto::{
    examples::weather::{Env, DESCRIPTOR_SET},
    wire::{TelemetryBatch, TelemetryItem},
};
use mir_shared::{schema::Schema, telemetry::RecordContext};

const BATCH: usize = 1000;

fn readings() -> Vec<Env> {
    (0..BATCH as i64)
        .map(|i| Env {
            ts: 1_700_000_000_000_000_000 + i * 1_000_000,
            temperature: 20 + (i % 10) as i32,
            pressure: 1000 + (i % 30) as i32,
            humidity: 40 + (i % 50) as i32,
            wind_speed: 2.5 + i as f64 / 100.0,
            raining: i % 3 == 0,
            station: "roof-north".into(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let schema = Schema::from_descriptor_set(DESCRIPTOR_SET).expect("weather schema");
    let envs = readings();
    let batch = TelemetryBatch {
        items: envs
            .iter()
            .enumerate()
            .map(|(i, e)| TelemetryItem {
                name: "schema.v1.Env".into(),
                payload: e.encode_to_vec().into(),
                seq: i as u64,
                sent_at_ns: 0,
                clock_unsynced: false,
            })
            .collect(),
    }
    .encode_to_vec();
    let json: Vec<u8> = serde_json::to_vec(
        &envs
            .iter()
            .map(|e| {
                serde_json::json!({"ts": e.ts.to_string(), "temperature": e.temperature, "pressure": e.pressure, "humidity": e.humidity,
                    "windSpeed": e.wind_speed, "raining": e.raining, "station": e.station})
            })
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let ctx = RecordContext {
        device_id: "weather",
        name: "weather",
        namespace: "default",
        received_at_ns: 0,
    };

    let mut g = c.benchmark_group("telemetry_7_fields");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("protobuf batch -> records (decode + map)", |b| {
        b.iter_batched(
            || batch.clone(),
            |bytes| {
                let decoded = TelemetryBatch::decode(bytes.as_slice()).expect("batch");
                let (records, rejected) = map_batch(&schema, &decoded.items, &ctx);
                assert!(rejected.is_empty());
                records
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("serde_json parse of the same readings (to Value)", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
            v
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

//! A telemetry record as one Timestream multi-measure record: dimensions, typed measure
//! values, time in nanoseconds, the SDK sequence number as `seq` and as the version.

use std::collections::HashSet;

use aws_sdk_timestreamwrite::types::{
    Dimension, DimensionValueType, MeasureValue, MeasureValueType, Record, TimeUnit,
};

use super::{CORE_DIMENSIONS, SEQ_MEASURE};
use crate::telemetry::{FieldValue, TelemetryRecord};

/// Why a record cannot be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRecord(pub String);

fn typed(v: &FieldValue) -> Result<(String, MeasureValueType), InvalidRecord> {
    Ok(match v {
        FieldValue::Bool(b) => (b.to_string(), MeasureValueType::Boolean),
        FieldValue::Int(i) => (i.to_string(), MeasureValueType::Bigint),
        // No unsigned BIGINT in Timestream: the exact decimal text.
        FieldValue::Uint(u) => (u.to_string(), MeasureValueType::Varchar),
        FieldValue::Double(d) if d.is_finite() => (d.to_string(), MeasureValueType::Double),
        FieldValue::Double(d) => return Err(InvalidRecord(format!("{d} is not a finite DOUBLE"))),
        FieldValue::Text(s) => (s.clone(), MeasureValueType::Varchar),
    })
}

/// A telemetry record as a Timestream multi-measure record.
pub struct TimestreamRecord(pub Record);

impl TryFrom<&TelemetryRecord> for TimestreamRecord {
    type Error = InvalidRecord;

    fn try_from(r: &TelemetryRecord) -> Result<Self, Self::Error> {
        let dim = |name: &str, value: &str| {
            Dimension::builder()
                .name(name)
                .value(value)
                .dimension_value_type(DimensionValueType::Varchar)
                .build()
                .map_err(|e| InvalidRecord(format!("dimension {name}: {e}")))
        };
        let mut dims = Vec::with_capacity(3 + r.tags.len());
        for (name, value) in [
            ("deviceId", r.device_id.as_str()),
            ("name", r.name.as_str()),
            ("namespace", r.namespace.as_str()),
        ] {
            // Timestream refuses empty dimension values.
            if !value.is_empty() {
                dims.push(dim(name, value)?);
            }
        }
        let mut dim_names: HashSet<&str> = CORE_DIMENSIONS.into_iter().collect();
        for (k, v) in &r.tags {
            if !v.is_empty() && dim_names.insert(k) {
                dims.push(dim(k, v)?);
            }
        }
        let mut measures = Vec::with_capacity(r.values.len() + 1);
        for (name, value) in &r.values {
            if dim_names.contains(&**name) {
                return Err(InvalidRecord(format!(
                    "field {name} has the name of a dimension; Timestream needs distinct names"
                )));
            }
            let (s, t) = typed(value).map_err(|e| InvalidRecord(format!("field {name}: {e}")))?;
            measures.push(
                MeasureValue::builder()
                    .name(&**name)
                    .value(s)
                    .r#type(t)
                    .build()
                    .map_err(|e| InvalidRecord(format!("field {name}: {e}")))?,
            );
        }
        if !r.values.iter().any(|(n, _)| &**n == SEQ_MEASURE) {
            measures.push(
                MeasureValue::builder()
                    .name(SEQ_MEASURE)
                    .value(r.seq.to_string())
                    .r#type(MeasureValueType::Bigint)
                    .build()
                    .map_err(|e| InvalidRecord(format!("seq: {e}")))?,
            );
        }
        let version = i64::try_from(r.seq)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        Ok(TimestreamRecord(
            Record::builder()
                .set_dimensions(Some(dims))
                .measure_name(&*r.measure)
                .measure_value_type(MeasureValueType::Multi)
                .set_measure_values(Some(measures))
                .time(r.time_ns.to_string())
                .time_unit(TimeUnit::Nanoseconds)
                .version(version)
                .build(),
        ))
    }
}

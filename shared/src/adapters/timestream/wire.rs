//! The Query API's JSON response shape, so that fixtures (tests, recorded answers) read
//! into the same [`QueryTable`] as the SDK's output.

use serde::Deserialize;

use super::{Cell, QueryTable};

/// The Query API's JSON response shape (`ColumnInfo`, `Rows`), for fixtures.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireQueryResponse {
    pub column_info: Vec<WireColumn>,
    #[serde(default)]
    pub rows: Vec<WireRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireColumn {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "Type")]
    pub column_type: WireType,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireType {
    #[serde(default)]
    pub scalar_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireRow {
    pub data: Vec<WireDatum>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireDatum {
    #[serde(default)]
    pub scalar_value: Option<String>,
    #[serde(default)]
    pub null_value: Option<bool>,
    #[serde(default)]
    pub array_value: Option<Vec<WireDatum>>,
    #[serde(default)]
    pub row_value: Option<WireRow>,
}

impl From<&WireDatum> for Cell {
    fn from(d: &WireDatum) -> Self {
        if d.null_value == Some(true) {
            Cell::Null
        } else if let Some(s) = &d.scalar_value {
            Cell::Scalar(s.clone())
        } else if let Some(r) = &d.row_value {
            Cell::Row(r.data.iter().map(Cell::from).collect())
        } else if let Some(a) = &d.array_value {
            Cell::Array(a.iter().map(Cell::from).collect())
        } else {
            Cell::Null
        }
    }
}

impl From<&WireQueryResponse> for QueryTable {
    fn from(w: &WireQueryResponse) -> Self {
        QueryTable {
            columns: w
                .column_info
                .iter()
                .map(|c| {
                    (
                        c.name.clone().unwrap_or_default(),
                        c.column_type.scalar_type.clone(),
                    )
                })
                .collect(),
            rows: w
                .rows
                .iter()
                .map(|r| r.data.iter().map(Cell::from).collect())
                .collect(),
        }
    }
}

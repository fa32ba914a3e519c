//! Readers for the published reference data beside the traces:
//! `replay_orders/INDEX.csv`, `expected_allo_discrete.csv` and the
//! step-by-step oracle `reference_run/*_events.csv.gz`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::metric::{Curve, parse_hundredths};

/// One line of `replay_orders/INDEX.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderIndexEntry {
    /// Trace name, e.g. `openb_pod_list_default`.
    pub workload: String,
    /// RNG seed.
    pub seed: i64,
    /// Submissions after tuning.
    pub n_pods: usize,
    /// Tuned copies among them.
    pub n_tuned: usize,
    /// Σ requested GPU milli after tuning.
    pub total_gpu_milli: i64,
    /// SHA-256 of the submission order file (uncompressed).
    pub sha256_pod_order: String,
    /// SHA-256 of the node-rank file (uncompressed).
    pub sha256_node_rank: String,
}

/// One row of `expected_allo_discrete.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedRow {
    /// Trace name.
    pub workload: String,
    /// Policy column, e.g. `06-FGD`.
    pub policy: String,
    /// RNG seed.
    pub seed: i64,
    /// Values for x = 0..=130.
    pub curve: Curve,
}

/// One line of the reference run's event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleEvent {
    /// Submitted pod name.
    pub pod: String,
    /// Node name, `None` for a failed pod.
    pub node: Option<String>,
    /// GPU indices the pod got.
    pub devices: Vec<usize>,
    /// Arrived GPU milli after this submission.
    pub arrived_gpu_milli: i64,
    /// Used GPU milli after this submission.
    pub used_gpu_milli: i64,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(|e| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }
}

fn field_error(path: &Path, line: usize, field: &str, raw: &str, what: &str) -> Error {
    Error::Field {
        path: PathBuf::from(path),
        line,
        field: field.into(),
        message: format!("expected {what}, got {raw:?}"),
    }
}

/// Splits the data lines of a CSV into fields, checking the column count.
fn rows(path: &Path, text: &str, columns: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(',').map(|f| f.trim().to_string()).collect();
        if fields.len() != columns {
            return Err(Error::Shape {
                path: path.into(),
                line: i + 1,
                message: format!("expected {columns} columns, got {}", fields.len()),
            });
        }
        out.push((i + 1, fields));
    }
    Ok(out)
}

fn int<T: std::str::FromStr>(path: &Path, line: usize, field: &str, raw: &str) -> Result<T> {
    raw.parse()
        .map_err(|_| field_error(path, line, field, raw, "integer"))
}

/// Reads `replay_orders/INDEX.csv`.
pub fn read_order_index(path: &Path) -> Result<Vec<OrderIndexEntry>> {
    let text = read_text(path)?;
    rows(path, &text, 9)?
        .into_iter()
        .map(|(line, f)| {
            Ok(OrderIndexEntry {
                workload: f[0].clone(),
                seed: int(path, line, "seed", &f[1])?,
                n_pods: int(path, line, "n_pods", &f[2])?,
                n_tuned: int(path, line, "n_tuned", &f[3])?,
                total_gpu_milli: int(path, line, "total_gpu_milli", &f[4])?,
                sha256_pod_order: f[7].clone(),
                sha256_node_rank: f[8].clone(),
            })
        })
        .collect()
}

/// Reads `expected_allo_discrete.csv` (131 value columns).
pub fn read_expected(path: &Path) -> Result<Vec<ExpectedRow>> {
    let text = read_text(path)?;
    let columns = text.lines().next().map_or(0, |h| h.split(',').count());
    rows(path, &text, columns)?
        .into_iter()
        .map(|(line, f)| {
            let mut curve = Vec::with_capacity(columns.saturating_sub(5));
            for (x, cell) in f[5..].iter().enumerate() {
                if cell.is_empty() {
                    curve.push(None);
                } else {
                    let v = parse_hundredths(cell)
                        .ok_or_else(|| field_error(path, line, &x.to_string(), cell, "a number"))?;
                    curve.push(Some(v));
                }
            }
            Ok(ExpectedRow {
                workload: f[0].clone(),
                policy: f[1].clone(),
                seed: int(path, line, "seed", &f[3])?,
                curve,
            })
        })
        .collect()
}

/// Reads a reference event log (`k,pod,node,rank,gpu_index,arrived,used`;
/// `FAILED` in the node column for a dropped pod).
pub fn read_oracle_events(path: &Path) -> Result<Vec<OracleEvent>> {
    let text = read_text(path)?;
    rows(path, &text, 7)?
        .into_iter()
        .map(|(line, f)| {
            let node = match f[2].as_str() {
                "FAILED" | "" => None,
                name => Some(name.to_string()),
            };
            let devices = if f[4].is_empty() {
                Vec::new()
            } else {
                f[4].split('-')
                    .map(|d| int(path, line, "gpu_index", d))
                    .collect::<Result<_>>()?
            };
            Ok(OracleEvent {
                pod: f[1].clone(),
                node,
                devices,
                arrived_gpu_milli: int(path, line, "arrived_gpu_milli", &f[5])?,
                used_gpu_milli: int(path, line, "used_gpu_milli", &f[6])?,
            })
        })
        .collect()
}

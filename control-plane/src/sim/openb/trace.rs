//! Parsing the openb node list and pod list CSV files (PROTOCOL.md §1, §2.1).
//!
//! The files are plain comma-separated values without quoting. Columns are
//! found by their header name, so the 5-column `multigpu*` pod lists and the
//! 11-column ones parse alike.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// Most GPUs a node may have; every openb node has 1, 2, 4 or 8.
pub const MAX_GPUS: usize = 8;

/// One GPU node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Serial name, e.g. `openb-node-0000`.
    pub name: String,
    /// Allocatable CPU in milli-cores.
    pub cpu_milli: i64,
    /// Allocatable memory in MiB.
    pub memory_mib: i64,
    /// Number of GPUs (each 1000 milli).
    pub gpus: usize,
    /// GPU model label, e.g. `V100M32`.
    pub model: String,
}

/// One pod of a trace, reduced to the fields that matter for placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpec {
    /// Pod name, unique within a trace.
    pub name: String,
    /// CPU request in milli-cores.
    pub cpu_milli: i64,
    /// Memory request in MiB.
    pub memory_mib: i64,
    /// Number of GPUs; 0 for a CPU-only pod.
    pub num_gpu: u32,
    /// Per-GPU milli, clamped to `[0, 1000]`; 0 for a CPU-only pod.
    pub gpu_milli: i64,
    /// The raw GPU-model constraint (`""` for none), e.g. `V100M16|V100M32`.
    pub gpu_spec: String,
}

impl PodSpec {
    /// Requested GPU milli: `num_gpu × gpu_milli`.
    pub fn gpu_request(&self) -> i64 {
        i64::from(self.num_gpu) * self.gpu_milli
    }

    /// Whether a node of `model` satisfies the pod's GPU-model constraint.
    pub fn accepts_model(&self, model: &str) -> bool {
        spec_accepts_model(&self.gpu_spec, model)
    }
}

/// Whether a `|`-separated model constraint admits `model` (empty admits all).
pub fn spec_accepts_model(spec: &str, model: &str) -> bool {
    let mut parts = spec.split('|').filter(|p| !p.is_empty()).peekable();
    parts.peek().is_none() || parts.any(|p| p == model)
}

/// Reads a node list (`sn,cpu_milli,memory_mib,gpu,model`).
pub fn read_nodes(path: &Path) -> Result<Vec<NodeSpec>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_nodes(path, &text)
}

/// Reads a pod list (5 or 11 columns).
pub fn read_pods(path: &Path) -> Result<Vec<PodSpec>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_pods(path, &text)
}

/// Parses node-list text; `path` only labels errors.
pub fn parse_nodes(path: &Path, text: &str) -> Result<Vec<NodeSpec>> {
    let table = Table::new(
        path,
        text,
        &["sn", "cpu_milli", "memory_mib", "gpu", "model"],
    )?;
    let mut nodes = Vec::new();
    for row in table.rows() {
        let row = row?;
        let gpus = row.int("gpu")?;
        if !(0..=MAX_GPUS as i64).contains(&gpus) {
            return Err(row.field_error("gpu", format!("expected 0..={MAX_GPUS}, got {gpus}")));
        }
        nodes.push(NodeSpec {
            name: row.text("sn")?.to_string(),
            cpu_milli: row.int("cpu_milli")?,
            memory_mib: row.int("memory_mib")?,
            gpus: gpus as usize,
            model: row.text("model")?.to_string(),
        });
    }
    Ok(nodes)
}

/// Parses pod-list text; `path` only labels errors.
pub fn parse_pods(path: &Path, text: &str) -> Result<Vec<PodSpec>> {
    let table = Table::new(
        path,
        text,
        &["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"],
    )?;
    let mut pods = Vec::new();
    for row in table.rows() {
        let row = row?;
        let num_gpu = row.int("num_gpu")?;
        let num_gpu = u32::try_from(num_gpu).map_err(|_| {
            row.field_error(
                "num_gpu",
                format!("expected a non-negative integer, got {num_gpu}"),
            )
        })?;
        let raw_milli = row.int("gpu_milli")?;
        let (gpu_milli, gpu_spec) = if num_gpu == 0 {
            (0, String::new())
        } else {
            let spec = row.optional_text("gpu_spec").unwrap_or("");
            let spec = if spec.eq_ignore_ascii_case("nan") {
                ""
            } else {
                spec
            };
            (raw_milli.clamp(0, 1000), spec.to_string())
        };
        pods.push(PodSpec {
            name: row.text("name")?.to_string(),
            cpu_milli: row.int("cpu_milli")?,
            memory_mib: row.int("memory_mib")?,
            num_gpu,
            gpu_milli,
            gpu_spec,
        });
    }
    Ok(pods)
}

/// A header-indexed view of a comma-separated file.
struct Table<'a> {
    path: &'a Path,
    columns: Vec<&'a str>,
    lines: Vec<&'a str>,
}

impl<'a> Table<'a> {
    fn new(path: &'a Path, text: &'a str, required: &[&str]) -> Result<Self> {
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| Error::Shape {
            path: path.to_path_buf(),
            line: 1,
            message: "empty file, expected a header line".into(),
        })?;
        let columns: Vec<&str> = header
            .trim_end_matches('\r')
            .split(',')
            .map(str::trim)
            .collect();
        for name in required {
            if !columns.contains(name) {
                return Err(Error::Shape {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("missing column {name:?} in header"),
                });
            }
        }
        Ok(Table {
            path,
            columns,
            lines: lines.collect(),
        })
    }

    fn rows(&self) -> impl Iterator<Item = Result<Row<'_>>> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let fields: Vec<&str> = line
                    .trim_end_matches('\r')
                    .split(',')
                    .map(str::trim)
                    .collect();
                let line_no = i + 2;
                if fields.len() != self.columns.len() {
                    return Err(Error::Shape {
                        path: self.path.to_path_buf(),
                        line: line_no,
                        message: format!(
                            "expected {} columns, got {}",
                            self.columns.len(),
                            fields.len()
                        ),
                    });
                }
                Ok(Row {
                    table: self,
                    line: line_no,
                    fields,
                })
            })
    }
}

/// One data line of a [`Table`].
struct Row<'a> {
    table: &'a Table<'a>,
    line: usize,
    fields: Vec<&'a str>,
}

impl Row<'_> {
    fn optional_text(&self, column: &str) -> Option<&str> {
        let i = self.table.columns.iter().position(|c| *c == column)?;
        Some(self.fields[i])
    }

    fn text(&self, column: &str) -> Result<&str> {
        match self.optional_text(column) {
            Some("") => {
                Err(self.field_error(column, "expected a value, got an empty field".into()))
            }
            Some(v) => Ok(v),
            None => Err(self.field_error(column, "missing column".into())),
        }
    }

    fn int(&self, column: &str) -> Result<i64> {
        let raw = self.text(column)?;
        raw.parse::<i64>()
            .map_err(|_| self.field_error(column, format!("expected integer, got {raw:?}")))
    }

    fn field_error(&self, field: &str, message: String) -> Error {
        Error::Field {
            path: PathBuf::from(self.table.path),
            line: self.line,
            field: field.into(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_pod_list_shapes() {
        let long = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
                    p1,6000,12288,1,460,,LS,Running,0,1,0\n\
                    p0,4000,0,0,0,NaN,BE,Failed,0,1,0\n\
                    p2,8000,1,2,1000,V100M16|V100M32,LS,Running,0,1,0\n";
        let pods = parse_pods(Path::new("pods.csv"), long).unwrap();
        assert_eq!(pods.len(), 3);
        assert_eq!(pods[0].gpu_request(), 460);
        assert_eq!(pods[1].gpu_request(), 0);
        assert!(pods[2].accepts_model("V100M32") && !pods[2].accepts_model("T4"));
        assert!(pods[0].accepts_model("T4"));
        let short = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,2,8,1000\n";
        assert_eq!(
            parse_pods(Path::new("m.csv"), short).unwrap()[0].gpu_request(),
            8000
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,2,x,1000\n";
        let err = parse_pods(Path::new("pods.csv"), text)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "pods.csv line 2: num_gpu: expected integer, got \"x\"");
        let text = "sn,cpu_milli,memory_mib,gpu\n";
        let err = parse_nodes(Path::new("nodes.csv"), text)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "nodes.csv line 1: missing column \"model\" in header");
        let text = "sn,cpu_milli,memory_mib,gpu,model\nn,1,2,3\n";
        let err = parse_nodes(Path::new("nodes.csv"), text)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "nodes.csv line 2: expected 5 columns, got 4");
    }
}

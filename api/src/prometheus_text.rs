//! Reading the Prometheus text exposition format (0.0.4) that coxswain's daemons write: the
//! control plane reads the agents' `/metrics/resource`, the agent reads the GPU plugin's
//! `/metrics`, and `cox top gpus` reads the agents' `/metrics/gpus`. Comments and blank
//! lines are skipped; label values are unescaped.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// The labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The timestamp written after the value, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

/// Every sample of `text`.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|why| ParseError {
            line: number + 1,
            why,
        })?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let Some(split) = line.find(['{', ' ']) else {
        return Err("no value".to_string());
    };
    let (name, rest) = line.split_at(split);
    let mut labels = Vec::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let (key, after) = body.split_once("=\"").ok_or("a label without a value")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("an unterminated label value".to_string()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".to_string()),
                }
            };
            labels.push((key.trim().to_string(), value));
            body = &after[end + 1..];
        }
    } else {
        rest
    };
    let mut fields = rest.split_whitespace();
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text.parse::<f64>().map_err(|e| format!("the value: {e}"))?,
    };
    let timestamp_ms = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|e| format!("the timestamp: {e}"))?,
        ),
        None => None,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels_values_and_timestamps() {
        let text = "# HELP x help\n# TYPE x gauge\n\
                    x{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 2.5 1700000000123\n\
                    up 1\n\nbucket{le=\"+Inf\"} +Inf\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "x");
        assert_eq!(samples[0].label("b"), Some("q\"u\\o\nte"));
        assert_eq!(samples[0].value, 2.5);
        assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!((samples[1].name.as_str(), samples[1].value), ("up", 1.0));
        assert_eq!(samples[1].label("a"), None);
        assert_eq!(samples[2].value, f64::INFINITY);
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, why) in [
            ("ok 1\nx{a=\"1} 3\n", "unterminated"),
            ("x abc\n", "the value"),
            ("x 1 soon\n", "the timestamp"),
            ("lonely\n", "no value"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.to_string().contains(why), "{text:?}: {error}");
        }
        assert_eq!(parse("ok 1\nx{a=\"1} 3\n").unwrap_err().line, 2);
    }
}

//! A strict reader of the Prometheus text exposition format (0.0.4), enough to tell that
//! `/metrics` parses: HELP and TYPE lines, then samples `name{label="value",...} number`.

pub fn validate(text: &str) -> Result<usize, String> {
    let mut samples = 0;
    let mut typed = std::collections::HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if valid_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if valid_name(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at("unknown type"));
                    }
                    if typed.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at("TYPE given twice"));
                    }
                }
                _ => return Err(at("bad comment line")),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        value.parse::<f64>().or_else(|_| match value {
            "+Inf" | "-Inf" | "NaN" => Ok(0.0),
            _ => Err(at("bad value")),
        })?;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                Some(
                    labels
                        .strip_suffix('}')
                        .ok_or_else(|| at("unclosed labels"))?,
                ),
            ),
            None => (series, None),
        };
        if !valid_name(name) {
            return Err(at("bad metric name"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
            .unwrap_or(name);
        if !typed.contains_key(family) {
            return Err(at("sample without TYPE"));
        }
        if let Some(labels) = labels {
            let mut rest = labels;
            while !rest.is_empty() {
                let (label, after) = rest.split_once("=\"").ok_or_else(|| at("bad label"))?;
                if !valid_name(label) {
                    return Err(at("bad label name"));
                }
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| at("unclosed label value"))?;
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
        samples += 1;
    }
    if samples == 0 {
        return Err("no samples".into());
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn the_reader_rejects_broken_text() {
    assert!(validate("# TYPE a counter\na 1\n").is_ok());
    assert!(validate("a 1\n").is_err());
    assert!(validate("# TYPE a counter\na{b=\"c\" 1\n").is_err());
    assert!(validate("# TYPE a counter\na x\n").is_err());
    assert!(validate("# TYPE a gauge\na{b=\"c\\\"d\",e=\"f\"} 2\n").is_ok());
}

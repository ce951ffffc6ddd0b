//! Google Cloud Storage's CORS configuration (Cloud Storage docs, "Cross-origin resource
//! sharing (CORS)" and "Set Bucket CORS"): the JSON array of
//! `{origin, method, responseHeader, maxAgeSeconds}` that `gcloud storage buckets update
//! --cors-file` reads, or a bucket resource holding it under `"cors"`.

use serde_json::Value;

use super::source::{JsonObject, Place, Problem, SourceRule, json_array, parse_json};

const FIELDS: [&str; 4] = ["origin", "method", "responseHeader", "maxAgeSeconds"];

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let value = parse_json(text).map_err(|p| vec![p])?;
    let (rules, path) = match &value {
        Value::Array(_) => (&value, String::new()),
        Value::Object(map) => match map.get("cors") {
            Some(rules) => (rules, "cors".to_owned()),
            None => {
                return Err(vec![Problem::new(
                    Place::File,
                    "expected GCS's JSON: an array of {origin, method, responseHeader, \
                     maxAgeSeconds}, or a bucket with a \"cors\" array",
                )]);
            }
        },
        _ => {
            return Err(vec![Problem::new(
                Place::File,
                "expected GCS's JSON: an array of {origin, method, responseHeader, maxAgeSeconds}",
            )]);
        }
    };
    let items =
        json_array(rules, if path.is_empty() { "(top)" } else { &path }).map_err(|p| vec![p])?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rule_path = format!("{path}[{i}]");
        let rule = (|| -> Result<SourceRule, Problem> {
            let object = JsonObject::new(item, rule_path.clone())?;
            object.check_keys(&FIELDS, &mut problems);
            let response_headers = object.strings("responseHeader")?;
            Ok(SourceRule {
                index: i + 1,
                id: None,
                place: Some(Place::Path(rule_path.clone())),
                origins: object.strings("origin")?,
                methods: object.strings("method")?,
                // GCS uses `responseHeader` both for what a preflight may ask for
                // (Access-Control-Allow-Headers) and what is exposed to the page.
                headers: response_headers.clone(),
                expose: response_headers,
                max_age: object.integer("maxAgeSeconds")?,
                response_header_both: true,
            })
        })();
        match rule {
            Ok(rule) => out.push(rule),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_header_is_read_as_both_lists() {
        let rules = parse(
            r#"[{"origin": ["https://your-example-website.appspot.com"], "method": ["GET"],
                "responseHeader": ["Content-Type"], "maxAgeSeconds": 3600}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].headers, rules[0].expose);
        assert!(rules[0].response_header_both);
        assert_eq!(rules[0].label(), "rule #1");
        let problems = parse(r#"{"cors": [{"origins": []}]}"#).unwrap_err();
        assert_eq!(
            problems[0].render("gcs.json"),
            "gcs.json: cors[0].origins: unknown field \"origins\"; did you mean \"origin\"?"
        );
    }
}

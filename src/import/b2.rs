//! Backblaze B2's CORS rules (B2 docs, "Cross-Origin Resource Sharing Rules"): the
//! `corsRules` array alone, or inside a bucket object as `b2_update_bucket` takes it and
//! `b2_list_buckets` / `b2 bucket get` print it. Each rule: `corsRuleName`, `allowedOrigins`,
//! `allowedOperations`, `allowedHeaders`, `exposeHeaders`, `maxAgeSeconds`.

use serde_json::Value;

use super::source::{JsonObject, Place, Problem, SourceRule, json_array, parse_json};

const FIELDS: [&str; 6] = [
    "corsRuleName",
    "allowedOrigins",
    "allowedOperations",
    "allowedHeaders",
    "exposeHeaders",
    "maxAgeSeconds",
];

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let value = parse_json(text).map_err(|p| vec![p])?;
    let (rules, path) = match &value {
        Value::Array(_) => (&value, String::new()),
        Value::Object(map) => match map.get("corsRules") {
            Some(rules) => (rules, "corsRules".to_owned()),
            None => {
                return Err(vec![Problem::new(
                    Place::File,
                    "expected B2's JSON: a \"corsRules\" array, alone or in a bucket object",
                )]);
            }
        },
        _ => {
            return Err(vec![Problem::new(
                Place::File,
                "expected B2's JSON: a \"corsRules\" array, alone or in a bucket object",
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
            Ok(SourceRule {
                index: i + 1,
                id: object.string("corsRuleName")?,
                place: Some(Place::Path(rule_path.clone())),
                origins: object.strings("allowedOrigins")?,
                methods: object.strings("allowedOperations")?,
                headers: object.strings("allowedHeaders")?,
                expose: object.strings("exposeHeaders")?,
                max_age: object.integer("maxAgeSeconds")?,
                response_header_both: false,
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
    fn reads_the_array_alone_or_in_a_bucket() {
        let rules = r#"[{"corsRuleName": "downloadFromAnyOrigin", "allowedOrigins": ["https"],
            "allowedHeaders": ["range"], "allowedOperations": ["b2_download_file_by_id"],
            "exposeHeaders": ["x-bz-content-sha1"], "maxAgeSeconds": 3600}]"#;
        let bucket =
            format!(r#"{{"bucketName": "b", "bucketType": "allPublic", "corsRules": {rules}}}"#);
        for text in [rules, bucket.as_str()] {
            let parsed = parse(text).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].id.as_deref(), Some("downloadFromAnyOrigin"));
            assert_eq!(parsed[0].methods[0].value, "b2_download_file_by_id");
            assert_eq!(parsed[0].max_age.as_ref().map(|m| m.0), Some(3600));
        }
        let problems = parse(r#"{"corsRules": [{"allowedOrigin": ["x"]}]}"#).unwrap_err();
        assert_eq!(
            problems[0].render("b2.json"),
            "b2.json: corsRules[0].allowedOrigin: unknown field \"allowedOrigin\"; did you mean \"allowedOrigins\"?"
        );
    }
}

//! Backblaze B2's CORS rules (B2 docs, "Cross-Origin Resource Sharing Rules"): the
//! `corsRules` array alone, or inside a bucket object as `b2_update_bucket` takes it and
//! `b2_list_buckets` / `b2 bucket get` print it. Each rule: `corsRuleName`, `allowedOrigins`,
//! `allowedOperations`, `allowedHeaders`, `exposeHeaders`, `maxAgeSeconds`.

use super::source::{Place, Problem, RuleKeys, SourceRule, bare_or_under, json_rules, parse_json};

const KEYS: RuleKeys = RuleKeys {
    id: "corsRuleName",
    origins: "allowedOrigins",
    methods: "allowedOperations",
    headers: "allowedHeaders",
    expose: "exposeHeaders",
    max_age: "maxAgeSeconds",
};

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let value = parse_json(text).map_err(|p| vec![p])?;
    let Some((rules, path)) = bare_or_under(&value, "corsRules") else {
        return Err(vec![Problem::new(
            Place::File,
            "expected B2's JSON: a \"corsRules\" array, alone or in a bucket object",
        )]);
    };
    json_rules(rules, &path, &KEYS.all(), |object, _| KEYS.read(object))
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

//! Cloudflare R2's CORS policy: the S3 shapes (R2's S3 API takes `PutBucketCors`), or the
//! Cloudflare API's `{"rules": [{"allowed": {"origins", "methods", "headers"},
//! "exposeHeaders", "maxAgeSeconds", "id"}]}` (Cloudflare API, R2 "Bucket CORS policy"),
//! also as the API answers it, inside `{"result": ...}`.

use serde_json::Value;

use super::s3;
use super::source::{JsonObject, Place, Problem, RuleKeys, SourceRule, json_rules, parse_json};

const FIELDS: [&str; 4] = ["allowed", "exposeHeaders", "maxAgeSeconds", "id"];
const ALLOWED_FIELDS: [&str; 3] = ["origins", "methods", "headers"];
/// Origins, methods and headers are read from `allowed`, the rest from the rule.
const KEYS: RuleKeys = RuleKeys {
    id: "id",
    origins: "origins",
    methods: "methods",
    headers: "headers",
    expose: "exposeHeaders",
    max_age: "maxAgeSeconds",
};

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    if text.trim_start().starts_with('<') {
        return s3::parse(text);
    }
    let value = parse_json(text).map_err(|p| vec![p])?;
    let (rules, path) = match &value {
        Value::Object(map) if map.contains_key("rules") => (&map["rules"], "rules"),
        Value::Object(map) if map.get("result").is_some_and(|r| r.get("rules").is_some()) => {
            (&map["result"]["rules"], "result.rules")
        }
        _ => return s3::parse_json_rules(&value),
    };
    json_rules(rules, path, &FIELDS, |object, problems| {
        let Some(allowed) = object.map.get("allowed") else {
            return Err(Problem::new(
                Place::Path(object.path.clone()),
                "no \"allowed\" object (origins, methods, headers)",
            ));
        };
        let allowed = JsonObject::new(allowed, object.child_path("allowed"))?;
        allowed.check_keys(&ALLOWED_FIELDS, problems);
        KEYS.read_with_lists(object, &allowed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cloudflare_api_and_the_s3_shapes() {
        let api = r#"{"rules": [{"allowed": {"origins": ["http://localhost:3000"],
            "methods": ["GET"], "headers": ["x-requested-by"]}, "id": "Allow Localhost",
            "exposeHeaders": ["Content-Encoding"], "maxAgeSeconds": 3600}]}"#;
        let rules = parse(api).unwrap();
        assert_eq!(rules[0].id.as_deref(), Some("Allow Localhost"));
        assert_eq!(rules[0].headers[0].value, "x-requested-by");
        assert_eq!(rules[0].expose[0].value, "Content-Encoding");
        let wrapped = format!(r#"{{"success": true, "result": {api}}}"#);
        let unwrapped = parse(&wrapped).unwrap();
        assert_eq!(unwrapped[0].id, rules[0].id);
        assert_eq!(unwrapped[0].origins[0].value, rules[0].origins[0].value);
        assert_eq!(
            unwrapped[0].place,
            Some(Place::Path("result.rules[0]".into()))
        );
        let s3 = r#"[{"AllowedOrigins": ["http://localhost:3000"], "AllowedMethods": ["GET"]}]"#;
        assert_eq!(parse(s3).unwrap()[0].methods[0].value, "GET");
        let problems = parse(r#"{"rules": [{"id": "x"}]}"#).unwrap_err();
        assert_eq!(
            problems[0].render("r2.json"),
            "r2.json: rules[0]: no \"allowed\" object (origins, methods, headers)"
        );
    }
}

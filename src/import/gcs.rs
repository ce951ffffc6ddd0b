//! Google Cloud Storage's CORS configuration (Cloud Storage docs, "Cross-origin resource
//! sharing (CORS)" and "Set Bucket CORS"): the JSON array of
//! `{origin, method, responseHeader, maxAgeSeconds}` that `gcloud storage buckets update
//! --cors-file` reads, or a bucket resource holding it under `"cors"`.

use super::source::{Place, Problem, SourceRule, bare_or_under, json_rules, parse_json};

const FIELDS: [&str; 4] = ["origin", "method", "responseHeader", "maxAgeSeconds"];

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let value = parse_json(text).map_err(|p| vec![p])?;
    let Some((rules, path)) = bare_or_under(&value, "cors") else {
        let message = if value.is_object() {
            "expected GCS's JSON: an array of {origin, method, responseHeader, maxAgeSeconds}, \
             or a bucket with a \"cors\" array"
        } else {
            "expected GCS's JSON: an array of {origin, method, responseHeader, maxAgeSeconds}"
        };
        return Err(vec![Problem::new(Place::File, message)]);
    };
    json_rules(rules, &path, &FIELDS, |object, _| {
        let response_headers = object.strings("responseHeader")?;
        Ok(SourceRule {
            origins: object.strings("origin")?,
            methods: object.strings("method")?,
            // GCS uses `responseHeader` both for what a preflight may ask for
            // (Access-Control-Allow-Headers) and what is exposed to the page.
            headers: response_headers.clone(),
            expose: response_headers,
            max_age: object.integer("maxAgeSeconds")?,
            response_header_both: true,
            ..SourceRule::default()
        })
    })
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

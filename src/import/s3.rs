//! Amazon S3's CORS configuration in its three documented shapes (S3 User Guide, "CORS
//! configuration"; API Reference, `PutBucketCors` / `CORSRule`):
//! - the `CORSConfiguration` XML (`<CORSRule>` with repeated `<AllowedOrigin>`,
//!   `<AllowedMethod>`, `<AllowedHeader>`, `<ExposeHeader>`, `<MaxAgeSeconds>`, `<ID>`);
//! - the AWS CLI JSON, `{"CORSRules": [...]}` (`aws s3api get-bucket-cors` prints it,
//!   `put-bucket-cors --cors-configuration` reads it);
//! - the S3 console's bare array of rules.
//!
//! Cloudflare R2 accepts the same shapes through its S3 API.

use serde_json::Value;

use super::source::{
    Item, Place, Problem, RuleKeys, SourceRule, bare_or_under, json_rules, parse_json, parse_xml,
    xml_integer, xml_place, xml_rules, xml_text,
};

const JSON_KEYS: RuleKeys = RuleKeys {
    id: "ID",
    origins: "AllowedOrigins",
    methods: "AllowedMethods",
    headers: "AllowedHeaders",
    expose: "ExposeHeaders",
    max_age: "MaxAgeSeconds",
};

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    if text.trim_start().starts_with('<') {
        parse_xml_rules(text)
    } else {
        let value = parse_json(text).map_err(|p| vec![p])?;
        parse_json_rules(&value)
    }
}

/// The JSON shapes: `{"CORSRules": [...]}`, `{"CORSConfiguration": {"CORSRules": [...]}}`,
/// or the console's bare array.
pub fn parse_json_rules(value: &Value) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let (rules, path) = match bare_or_under(value, "CORSRules") {
        Some(found) => found,
        None => match value.get("CORSConfiguration") {
            Some(config) => match config.get("CORSRules") {
                Some(rules) => (rules, "CORSConfiguration.CORSRules".to_owned()),
                None => {
                    return Err(vec![Problem::new(
                        Place::Path("CORSConfiguration".into()),
                        "no \"CORSRules\" list",
                    )]);
                }
            },
            None if value.is_object() => {
                return Err(vec![Problem::new(
                    Place::File,
                    "expected S3's JSON: {\"CORSRules\": [...]} (AWS CLI) or an array of rules \
                     (S3 console)",
                )]);
            }
            None => {
                return Err(vec![Problem::new(
                    Place::File,
                    "expected S3's JSON: {\"CORSRules\": [...]} or an array of rules",
                )]);
            }
        },
    };
    json_rules(rules, &path, &JSON_KEYS.all(), |object, _| {
        JSON_KEYS.read(object)
    })
}

fn parse_xml_rules(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let document = parse_xml(text).map_err(|p| vec![p])?;
    let root = document.root_element();
    if root.tag_name().name() != "CORSConfiguration" {
        return Err(vec![Problem::new(
            xml_place(&document, root),
            format!(
                "expected <CORSConfiguration>, found <{}>",
                root.tag_name().name()
            ),
        )]);
    }
    xml_rules(&document, root, "CORSRule", |rule, field, place| {
        let item = |value: String| Item {
            value,
            place: place.clone(),
        };
        match field.tag_name().name() {
            "ID" => rule.id = Some(xml_text(&document, field)?),
            "AllowedOrigin" => rule.origins.push(item(xml_text(&document, field)?)),
            "AllowedMethod" => rule.methods.push(item(xml_text(&document, field)?)),
            "AllowedHeader" => rule.headers.push(item(xml_text(&document, field)?)),
            "ExposeHeader" => rule.expose.push(item(xml_text(&document, field)?)),
            "MaxAgeSeconds" => rule.max_age = Some(xml_integer(&document, field)?),
            other => {
                return Err(Problem::new(
                    place.clone(),
                    format!(
                        "unknown element <{other}> in <CORSRule>; expected ID, AllowedOrigin, \
                         AllowedMethod, AllowedHeader, ExposeHeader or MaxAgeSeconds"
                    ),
                ));
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| i.value.as_str()).collect()
    }

    #[test]
    fn reads_the_three_shapes_alike() {
        let xml = r#"<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
 <CORSRule>
   <ID>puts</ID>
   <AllowedOrigin>http://www.example.com</AllowedOrigin>
   <AllowedMethod>PUT</AllowedMethod>
   <AllowedMethod>POST</AllowedMethod>
   <AllowedHeader>*</AllowedHeader>
   <MaxAgeSeconds>3000</MaxAgeSeconds>
   <ExposeHeader>x-amz-request-id</ExposeHeader>
 </CORSRule>
</CORSConfiguration>"#;
        let cli = r#"{"CORSRules": [{"ID": "puts", "AllowedOrigins": ["http://www.example.com"],
            "AllowedMethods": ["PUT", "POST"], "AllowedHeaders": ["*"],
            "ExposeHeaders": ["x-amz-request-id"], "MaxAgeSeconds": 3000}]}"#;
        let console = cli
            .trim_start_matches("{\"CORSRules\": ")
            .trim_end_matches('}');
        for text in [xml, cli, console] {
            let rules = parse(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            assert_eq!(rules.len(), 1);
            let rule = &rules[0];
            assert_eq!(rule.id.as_deref(), Some("puts"));
            assert_eq!(values(&rule.origins), ["http://www.example.com"]);
            assert_eq!(values(&rule.methods), ["PUT", "POST"]);
            assert_eq!(values(&rule.headers), ["*"]);
            assert_eq!(values(&rule.expose), ["x-amz-request-id"]);
            assert_eq!(rule.max_age.as_ref().map(|m| m.0), Some(3000));
        }
        let rules = parse(xml).unwrap();
        assert_eq!(rules[0].place, Some(Place::Line(2, 2)));
        assert_eq!(rules[0].methods[1].place, Place::Line(6, 4));
    }

    #[test]
    fn every_problem_has_its_place() {
        let problems = parse(
            r#"{"CORSRules": [{"AllowedOrigin": ["x"], "AllowedMethods": "GET", "MaxAgeSeconds": 1.5}]}"#,
        )
        .unwrap_err();
        let rendered: Vec<String> = problems.iter().map(|p| p.render("s3.json")).collect();
        assert!(
            rendered.contains(&"s3.json: CORSRules[0].AllowedOrigin: unknown field \"AllowedOrigin\"; did you mean \"AllowedOrigins\"?".to_owned()),
            "{rendered:#?}"
        );
        let problems = parse(r#"{"CORSRules": [{"AllowedMethods": "GET"}]}"#).unwrap_err();
        assert_eq!(
            problems[0].render("s3.json"),
            "s3.json: CORSRules[0].AllowedMethods: expected an array of strings, found a string"
        );
        let problems = parse(
            "<CORSConfiguration>\n<CORSRule>\n<AllowedOrigins>x</AllowedOrigins>\n<MaxAgeSeconds>soon</MaxAgeSeconds>\n</CORSRule>\n</CORSConfiguration>",
        )
        .unwrap_err();
        let rendered: Vec<String> = problems.iter().map(|p| p.render("s3.xml")).collect();
        assert_eq!(rendered.len(), 2, "{rendered:#?}");
        assert!(rendered[0].starts_with("s3.xml:3:1: unknown element <AllowedOrigins>"));
        assert_eq!(
            rendered[1],
            "s3.xml:4:1: <MaxAgeSeconds> \"soon\" is not a whole number of seconds"
        );
        assert_eq!(
            parse("{}").unwrap_err()[0].render("s3.json"),
            "s3.json: expected S3's JSON: {\"CORSRules\": [...]} (AWS CLI) or an array of rules (S3 console)"
        );
    }
}

//! Azure Blob Storage's CORS rules (Azure Storage REST API, "CORS support for Azure Storage"
//! and "Set Blob Service Properties"): `<Cors>` with up to five `<CorsRule>` elements, alone
//! or inside `<StorageServiceProperties>`. Each rule holds comma-separated lists in
//! `<AllowedOrigins>`, `<AllowedMethods>`, `<AllowedHeaders>`, `<ExposedHeaders>`, and a
//! `<MaxAgeInSeconds>`.

use super::source::{
    Item, Place, Problem, SourceRule, parse_xml, xml_elements, xml_integer, xml_place, xml_rules,
    xml_text,
};

pub fn parse(text: &str) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let document = parse_xml(text).map_err(|p| vec![p])?;
    let root = document.root_element();
    let cors = match root.tag_name().name() {
        "Cors" => Some(root),
        "StorageServiceProperties" => xml_elements(root).find(|n| n.tag_name().name() == "Cors"),
        _ => None,
    };
    let Some(cors) = cors else {
        return Err(vec![Problem::new(
            xml_place(&document, root),
            format!(
                "expected <Cors> (alone or in <StorageServiceProperties>), found <{}>",
                root.tag_name().name()
            ),
        )]);
    };
    xml_rules(&document, cors, "CorsRule", |rule, field, place| {
        let list = |text: String| list(&text, &place);
        match field.tag_name().name() {
            "AllowedOrigins" => rule.origins.extend(list(xml_text(&document, field)?)),
            "AllowedMethods" => rule.methods.extend(list(xml_text(&document, field)?)),
            "AllowedHeaders" => rule.headers.extend(list(xml_text(&document, field)?)),
            "ExposedHeaders" => rule.expose.extend(list(xml_text(&document, field)?)),
            "MaxAgeInSeconds" => rule.max_age = Some(xml_integer(&document, field)?),
            other => {
                return Err(Problem::new(
                    place.clone(),
                    format!(
                        "unknown element <{other}> in <CorsRule>; expected AllowedOrigins, \
                         AllowedMethods, AllowedHeaders, ExposedHeaders or MaxAgeInSeconds"
                    ),
                ));
            }
        }
        Ok(())
    })
}

/// Azure's comma-separated list, each value at its element's place (the element is all the
/// place Azure's XML gives).
fn list(text: &str, place: &Place) -> Vec<Item> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Item {
            value: s.to_owned(),
            place: place.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::source::Place;

    #[test]
    fn reads_comma_separated_lists() {
        let rules = parse(
            "<StorageServiceProperties><Cors>\n<CorsRule>\n\
             <AllowedOrigins>http://www.contoso.com, http://www.fabrikam.com</AllowedOrigins>\n\
             <AllowedMethods>PUT,GET</AllowedMethods>\n\
             <AllowedHeaders>x-ms-meta-data*,x-ms-meta-target*,x-ms-meta-abc</AllowedHeaders>\n\
             <ExposedHeaders>x-ms-meta-*</ExposedHeaders>\n\
             <MaxAgeInSeconds>200</MaxAgeInSeconds>\n</CorsRule>\n</Cors></StorageServiceProperties>",
        )
        .unwrap();
        let values = |items: &[Item]| items.iter().map(|i| i.value.clone()).collect::<Vec<_>>();
        assert_eq!(
            values(&rules[0].origins),
            ["http://www.contoso.com", "http://www.fabrikam.com"]
        );
        assert_eq!(values(&rules[0].methods), ["PUT", "GET"]);
        assert_eq!(rules[0].headers.len(), 3);
        assert_eq!(rules[0].headers[2].place, Place::Line(5, 1));
        assert_eq!(rules[0].max_age.as_ref().map(|m| m.0), Some(200));
        let problems = parse("<Cors><Rule/></Cors>").unwrap_err();
        assert_eq!(
            problems[0].render("azure.xml"),
            "azure.xml:1:7: unexpected <Rule> in <Cors>: expected <CorsRule>"
        );
    }
}

//! Contact properties: the schema the simulated portal knows (standard
//! HubSpot contact properties plus leadgate's custom ones) and the property
//! value checks HubSpot performs on writes.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::errors::PropError;

/// Writable contact properties the simulated portal knows. Other names are
/// answered with `PROPERTY_DOESNT_EXIST`; more can be defined at run time with
/// [`crate::SimHandle::define_property`].
pub const KNOWN_PROPERTIES: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "company",
    "jobtitle",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "website",
    "lifecyclestage",
    "hs_lead_status",
    // leadgate's custom properties
    "leadgate_id",
    "lead_source",
    "leadgate_lead_id",
];

/// Properties HubSpot computes; they can be read and searched but not written.
pub const READ_ONLY_PROPERTIES: &[&str] = &[
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    // Secondary emails: set by merges (and the v1 secondary-email API).
    "hs_additional_emails",
];

/// Internal values of HubSpot's default `lifecyclestage` options.
pub const LIFECYCLE_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

/// Internal values of HubSpot's default `hs_lead_status` options.
pub const LEAD_STATUSES: &[&str] = &[
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
];

/// Properties HubSpot returns on a read when none are asked for.
pub(crate) const DEFAULT_READ_PROPERTIES: &[&str] = &[
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
];

/// Property values of one input. `None` (JSON null) and `""` clear a value.
pub(crate) type Props = BTreeMap<String, Option<String>>;

/// Deserializes a `properties` object whose values may be strings, numbers,
/// booleans or null (HubSpot accepts all of these and stores strings).
pub(crate) fn deserialize_props<'de, D: Deserializer<'de>>(d: D) -> Result<Props, D::Error> {
    struct PropsVisitor;
    impl<'de> Visitor<'de> for PropsVisitor {
        type Value = Props;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of property values")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Props, A::Error> {
            let mut props = Props::new();
            while let Some((name, Scalar(value))) = map.next_entry::<String, Scalar>()? {
                props.insert(name, value);
            }
            Ok(props)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Props, E> {
            Ok(Props::new())
        }
    }
    d.deserialize_any(PropsVisitor)
}

/// A JSON scalar as a string; null as `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// The portal's property definitions: [`KNOWN_PROPERTIES`] plus any defined
/// at run time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Schema {
    extra: HashSet<String>,
}

impl Schema {
    pub(crate) fn define(&mut self, name: &str) {
        if !KNOWN_PROPERTIES.contains(&name) {
            self.extra.insert(name.to_owned());
        }
    }

    /// Whether `name` can be written.
    pub(crate) fn is_writable(&self, name: &str) -> bool {
        KNOWN_PROPERTIES.contains(&name) || self.extra.contains(name)
    }

    /// Whether `name` can be read (returned, searched).
    pub(crate) fn is_readable(&self, name: &str) -> bool {
        self.is_writable(name) || READ_ONLY_PROPERTIES.contains(&name)
    }

    /// Checks every property of one input; all problems are reported, in
    /// property-name order, as HubSpot does.
    pub(crate) fn validate(&self, props: &Props) -> Result<(), Vec<PropError>> {
        let errors: Vec<PropError> = props
            .iter()
            .filter_map(|(name, value)| self.check(name, value.as_deref()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, name: &str, value: Option<&str>) -> Option<PropError> {
        if READ_ONLY_PROPERTIES.contains(&name) {
            return Some(PropError::new(
                name,
                "READ_ONLY_VALUE",
                format!("\"{name}\" is a read only property; its value cannot be set."),
            ));
        }
        if !self.is_writable(name) {
            return Some(PropError::new(
                name,
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{name}\" does not exist"),
            ));
        }
        let value = value.filter(|v| !v.is_empty())?;
        if name == "email" {
            return (!is_valid_email(value)).then(|| {
                PropError::new(
                    name,
                    "INVALID_EMAIL",
                    format!("Email address {value} is invalid"),
                )
            });
        }
        if has_outer_whitespace(value) {
            return Some(PropError::new(
                name,
                "LEADING_TRAILING_WHITESPACE",
                format!("\"{value}\" includes leading or trailing whitespace."),
            ));
        }
        let options = match name {
            "lifecyclestage" => LIFECYCLE_STAGES,
            "hs_lead_status" => LEAD_STATUSES,
            _ => return None,
        };
        (!options.contains(&value)).then(|| {
            PropError::new(
                name,
                "INVALID_OPTION",
                format!(
                    "{value} was not one of the allowed options: [{}]",
                    options.join(", ")
                ),
            )
        })
    }
}

fn is_invisible_or_space(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Leading or trailing whitespace, including invisible characters.
pub(crate) fn has_outer_whitespace(value: &str) -> bool {
    value.starts_with(is_invisible_or_space) || value.ends_with(is_invisible_or_space)
}

/// `local@domain.tld`: one `@`, no whitespace, dot-separated domain labels and
/// an alphabetic top-level domain of two or more letters.
pub fn is_valid_email(email: &str) -> bool {
    if email
        .chars()
        .any(|c| is_invisible_or_space(c) || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local.contains(|c: char| "()<>[]\\,;:\"@".contains(c))
    {
        return false;
    }
    let mut labels = domain.split('.').peekable();
    let mut count = 0;
    let mut tld = "";
    while let Some(label) = labels.next() {
        let ok = !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return false;
        }
        count += 1;
        if labels.peek().is_none() {
            tld = label;
        }
    }
    count >= 2 && tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn emails() {
        for good in ["jane@example.com", "j.doe+x@mail.example.co.uk", "a@b.io"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "jane@",
            "jane",
            "@x.com",
            "jane@x",
            "jane @x.com",
            " jane@x.com",
            "jane@x.c",
            "jane@@x.com",
            "jane@x..com",
            "jane@x.c0m",
            "jane@-x.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_hubspot_codes() {
        let schema = Schema::default();
        let errors = schema
            .validate(&props(&[
                ("email", "jane@"),
                ("favourite_colour", "blue"),
                ("lifecyclestage", "Lead"),
                ("city", " Bonn"),
                ("hs_object_id", "1"),
                ("firstname", "Jane"),
            ]))
            .unwrap_err();
        let codes: Vec<(&str, &str)> = errors.iter().map(|e| (e.name.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("city", "LEADING_TRAILING_WHITESPACE"),
                ("email", "INVALID_EMAIL"),
                ("favourite_colour", "PROPERTY_DOESNT_EXIST"),
                ("hs_object_id", "READ_ONLY_VALUE"),
                ("lifecyclestage", "INVALID_OPTION"),
            ]
        );
        assert_eq!(errors[1].message, "Email address jane@ is invalid");
    }

    #[test]
    fn defined_properties_and_clearing_are_accepted() {
        let mut schema = Schema::default();
        assert!(schema.validate(&props(&[("shoe_size", "44")])).is_err());
        schema.define("shoe_size");
        assert!(schema.validate(&props(&[("shoe_size", "44")])).is_ok());
        let mut cleared = Props::new();
        cleared.insert("email".into(), None);
        cleared.insert("lifecyclestage".into(), Some(String::new()));
        assert!(schema.validate(&cleared).is_ok());
    }

    #[test]
    fn scalars_become_strings() {
        #[derive(Deserialize)]
        struct Input {
            #[serde(deserialize_with = "deserialize_props")]
            properties: Props,
        }
        let input: Input =
            serde_json::from_str(r#"{"properties":{"a":"x","b":5,"c":true,"d":null,"e":1.5}}"#)
                .unwrap();
        assert_eq!(input.properties["a"].as_deref(), Some("x"));
        assert_eq!(input.properties["b"].as_deref(), Some("5"));
        assert_eq!(input.properties["c"].as_deref(), Some("true"));
        assert_eq!(input.properties["d"], None);
        assert_eq!(input.properties["e"].as_deref(), Some("1.5"));
        assert!(serde_json::from_str::<Input>(r#"{"properties":{"a":[1]}}"#).is_err());
    }
}

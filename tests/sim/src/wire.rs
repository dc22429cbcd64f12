//! HubSpot's request and response bodies (SimplePublicObject, BatchResponse,
//! search), the query string, and JSON parsing with HubSpot's error wording.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::ApiError;
use crate::props::{DEFAULT_READ_PROPERTIES, Props, Scalar, Schema, deserialize_props};
use crate::store::{Contact, format_iso};

/// Parses a JSON body; a parse failure is HubSpot's "Invalid input JSON" 400.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::invalid_json(&err))
}

/// An id given as a JSON string or number.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d)?
        .0
        .ok_or_else(|| serde::de::Error::custom("id must not be null"))
}

fn de_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.0)
}

/// `{"properties":{..},"associations":[..],"objectWriteTraceId":".."}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateInput {
    #[serde(default, deserialize_with = "deserialize_props")]
    pub properties: Props,
    #[serde(default, deserialize_with = "de_opt_id")]
    pub object_write_trace_id: Option<String>,
}

/// `{"idProperty":"email","id":"..","properties":{..},"objectWriteTraceId":".."}`
/// (batch upsert and batch update inputs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdInput {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub id_property: Option<String>,
    #[serde(default, deserialize_with = "deserialize_props")]
    pub properties: Props,
    #[serde(default, deserialize_with = "de_opt_id")]
    pub object_write_trace_id: Option<String>,
}

/// `{"inputs":[..]}`
#[derive(Debug, Deserialize)]
pub(crate) struct BatchInput<T> {
    pub inputs: Vec<T>,
}

/// `{"idProperty":"email","inputs":[{"id":".."}],"properties":[..]}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchReadInput {
    pub inputs: Vec<ReadId>,
    #[serde(default)]
    pub properties: Vec<String>,
    #[serde(default)]
    pub id_property: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReadId {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
}

/// The search request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SearchInput {
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    pub properties: Vec<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default, deserialize_with = "de_opt_id")]
    pub after: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FilterGroup {
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Filter {
    pub property_name: String,
    pub operator: String,
    #[serde(default)]
    pub value: Scalar,
    #[serde(default)]
    pub values: Vec<Scalar>,
}

/// Properties of an answer: all of a record's (writes) or a selection where
/// requested-but-unset properties are `null` (reads).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PropsOut {
    Full(BTreeMap<String, String>),
    Selected(BTreeMap<String, Option<String>>),
}

/// HubSpot's SimplePublicObject (plus `new` in upsert answers).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectOut {
    pub id: String,
    pub properties: PropsOut,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
}

impl ObjectOut {
    /// Every property of a record that was just written.
    pub(crate) fn full(contact: Contact, new: Option<bool>) -> Self {
        // createdate / lastmodifieddate already hold the ISO forms
        let iso = |name: &str, t| {
            contact
                .properties
                .get(name)
                .cloned()
                .unwrap_or_else(|| format_iso(t))
        };
        let created_at = iso("createdate", contact.created_at);
        let updated_at = iso("lastmodifieddate", contact.updated_at);
        ObjectOut {
            id: contact.id,
            properties: PropsOut::Full(contact.properties),
            created_at,
            updated_at,
            archived: false,
            new,
        }
    }

    /// The properties a read asked for (HubSpot's default set when none).
    pub(crate) fn selected(contact: &Contact, wanted: &[String], schema: &Schema) -> Self {
        let mut properties = BTreeMap::new();
        let mut put = |name: &str| {
            properties.insert(name.to_owned(), contact.properties.get(name).cloned());
        };
        if wanted.is_empty() {
            DEFAULT_READ_PROPERTIES.iter().for_each(|name| put(name));
        } else {
            for name in ["createdate", "hs_object_id", "lastmodifieddate"] {
                put(name);
            }
            wanted
                .iter()
                .filter(|name| schema.is_readable(name))
                .for_each(|name| put(name));
        }
        ObjectOut {
            id: contact.id.clone(),
            properties: PropsOut::Selected(properties),
            created_at: format_iso(contact.created_at),
            updated_at: format_iso(contact.updated_at),
            archived: false,
            new: None,
        }
    }
}

/// HubSpot's BatchResponse (BatchResponseWithErrors when `errors` is set).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchOut {
    pub status: &'static str,
    pub results: Vec<ObjectOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Value>,
    pub started_at: String,
    pub completed_at: String,
}

/// A decoded query string.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        Query { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A list parameter given comma-separated and/or repeated
    /// (`properties=a,b&properties=c`).
    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lists_and_decoding() {
        let q = Query::parse(Some(
            "properties=email,firstname&properties=city&idProperty=email&x=a%40b.com+c&bad=%zz&end=%4",
        ));
        assert_eq!(q.list("properties"), vec!["email", "firstname", "city"]);
        assert_eq!(q.get("idProperty"), Some("email"));
        assert_eq!(q.get("x"), Some("a@b.com c"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("end"), Some("%4"));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn ids_may_be_numbers() {
        let input: BatchInput<IdInput> =
            serde_json::from_str(r#"{"inputs":[{"id":51000000001,"properties":{}}]}"#).unwrap();
        assert_eq!(input.inputs[0].id, "51000000001");
    }
}

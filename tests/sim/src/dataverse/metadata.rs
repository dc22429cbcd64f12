//! The slice of Dataverse's metadata API (`EntityDefinitions`) that
//! clients read before they write: Microsoft's own Python SDK
//! (`PowerPlatform-Dataverse-Client`) resolves a table's entity set and id
//! column with `GET EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'lead'`
//! and a choice column's labels with `GET EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)`.
//!
//! Served: the collection (with `$select` and `$filter`), one table by
//! `LogicalName=` or `MetadataId`, its `Attributes` (optionally cast to
//! `Microsoft.Dynamics.CRM.PicklistAttributeMetadata` or
//! `StringAttributeMetadata`) and its `Keys`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, Key, Resource};
use super::schema::{Kind, Schema, Table};
use super::wire::{Answer, DvError};
use super::{DataverseState, Env};
use crate::wire::Query;

/// Made-up, fixed `MetadataId`s.
fn metadata_id(table: Table) -> &'static str {
    match table {
        Table::Lead => "e3fe4ff2-a630-49bb-a1e9-debc3a076815",
        Table::Contact => "608861bc-50a4-4c5f-a02c-21fe1943e2cf",
    }
}

fn label(text: &str) -> Value {
    let localized = json!({"Label": text, "LanguageCode": 1033, "IsManaged": true});
    json!({"LocalizedLabels": [localized.clone()], "UserLocalizedLabel": localized})
}

const LEAD_SOURCE_LABELS: [(i64, &str); 10] = [
    (1, "Advertisement"),
    (2, "Employee Referral"),
    (3, "External Referral"),
    (4, "Partner"),
    (5, "Public Relations"),
    (6, "Seminar"),
    (7, "Trade Show"),
    (8, "Web"),
    (9, "Word of Mouth"),
    (10, "Other"),
];

fn option_label(column: &str, value: i64) -> String {
    match column {
        "leadsourcecode" => LEAD_SOURCE_LABELS
            .iter()
            .find(|(v, _)| *v == value)
            .map_or_else(|| value.to_string(), |(_, l)| (*l).to_owned()),
        "leadqualitycode" => match value {
            1 => "Hot".into(),
            2 => "Warm".into(),
            3 => "Cold".into(),
            other => other.to_string(),
        },
        _ => value.to_string(),
    }
}

fn entity(table: Table) -> Map<String, Value> {
    let (schema_name, display, code) = match table {
        Table::Lead => ("Lead", "Lead", 4),
        Table::Contact => ("Contact", "Contact", 2),
    };
    let value = json!({
        "MetadataId": metadata_id(table),
        "LogicalName": table.logical_name(),
        "SchemaName": schema_name,
        "EntitySetName": table.entity_set(),
        "LogicalCollectionName": table.entity_set(),
        "PrimaryIdAttribute": table.id_column(),
        "PrimaryNameAttribute": "fullname",
        "ObjectTypeCode": code,
        "IsCustomEntity": false,
        "DisplayName": label(display),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn not_property(type_name: &str, name: &str) -> DvError {
    DvError::bad_query(format!(
        "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
    ))
}

/// Keeps the `$select`ed properties (and `MetadataId`, always sent).
fn selected(mut object: Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    if let Some(names) = select {
        object
            .retain(|k, _| k == "MetadataId" || k.starts_with('@') || names.iter().any(|n| n == k));
    }
    object
}

fn select_list(
    raw: Option<&str>,
    allowed: &Map<String, Value>,
    type_name: &str,
) -> Result<Option<Vec<String>>, DvError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    raw.split(',')
        .map(|n| {
            let n = n.trim();
            if allowed.contains_key(n) {
                Ok(n.to_owned())
            } else {
                Err(not_property(type_name, n))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn attribute(
    schema: &Schema,
    table: Table,
    name: &str,
    kind: &Kind,
    expand_options: bool,
) -> Map<String, Value> {
    let (odata_type, attribute_type) = match kind {
        Kind::Text(_) => ("StringAttributeMetadata", "String"),
        Kind::Choice(_) if matches!(name, "statecode") => ("StateAttributeMetadata", "State"),
        Kind::Choice(_) if matches!(name, "statuscode") => ("StatusAttributeMetadata", "Status"),
        Kind::Choice(_) => ("PicklistAttributeMetadata", "Picklist"),
        Kind::Lookup(_) => ("LookupAttributeMetadata", "Lookup"),
        Kind::System if name == "versionnumber" => ("BigIntAttributeMetadata", "BigInt"),
        Kind::System if name == "fullname" => ("StringAttributeMetadata", "String"),
        Kind::System => ("DateTimeAttributeMetadata", "DateTime"),
    };
    let mut out = Map::new();
    out.insert(
        "@odata.type".into(),
        format!("#Microsoft.Dynamics.CRM.{odata_type}").into(),
    );
    out.insert(
        "MetadataId".into(),
        super::store::stable_guid(&format!("{}.{name}", table.logical_name())).into(),
    );
    out.insert("LogicalName".into(), name.into());
    out.insert("SchemaName".into(), name.into());
    out.insert("EntityLogicalName".into(), table.logical_name().into());
    out.insert("AttributeType".into(), attribute_type.into());
    out.insert(
        "IsValidForCreate".into(),
        (!matches!(kind, Kind::System)).into(),
    );
    out.insert(
        "IsValidForUpdate".into(),
        (!matches!(kind, Kind::System)).into(),
    );
    if let Kind::Text(max) = kind {
        out.insert("MaxLength".into(), (*max).into());
    }
    let is_key = schema
        .keys(table)
        .iter()
        .any(|k| k.columns.iter().any(|c| c == name));
    out.insert("IsPrimaryId".into(), false.into());
    out.insert("IsAlternateKey".into(), is_key.into());
    if let (Kind::Choice(values), true) = (kind, expand_options) {
        let options: Vec<Value> = values
            .iter()
            .map(|v| json!({"Value": v, "Label": label(&option_label(name, *v))}))
            .collect();
        out.insert(
            "OptionSet".into(),
            json!({
                "MetadataId": super::store::stable_guid(&format!("{}.{name}.options", table.logical_name())),
                "Options": options,
            }),
        );
    }
    out
}

fn attributes(schema: &Schema, table: Table, expand_options: bool) -> Vec<Map<String, Value>> {
    let mut out = vec![{
        let mut id = attribute(schema, table, table.id_column(), &Kind::System, false);
        id.insert(
            "@odata.type".into(),
            "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata".into(),
        );
        id.insert("AttributeType".into(), "Uniqueidentifier".into());
        id.insert("IsPrimaryId".into(), true.into());
        id.insert("IsValidForCreate".into(), true.into());
        id
    }];
    out.extend(
        schema
            .columns(table)
            .iter()
            .map(|c| attribute(schema, table, &c.name, &c.kind, expand_options)),
    );
    out
}

fn the_table(key: Option<&Key>) -> Result<Table, DvError> {
    let missing = |name: &str| {
        DvError::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("Could not find entity with name '{name}'."),
        )
    };
    match key {
        Some(Key::Alternate(pairs)) => match pairs.as_slice() {
            [(k, v)] if k == "LogicalName" => Table::ALL
                .into_iter()
                .find(|t| t.logical_name() == v)
                .ok_or_else(|| missing(v)),
            _ => Err(DvError::bad_query("Bad Request - Error in query syntax.")),
        },
        Some(Key::Id(id)) => Table::ALL
            .into_iter()
            .find(|t| metadata_id(*t) == id)
            .ok_or_else(|| missing(id)),
        None => Err(DvError::segment("EntityDefinitions")),
    }
}

/// Answers a `GET EntityDefinitions…`.
pub(crate) fn answer(
    dv: &DataverseState,
    env: &Env<'_>,
    resource: &Resource,
    method: &str,
    q: &Query,
) -> Result<Answer, DvError> {
    if method != "GET" {
        return Err(DvError::method(method, "EntityDefinitions"));
    }
    let context =
        |suffix: &str| format!("{}/api/data/{}/$metadata#{suffix}", env.base, env.version);
    match (&resource.key, resource.rest.as_deref()) {
        (None, None) => {
            let sample = entity(Table::Lead);
            let select = select_list(q.get("$select"), &sample, "EntityMetadata")?;
            let known = |name: &str| {
                if sample.contains_key(name) {
                    Ok(())
                } else {
                    Err(not_property("EntityMetadata", name))
                }
            };
            let filter = odata::filter_with(q.get("$filter"), &known)?;
            let value: Vec<Value> = Table::ALL
                .into_iter()
                .map(entity)
                .filter(|e| {
                    filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&|c: &str| e.get(c).cloned()))
                })
                .map(|e| Value::Object(selected(e, select.as_deref())))
                .collect();
            let ctx = match &select {
                Some(names) => context(&format!("EntityDefinitions({})", names.join(","))),
                None => context("EntityDefinitions"),
            };
            Ok(Answer::json(
                StatusCode::OK,
                json!({"@odata.context": ctx, "value": value}),
            ))
        }
        (key, None) => {
            let table = the_table(key.as_ref())?;
            let e = entity(table);
            let select = select_list(q.get("$select"), &e, "EntityMetadata")?;
            let mut body = selected(e, select.as_deref());
            body.insert(
                "@odata.context".into(),
                context("EntityDefinitions/$entity").into(),
            );
            Ok(Answer::json(StatusCode::OK, Value::Object(body)))
        }
        (key, Some(rest)) => {
            let table = the_table(key.as_ref())?;
            let expand = q.get("$expand").is_some_and(|e| e.contains("OptionSet"));
            let (cast, keys) = match rest {
                "Attributes" => (None, false),
                "Keys" => (None, true),
                other => match other.strip_prefix("Attributes/Microsoft.Dynamics.CRM.") {
                    Some(cast) => (Some(cast), false),
                    None => {
                        return Err(DvError::segment(other.rsplit('/').next().unwrap_or(other)));
                    }
                },
            };
            if keys {
                let value: Vec<Value> = dv
                    .schema
                    .keys(table)
                    .iter()
                    .map(|k| {
                        json!({
                            "MetadataId": super::store::stable_guid(&format!("{}.key.{}", table.logical_name(), k.name)),
                            "LogicalName": k.name.to_lowercase().replace(' ', "_"),
                            "SchemaName": k.name.replace(' ', "_"),
                            "EntityLogicalName": table.logical_name(),
                            "KeyAttributes": k.columns,
                            "EntityKeyIndexStatus": "Active",
                            "DisplayName": label(&k.name),
                        })
                    })
                    .collect();
                return Ok(Answer::json(
                    StatusCode::OK,
                    json!({"@odata.context": context(&format!("EntityDefinitions('{}')/Keys", metadata_id(table))), "value": value}),
                ));
            }
            let all = attributes(&dv.schema, table, expand);
            let value: Vec<Value> = all
                .into_iter()
                .filter(|a| {
                    cast.is_none_or(|c| {
                        a.get("@odata.type").and_then(Value::as_str)
                            == Some(&format!("#Microsoft.Dynamics.CRM.{c}"))
                    })
                })
                .map(|mut a| {
                    if let Some(names) = q
                        .get("$select")
                        .map(|s| s.split(',').map(str::trim).collect::<Vec<_>>())
                    {
                        a.retain(|k, _| {
                            k == "MetadataId"
                                || k == "@odata.type"
                                || k == "OptionSet"
                                || names.contains(&k.as_str())
                        });
                    }
                    Value::Object(a)
                })
                .collect();
            Ok(Answer::json(
                StatusCode::OK,
                json!({"@odata.context": context(&format!("EntityDefinitions('{}')/Attributes", metadata_id(table))), "value": value}),
            ))
        }
    }
}

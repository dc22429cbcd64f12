//! The simulated org's metadata: which sObjects exist (Lead, Contact),
//! their fields, and how a write's field values are checked, the way
//! Salesforce checks them (`shared/crm-apis.md` §2.5, §2.8):
//!
//! - field names in a body are matched ignoring case (Salesforce accepts
//!   `"lastname"` for `LastName`) and answered under their API name;
//! - an unknown field is `INVALID_FIELD` "No such column 'Foo__c' on
//!   sobject of type Lead", `Id` in a body is `INVALID_FIELD` "The Id field
//!   should not be specified in the sobject data.", a read-only field is
//!   `INVALID_FIELD_FOR_INSERT_UPDATE`;
//! - an empty string is stored as null (Salesforce has no empty text);
//! - `INVALID_EMAIL_ADDRESS` "Email: invalid email address: x" with
//!   `fields:["Email"]`, `STRING_TOO_LONG` past a field's length, and
//!   `REQUIRED_FIELD_MISSING` "Required fields are missing: [LastName,
//!   Company]" on the record as it would be saved (so an update that
//!   blanks `LastName` fails too).
//!
//! Custom fields (`__c`): `Leadgate_Id__c` and `External_Id__c` on both
//! objects, External ID and Unique; more through
//! [`crate::SimHandle::define_salesforce_field`].

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::wire::SfError;

/// The sObjects the simulated org has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SObject {
    Lead,
    Contact,
}

impl SObject {
    pub(crate) const ALL: [SObject; 2] = [SObject::Lead, SObject::Contact];

    pub(crate) fn name(self) -> &'static str {
        match self {
            SObject::Lead => "Lead",
            SObject::Contact => "Contact",
        }
    }

    /// The 3-character key prefix of the object's record ids.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            SObject::Lead => "00Q",
            SObject::Contact => "003",
        }
    }

    /// An sObject name as a URL or SOQL gives it; Salesforce ignores case.
    pub(crate) fn parse(name: &str) -> Option<SObject> {
        SObject::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
    }

    /// The object whose key prefix starts `id`.
    pub(crate) fn of_id(id: &str) -> Option<SObject> {
        SObject::ALL
            .into_iter()
            .find(|o| id.get(..3) == Some(o.prefix()))
    }
}

/// A field's data type, as `describe` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Text,
    Email,
    Phone,
    Url,
    Picklist,
    TextArea,
    Boolean,
    DateTime,
    Date,
    Reference,
}

impl FieldType {
    fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Text => "string",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::TextArea => "textarea",
            FieldType::Boolean => "boolean",
            FieldType::DateTime => "datetime",
            FieldType::Date => "date",
            FieldType::Reference => "reference",
        }
    }
}

/// One field of an sObject.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// API name, e.g. `LastName`, `Leadgate_Id__c`.
    pub name: String,
    pub kind: FieldType,
    /// Longest text value accepted.
    pub length: usize,
    /// Whether a create or update may set it.
    pub writable: bool,
    /// A record cannot be saved without a value.
    pub required: bool,
    /// `Some(unique)` for an External ID field.
    pub external_id: Option<bool>,
}

impl Field {
    fn new(name: &str, kind: FieldType, length: usize) -> Field {
        Field {
            name: name.to_owned(),
            kind,
            length,
            writable: true,
            required: false,
            external_id: None,
        }
    }

    fn read_only(mut self) -> Field {
        self.writable = false;
        self
    }

    fn required(mut self) -> Field {
        self.required = true;
        self
    }

    /// A custom text field (255 characters), optionally an External ID.
    pub(crate) fn custom(name: &str, external_id: Option<bool>) -> Field {
        Field {
            external_id,
            ..Field::new(name, FieldType::Text, 255)
        }
    }

    /// Whether an upsert may key on this field.
    pub(crate) fn is_external_id(&self) -> bool {
        self.external_id.is_some()
    }

    /// Whether two records may not share a value.
    pub(crate) fn is_unique(&self) -> bool {
        self.external_id == Some(true)
    }

    pub(crate) fn is_custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    /// The field's label, as Salesforce puts it in messages: `LastName` →
    /// "Last Name", `Leadgate_Id__c` → "Leadgate Id".
    pub(crate) fn label(&self) -> String {
        if let Some(base) = self.name.strip_suffix("__c") {
            return base.replace('_', " ");
        }
        let mut label = String::new();
        for (i, c) in self.name.chars().enumerate() {
            if i > 0 && c.is_ascii_uppercase() {
                label.push(' ');
            }
            label.push(c);
        }
        label
    }

    /// The field's entry in a `describe` answer.
    pub(crate) fn describe(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "label": self.label(),
            "type": self.kind.describe_name(),
            "length": if matches!(self.kind, FieldType::Boolean | FieldType::DateTime | FieldType::Date) { 0 } else { self.length },
            "custom": self.is_custom(),
            "externalId": self.is_external_id(),
            "unique": self.is_unique(),
            "idLookup": self.kind == FieldType::Id || self.is_external_id(),
            "nillable": !self.required && self.kind != FieldType::Boolean && self.kind != FieldType::Id,
            "createable": self.writable,
            "updateable": self.writable,
            "defaultedOnCreate": matches!(self.name.as_str(), "Status" | "IsConverted" | "IsDeleted"),
        })
    }
}

/// The Lead status a new lead gets when none is given.
pub(crate) const DEFAULT_LEAD_STATUS: &str = "Open - Not Contacted";
/// The status conversion sets.
pub(crate) const CONVERTED_LEAD_STATUS: &str = "Closed - Converted";

fn system_fields() -> Vec<Field> {
    vec![
        Field::new("Id", FieldType::Id, 18).read_only(),
        Field::new("IsDeleted", FieldType::Boolean, 0).read_only(),
        Field::new("Name", FieldType::Text, 121).read_only(),
    ]
}

fn audit_fields() -> Vec<Field> {
    vec![
        Field::new("CreatedDate", FieldType::DateTime, 0).read_only(),
        Field::new("LastModifiedDate", FieldType::DateTime, 0).read_only(),
        Field::new("SystemModstamp", FieldType::DateTime, 0).read_only(),
    ]
}

fn lead_fields() -> Vec<Field> {
    use FieldType::*;
    let mut fields = system_fields();
    fields.extend([
        Field::new("FirstName", Text, 40),
        Field::new("LastName", Text, 80).required(),
        Field::new("Email", Email, 80),
        Field::new("Phone", Phone, 40),
        Field::new("MobilePhone", Phone, 40),
        Field::new("Company", Text, 255).required(),
        Field::new("Title", Text, 128),
        Field::new("Street", TextArea, 255),
        Field::new("City", Text, 40),
        Field::new("State", Text, 80),
        Field::new("PostalCode", Text, 20),
        Field::new("Country", Text, 80),
        Field::new("LeadSource", Picklist, 255),
        Field::new("Status", Picklist, 255).required(),
        Field::new("Website", Url, 255),
        Field::new("Description", TextArea, 32_000),
        Field::new("IsConverted", Boolean, 0).read_only(),
        Field::new("ConvertedDate", Date, 0).read_only(),
        Field::new("ConvertedAccountId", Reference, 18).read_only(),
        Field::new("ConvertedContactId", Reference, 18).read_only(),
    ]);
    fields.extend(audit_fields());
    fields
}

fn contact_fields() -> Vec<Field> {
    use FieldType::*;
    let mut fields = system_fields();
    fields.extend([
        Field::new("FirstName", Text, 40),
        Field::new("LastName", Text, 80).required(),
        Field::new("Email", Email, 80),
        Field::new("Phone", Phone, 40),
        Field::new("MobilePhone", Phone, 40),
        Field::new("Title", Text, 128),
        Field::new("AccountId", Reference, 18),
        Field::new("MailingStreet", TextArea, 255),
        Field::new("MailingCity", Text, 40),
        Field::new("MailingState", Text, 80),
        Field::new("MailingPostalCode", Text, 20),
        Field::new("MailingCountry", Text, 80),
        Field::new("LeadSource", Picklist, 255),
        Field::new("Department", Text, 80),
        Field::new("Description", TextArea, 32_000),
    ]);
    fields.extend(audit_fields());
    fields
}

/// Every object's fields, in describe order.
#[derive(Clone, Debug)]
pub(crate) struct Schema {
    lead: Vec<Field>,
    contact: Vec<Field>,
}

impl Default for Schema {
    fn default() -> Self {
        let custom = || {
            vec![
                Field::custom("Leadgate_Id__c", Some(true)),
                Field::custom("External_Id__c", Some(true)),
            ]
        };
        let mut lead = lead_fields();
        lead.extend(custom());
        let mut contact = contact_fields();
        contact.extend(custom());
        Schema { lead, contact }
    }
}

/// Why a field name in a body cannot be written at all. Salesforce stops
/// at the first such name, before looking at any value.
pub(crate) fn name_error(object: SObject, key: &str, field: Option<&Field>) -> Option<SfError> {
    match field {
        None => Some(SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("No such column '{key}' on sobject of type {}", object.name()),
        )),
        Some(f) if f.kind == FieldType::Id => Some(SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "The Id field should not be specified in the sobject data.".to_owned(),
        )),
        Some(f) if !f.writable => Some(
            SfError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    f.name
                ),
            )
            .with_fields(vec![f.name.clone()]),
        ),
        Some(_) => None,
    }
}

/// A body's field values after the name check: the values to store (API
/// names, nulls for blanked fields) and the problems with the values
/// themselves.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub values: Vec<(String, Value)>,
    pub errors: Vec<SfError>,
}

impl Schema {
    pub(crate) fn fields(&self, object: SObject) -> &[Field] {
        match object {
            SObject::Lead => &self.lead,
            SObject::Contact => &self.contact,
        }
    }

    /// A field by name, ignoring case.
    pub(crate) fn field(&self, object: SObject, name: &str) -> Option<&Field> {
        self.fields(object)
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Adds a custom field (or makes an existing one an External ID).
    /// Returns false when the name is not a custom field name.
    pub(crate) fn define(
        &mut self,
        object: SObject,
        name: &str,
        external_id: Option<bool>,
    ) -> bool {
        if !name.ends_with("__c") || name.len() <= 3 || name.contains(char::is_whitespace) {
            return false;
        }
        let fields = match object {
            SObject::Lead => &mut self.lead,
            SObject::Contact => &mut self.contact,
        };
        match fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(existing) => existing.external_id = external_id,
            None => fields.push(Field::custom(name, external_id)),
        }
        true
    }

    /// Checks a body's field names (the first bad one is the whole
    /// answer) and then its values. `attributes` (the sObject Collections
    /// type map) is not a field.
    pub(crate) fn prepare(
        &self,
        object: SObject,
        body: &Map<String, Value>,
    ) -> Result<Prepared, SfError> {
        let mut prepared = Prepared::default();
        for (key, value) in body {
            if key == "attributes" {
                continue;
            }
            let field = self.field(object, key);
            if let Some(error) = name_error(object, key, field) {
                return Err(error);
            }
            let Some(field) = field else { continue };
            match coerce(field, value) {
                Ok(value) => {
                    if let Some(error) = check_value(field, &value) {
                        prepared.errors.push(error);
                    }
                    prepared.values.push((field.name.clone(), value));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(prepared)
    }

    /// `REQUIRED_FIELD_MISSING` for the record as it would be saved.
    pub(crate) fn missing_required(
        &self,
        object: SObject,
        record: &Map<String, Value>,
    ) -> Option<SfError> {
        let missing: Vec<String> = self
            .fields(object)
            .iter()
            .filter(|f| f.required && record.get(&f.name).is_none_or(Value::is_null))
            .map(|f| f.name.clone())
            .collect();
        (!missing.is_empty()).then(|| {
            SfError::new(
                StatusCode::BAD_REQUEST,
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
            )
            .with_fields(missing)
        })
    }
}

/// A JSON value as the field stores it: text fields take strings (numbers
/// and booleans as their text), an empty string is null; objects and
/// arrays are a parse error, as Salesforce's JSON reader answers them.
fn coerce(field: &Field, value: &Value) -> Result<Value, SfError> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::String(s) if s.is_empty() => Ok(Value::Null),
        Value::String(_) => Ok(value.clone()),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        Value::Bool(b) if field.kind == FieldType::Boolean => Ok(Value::Bool(*b)),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        Value::Array(_) | Value::Object(_) => {
            let token = if value.is_array() {
                "START_ARRAY"
            } else {
                "START_OBJECT"
            };
            Err(SfError::new(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                format!(
                    "Cannot deserialize instance of string from {token} value {} or request may be missing a required field",
                    if value.is_array() { "[" } else { "{" }
                ),
            ))
        }
    }
}

/// Length and email-format problems with one stored value.
fn check_value(field: &Field, value: &Value) -> Option<SfError> {
    let text = value.as_str()?;
    if text.chars().count() > field.length {
        return Some(
            SfError::new(
                StatusCode::BAD_REQUEST,
                "STRING_TOO_LONG",
                format!(
                    "{}: data value too large: {text} (max length={})",
                    field.label(),
                    field.length
                ),
            )
            .with_fields(vec![field.name.clone()]),
        );
    }
    if field.kind == FieldType::Email && !crate::is_valid_email(text) {
        return Some(
            SfError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_EMAIL_ADDRESS",
                format!("{}: invalid email address: {text}", field.label()),
            )
            .with_fields(vec![field.name.clone()]),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn names_are_matched_ignoring_case_and_blank_text_is_null() {
        let schema = Schema::default();
        let p = schema
            .prepare(
                SObject::Lead,
                &body(json!({"lastname": "Doe", "EMAIL": "", "leadgate_id__c": 7})),
            )
            .unwrap();
        assert!(p.errors.is_empty());
        let mut values = p.values;
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            values,
            vec![
                ("Email".to_string(), Value::Null),
                ("LastName".to_string(), json!("Doe")),
                ("Leadgate_Id__c".to_string(), json!("7")),
            ]
        );
    }

    #[test]
    fn name_errors_stop_at_once() {
        let schema = Schema::default();
        let e = schema
            .prepare(SObject::Lead, &body(json!({"Foo__c": 1})))
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "INVALID_FIELD",
                "No such column 'Foo__c' on sobject of type Lead"
            )
        );
        let e = schema
            .prepare(SObject::Contact, &body(json!({"Id": "x"})))
            .unwrap_err();
        assert_eq!(
            e.message,
            "The Id field should not be specified in the sobject data."
        );
        let e = schema
            .prepare(SObject::Lead, &body(json!({"IsConverted": true})))
            .unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        // Account-only fields are unknown on a Lead.
        assert!(
            schema
                .prepare(SObject::Lead, &body(json!({"AccountId": "001"})))
                .is_err()
        );
    }

    #[test]
    fn value_errors_and_required_fields() {
        let schema = Schema::default();
        let p = schema
            .prepare(
                SObject::Lead,
                &body(json!({"Email": "nope", "FirstName": "x".repeat(41)})),
            )
            .unwrap();
        let codes: Vec<_> = p
            .errors
            .iter()
            .map(|e| (e.code, e.message.clone()))
            .collect();
        assert_eq!(
            codes,
            vec![
                (
                    "INVALID_EMAIL_ADDRESS",
                    "Email: invalid email address: nope".to_string()
                ),
                (
                    "STRING_TOO_LONG",
                    format!(
                        "First Name: data value too large: {} (max length=40)",
                        "x".repeat(41)
                    )
                ),
            ]
        );
        let missing = schema
            .missing_required(SObject::Lead, &body(json!({"Status": "Open"})))
            .unwrap();
        assert_eq!(
            missing.message,
            "Required fields are missing: [LastName, Company]"
        );
        assert_eq!(
            missing.fields,
            Some(vec!["LastName".to_string(), "Company".to_string()])
        );
        assert!(
            schema
                .missing_required(SObject::Contact, &body(json!({"LastName": "D"})))
                .is_none()
        );
    }

    #[test]
    fn defining_fields() {
        let mut schema = Schema::default();
        assert!(!schema.define(SObject::Lead, "NotCustom", None));
        assert!(schema.define(SObject::Lead, "Score__c", None));
        assert!(schema.define(SObject::Lead, "Crm_Key__c", Some(false)));
        let f = schema.field(SObject::Lead, "crm_key__C").unwrap();
        assert!(f.is_external_id() && !f.is_unique());
        assert!(schema.field(SObject::Contact, "Score__c").is_none());
        assert!(
            schema
                .field(SObject::Contact, "leadgate_id__c")
                .unwrap()
                .is_unique()
        );
        assert_eq!(
            schema
                .field(SObject::Lead, "Leadgate_Id__c")
                .unwrap()
                .label(),
            "Leadgate Id"
        );
    }
}

//! The simulated Zoho org's metadata: its modules (Leads, Contacts), their
//! fields, and how a record's field values are checked the way Zoho checks
//! them (`shared/crm-apis.md` §5.5, §5.8; the "Sample Attributes" of
//! Zoho's Insert Records page):
//!
//! - a key that is not a field's API name is ignored (Zoho stores nothing
//!   for it and says nothing), as are read-only system fields;
//! - a value of the wrong JSON type is `INVALID_DATA` with
//!   `expected_data_type` (`text`, `email`, `phone`, `website`, …), a text
//!   longer than the field's length `INVALID_DATA` with `maximum_length`,
//!   an email that fails Zoho's email pattern `INVALID_DATA` with
//!   `expected_data_type: "email"`;
//! - `Last_Name` is system-mandatory in both modules; `Company` is
//!   mandatory in the Leads standard layout, which the API checks only
//!   when the record names a `Layout` (Zoho: "You must provide the layout
//!   ID field if you want to include the layout specific mandatory fields
//!   in the API-level mandatory check");
//! - `Email` is the system duplicate-check field of both modules; fields
//!   marked "Do not allow duplicate values" (`Leadgate_Id` on both, more
//!   through [`crate::SimHandle::define_zoho_field`]) are the user-defined
//!   unique fields.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The modules the simulated org has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Module {
    Leads,
    Contacts,
}

impl Module {
    pub(crate) const ALL: [Module; 2] = [Module::Leads, Module::Contacts];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Module::Leads => "Leads",
            Module::Contacts => "Contacts",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Module::Leads => "Lead",
            Module::Contacts => "Contact",
        }
    }

    /// The module's id, as `duplicate_record.module.id` carries it.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Module::Leads => "5725767000000002175",
            Module::Contacts => "5725767000000002179",
        }
    }

    /// A module API name from a URL or a parameter (ignoring case).
    pub(crate) fn parse(name: &str) -> Option<Module> {
        Module::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// A field's data type, as the fields metadata API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    Text,
    TextArea,
    Email,
    Phone,
    Website,
    Picklist,
    OwnerLookup,
    DateTime,
}

impl FieldType {
    /// `data_type` in the fields metadata, and `expected_data_type` in an
    /// `INVALID_DATA` error.
    pub(crate) fn data_type(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::TextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Website => "website",
            FieldType::Picklist => "picklist",
            FieldType::OwnerLookup => "ownerlookup",
            FieldType::DateTime => "datetime",
        }
    }

    fn json_type(self) -> &'static str {
        match self {
            FieldType::OwnerLookup => "jsonobject",
            _ => "string",
        }
    }
}

/// One field of a module.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// API name, e.g. `Last_Name`, `Leadgate_Id`.
    pub api_name: String,
    pub kind: FieldType,
    /// Longest text accepted.
    pub length: usize,
    /// The API refuses a record without a value (`MANDATORY_NOT_FOUND`).
    pub system_mandatory: bool,
    /// Mandatory in the standard layout: checked only when the record
    /// names a `Layout`.
    pub layout_mandatory: bool,
    /// "Do not allow duplicate values".
    pub unique: bool,
    pub custom: bool,
    /// System-maintained (`Created_Time`, `Full_Name`, …): never written.
    pub read_only: bool,
    pub picklist: &'static [&'static str],
    /// The field's id in the metadata.
    pub id: String,
}

impl Field {
    fn new(api_name: &str, kind: FieldType, length: usize) -> Field {
        Field {
            api_name: api_name.to_owned(),
            kind,
            length,
            system_mandatory: false,
            layout_mandatory: false,
            unique: false,
            custom: false,
            read_only: false,
            picklist: &[],
            id: String::new(),
        }
    }

    fn mandatory(mut self) -> Field {
        self.system_mandatory = true;
        self
    }

    fn layout_mandatory(mut self) -> Field {
        self.layout_mandatory = true;
        self
    }

    fn read_only(mut self) -> Field {
        self.read_only = true;
        self
    }

    fn picklist(mut self, values: &'static [&'static str]) -> Field {
        self.picklist = values;
        self
    }

    /// A custom single-line field (255 characters).
    pub(crate) fn custom(api_name: &str, unique: bool) -> Field {
        Field {
            custom: true,
            unique,
            ..Field::new(api_name, FieldType::Text, 255)
        }
    }

    /// "Last_Name" → "Last Name".
    fn label(&self) -> String {
        self.api_name.replace('_', " ")
    }

    /// The field's entry in a `GET /settings/fields` answer (the keys the
    /// official SDKs read, with Zoho's names).
    pub(crate) fn metadata(&self, module: Module) -> Value {
        let label = match (module, self.api_name.as_str()) {
            (_, "Owner") => format!("{} Owner", module.singular()),
            _ => self.label(),
        };
        let pick_list_values: Vec<Value> = self
            .picklist
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({
                    "display_value": v,
                    "actual_value": v,
                    "reference_value": v,
                    "sequence_number": i + 1,
                    "type": "used",
                    "id": format!("{}{:03}", self.id, i + 1),
                })
            })
            .collect();
        json!({
            "api_name": self.api_name,
            "id": self.id,
            "field_label": label,
            "display_label": label,
            "data_type": self.kind.data_type(),
            "json_type": self.kind.json_type(),
            "length": self.length,
            "system_mandatory": self.system_mandatory,
            "custom_field": self.custom,
            "read_only": self.read_only,
            "field_read_only": self.read_only,
            "visible": true,
            "type": "used",
            "unique": if self.unique { json!({"casesensitive": false}) } else { json!({}) },
            "pick_list_values": pick_list_values,
            "lookup": {},
            "formula": {},
            "currency": {},
            "multiselectlookup": {},
            "auto_number": {},
            "operation_type": {
                "web_update": !self.read_only,
                "api_create": !self.read_only,
                "web_create": !self.read_only,
                "api_update": !self.read_only,
            },
        })
    }
}

const LEAD_SOURCES: &[&str] = &[
    "-None-",
    "Advertisement",
    "Cold Call",
    "Employee Referral",
    "External Referral",
    "Online Store",
    "Partner",
    "Public Relations",
    "Sales Email Alias",
    "Seminar Partner",
    "Internal Seminar",
    "Trade Show",
    "Web Download",
    "Web Research",
    "Chat",
];

const LEAD_STATUSES: &[&str] = &[
    "-None-",
    "Attempted to Contact",
    "Contact in Future",
    "Contacted",
    "Junk Lead",
    "Lost Lead",
    "Not Contacted",
    "Pre-Qualified",
    "Not Qualified",
];

/// Fields every record has, kept by the system.
fn system_fields() -> Vec<Field> {
    use FieldType::*;
    vec![
        Field::new("Owner", OwnerLookup, 120),
        Field::new("Created_Time", DateTime, 0).read_only(),
        Field::new("Modified_Time", DateTime, 0).read_only(),
        Field::new("Created_By", OwnerLookup, 120).read_only(),
        Field::new("Modified_By", OwnerLookup, 120).read_only(),
        Field::new("Full_Name", Text, 121).read_only(),
    ]
}

fn lead_fields() -> Vec<Field> {
    use FieldType::*;
    let mut fields = system_fields();
    fields.extend([
        Field::new("First_Name", Text, 40),
        Field::new("Last_Name", Text, 80).mandatory(),
        Field::new("Email", Email, 100),
        Field::new("Phone", Phone, 30),
        Field::new("Mobile", Phone, 30),
        Field::new("Company", Text, 200).layout_mandatory(),
        Field::new("Designation", Text, 100),
        Field::new("Street", Text, 250),
        Field::new("City", Text, 100),
        Field::new("State", Text, 100),
        Field::new("Zip_Code", Text, 30),
        Field::new("Country", Text, 100),
        Field::new("Lead_Source", Picklist, 120).picklist(LEAD_SOURCES),
        Field::new("Lead_Status", Picklist, 120).picklist(LEAD_STATUSES),
        Field::new("Website", Website, 255),
        Field::new("Description", TextArea, 32_000),
    ]);
    fields
}

fn contact_fields() -> Vec<Field> {
    use FieldType::*;
    let mut fields = system_fields();
    fields.extend([
        Field::new("First_Name", Text, 40),
        Field::new("Last_Name", Text, 80).mandatory(),
        Field::new("Email", Email, 100),
        Field::new("Phone", Phone, 30),
        Field::new("Mobile", Phone, 30),
        Field::new("Title", Text, 100),
        Field::new("Mailing_Street", Text, 250),
        Field::new("Mailing_City", Text, 100),
        Field::new("Mailing_State", Text, 100),
        Field::new("Mailing_Zip", Text, 30),
        Field::new("Mailing_Country", Text, 100),
        Field::new("Lead_Source", Picklist, 120).picklist(LEAD_SOURCES),
        Field::new("Description", TextArea, 32_000),
    ]);
    fields
}

/// The system-defined duplicate-check field of Leads and Contacts.
pub(crate) const DUPLICATE_CHECK_FIELD: &str = "Email";
/// The custom unique field leadgate keys its people by.
pub(crate) const LEADGATE_ID: &str = "Leadgate_Id";

/// Every module's fields, in metadata order.
#[derive(Clone, Debug)]
pub(crate) struct Schema {
    fields: BTreeMap<Module, Vec<Field>>,
    next_field_id: u64,
}

impl Default for Schema {
    fn default() -> Self {
        let mut schema = Schema {
            fields: BTreeMap::new(),
            next_field_id: 5_725_767_000_000_002_589,
        };
        for module in Module::ALL {
            let mut fields = match module {
                Module::Leads => lead_fields(),
                Module::Contacts => contact_fields(),
            };
            fields.push(Field::custom(LEADGATE_ID, true));
            for field in &mut fields {
                field.id = schema.take_id();
            }
            schema.fields.insert(module, fields);
        }
        schema
    }
}

impl Schema {
    fn take_id(&mut self) -> String {
        let id = self.next_field_id.to_string();
        self.next_field_id += 2;
        id
    }

    pub(crate) fn fields(&self, module: Module) -> &[Field] {
        self.fields.get(&module).map_or(&[], Vec::as_slice)
    }

    /// A field by API name: exactly, or else ignoring case.
    pub(crate) fn field(&self, module: Module, api_name: &str) -> Option<&Field> {
        let fields = self.fields(module);
        fields.iter().find(|f| f.api_name == api_name).or_else(|| {
            fields
                .iter()
                .find(|f| f.api_name.eq_ignore_ascii_case(api_name))
        })
    }

    /// The fields a duplicate check may use: the system-defined one, then
    /// the user-defined unique fields in definition order.
    pub(crate) fn duplicate_check_fields(&self, module: Module) -> Vec<&Field> {
        let fields = self.fields(module);
        fields
            .iter()
            .filter(|f| f.api_name == DUPLICATE_CHECK_FIELD)
            .chain(
                fields
                    .iter()
                    .filter(|f| f.unique && f.api_name != DUPLICATE_CHECK_FIELD),
            )
            .collect()
    }

    /// Adds a custom field, or marks an existing writable field unique or
    /// not. False for a read-only system field, `Email` (its duplicate
    /// check is the system's), or an API name Zoho would not make
    /// (letters, digits and underscores, starting with a letter).
    pub(crate) fn define(&mut self, module: Module, api_name: &str, unique: bool) -> bool {
        let valid = api_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && api_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && api_name.len() <= 100;
        if !valid || api_name.eq_ignore_ascii_case(DUPLICATE_CHECK_FIELD) {
            return false;
        }
        let existing = self
            .fields
            .get_mut(&module)
            .and_then(|fields| {
                fields
                    .iter_mut()
                    .find(|f| f.api_name.eq_ignore_ascii_case(api_name))
            })
            .map(|field| {
                if field.read_only || field.kind == FieldType::OwnerLookup {
                    false
                } else {
                    field.unique = unique;
                    true
                }
            });
        if let Some(done) = existing {
            return done;
        }
        let mut field = Field::custom(api_name, unique);
        field.id = self.take_id();
        self.fields.entry(module).or_default().push(field);
        true
    }
}

/// Why a value cannot be stored in a field: the `details` of Zoho's
/// `INVALID_DATA` besides `api_name` and `json_path`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ValueError {
    /// Wrong JSON type or a value that fails the field's pattern.
    ExpectedType(&'static str),
    /// Longer than the field allows.
    TooLong(usize),
}

impl ValueError {
    pub(crate) fn details(&self) -> Map<String, Value> {
        let mut details = Map::new();
        match self {
            ValueError::ExpectedType(t) => {
                details.insert("expected_data_type".into(), (*t).into());
            }
            ValueError::TooLong(n) => {
                details.insert("maximum_length".into(), (*n).into());
            }
        }
        details
    }
}

/// Checks a value for `field` and gives the value to store (`Null` for an
/// empty text: Zoho keeps no empty strings).
pub(crate) fn check_value(
    field: &Field,
    value: &Value,
    owner_id: &str,
) -> Result<Value, ValueError> {
    let expected = ValueError::ExpectedType(field.kind.data_type());
    if value.is_null() {
        return Ok(Value::Null);
    }
    if field.kind == FieldType::OwnerLookup {
        let id = match value {
            Value::Object(map) => map.get("id").and_then(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            _ => None,
        };
        return match id {
            Some(id) if id == owner_id => Ok(value.clone()),
            _ => Err(expected),
        };
    }
    let Value::String(text) = value else {
        return Err(expected);
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    if text.chars().count() > field.length {
        return Err(ValueError::TooLong(field.length));
    }
    let ok = match field.kind {
        FieldType::Email => is_zoho_email(trimmed),
        FieldType::Phone => is_zoho_phone(trimmed),
        FieldType::Website => is_website(trimmed),
        _ => true,
    };
    if !ok {
        return Err(expected);
    }
    let stored = match field.kind {
        FieldType::Email | FieldType::Phone | FieldType::Website => trimmed.to_owned(),
        _ => text.clone(),
    };
    Ok(Value::String(stored))
}

fn is_letter_mark_number(c: char) -> bool {
    c.is_alphanumeric()
}

/// Zoho's email pattern (Insert Records, "Sample Attributes"):
/// `^[\+\-\p{L}\p{M}\p{N}_]([\p{L}\p{M}\p{N}!#$%&'*+\-\/=?^_`{|}~.]*)@(?=.{4,256}$)(([\p{L}\p{N}\p{M}]+)(([\-_]*[\p{L}\p{M}\p{N}])*)[.])+[\p{L}\p{M}]{2,22}$`
pub(crate) fn is_zoho_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let mut chars = local.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first == '+' || first == '-' || first == '_' || is_letter_mark_number(first)) {
        return false;
    }
    if !chars.all(|c| is_letter_mark_number(c) || "!#$%&'*+-/=?^_`{|}~.".contains(c)) {
        return false;
    }
    let len = domain.chars().count();
    if !(4..=256).contains(&len) {
        return false;
    }
    let Some((labels, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let tld_len = tld.chars().count();
    if !(2..=22).contains(&tld_len) || !tld.chars().all(char::is_alphabetic) {
        return false;
    }
    labels.split('.').all(|label| {
        label.chars().next().is_some_and(is_letter_mark_number)
            && label.chars().last().is_some_and(is_letter_mark_number)
            && label
                .chars()
                .all(|c| is_letter_mark_number(c) || c == '-' || c == '_')
    })
}

/// Close to Zoho's phone pattern: an optional leading `+`, then letters,
/// digits and the separators ` .-()#,;`, at least one digit.
pub(crate) fn is_zoho_phone(phone: &str) -> bool {
    let body = phone.strip_prefix('+').unwrap_or(phone);
    body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .-()#,;".contains(c))
}

/// A URL, with or without a scheme: no spaces, a dotted host.
fn is_website(url: &str) -> bool {
    let rest = ["https://", "http://", "ftp://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !url.chars().any(char::is_whitespace)
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_as_zoho_checks_them() {
        for ok in [
            "jane@example.com",
            "j.doe+x@mail.example.co",
            "_a@b.io",
            "ü@exämple.de",
        ] {
            assert!(is_zoho_email(ok), "{ok}");
        }
        for bad in [
            "jane",
            "jane@",
            "@x.io",
            "jane@x",
            "jane@x.c",
            "ja ne@x.io",
            ".jane@x.io",
            "jane@-x.io",
            "jane@x..io",
            "jane@x.io1",
        ] {
            assert!(!is_zoho_email(bad), "{bad}");
        }
    }

    #[test]
    fn values_are_checked_by_type() {
        let schema = Schema::default();
        let email = schema.field(Module::Leads, "email").unwrap();
        assert_eq!(email.api_name, "Email");
        assert_eq!(
            check_value(email, &json!("nope"), "1"),
            Err(ValueError::ExpectedType("email"))
        );
        assert_eq!(
            check_value(email, &json!(42), "1"),
            Err(ValueError::ExpectedType("email"))
        );
        assert_eq!(
            check_value(email, &json!(" a@b.io "), "1"),
            Ok(json!("a@b.io"))
        );
        let last = schema.field(Module::Leads, "Last_Name").unwrap();
        assert_eq!(
            check_value(last, &json!("x".repeat(81)), "1"),
            Err(ValueError::TooLong(80))
        );
        assert_eq!(check_value(last, &json!("  "), "1"), Ok(Value::Null));
        let phone = schema.field(Module::Contacts, "Mobile").unwrap();
        assert!(check_value(phone, &json!("+1 (415) 555-0100"), "1").is_ok());
        assert!(check_value(phone, &json!("call me"), "1").is_err());
        let owner = schema.field(Module::Leads, "Owner").unwrap();
        assert!(check_value(owner, &json!({"id": "1"}), "1").is_ok());
        assert!(check_value(owner, &json!({"id": "2"}), "1").is_err());
    }

    #[test]
    fn duplicate_check_order_and_definitions() {
        let mut schema = Schema::default();
        let names = |s: &Schema| {
            s.duplicate_check_fields(Module::Leads)
                .iter()
                .map(|f| f.api_name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&schema), ["Email", "Leadgate_Id"]);
        assert!(schema.define(Module::Leads, "Phone", true));
        assert!(schema.define(Module::Leads, "Crm_Key", true));
        assert!(schema.define(Module::Leads, "Notes_1", false));
        assert_eq!(names(&schema), ["Email", "Phone", "Leadgate_Id", "Crm_Key"]);
        assert!(!schema.define(Module::Leads, "Email", true));
        assert!(!schema.define(Module::Leads, "Created_Time", true));
        assert!(!schema.define(Module::Leads, "1abc", true));
        assert!(schema.field(Module::Contacts, "Crm_Key").is_none());
    }
}

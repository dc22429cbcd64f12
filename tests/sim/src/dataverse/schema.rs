//! The two tables (`lead`, `contact`), their columns as the Web API names
//! them (logical names), and the alternate keys defined on them
//! (`shared/crm-apis.md` §4.8).
//!
//! Column lengths are the out-of-the-box maximums of a Dataverse org.
//! `new_leadgateid` is a custom text column (publisher prefix `new_`)
//! with an alternate key on both tables, the one leadgate upserts by;
//! more keys (and the columns they need) can be defined through
//! [`crate::SimHandle::define_dataverse_alternate_key`].

use std::collections::BTreeMap;

use serde::Serialize;

/// The custom column with an alternate key on both tables.
pub const LEADGATE_KEY_COLUMN: &str = "new_leadgateid";

/// A table the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Lead,
    Contact,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Lead, Table::Contact];

    /// `lead`.
    pub fn logical_name(self) -> &'static str {
        match self {
            Table::Lead => "lead",
            Table::Contact => "contact",
        }
    }

    /// `leads`: the entity set name in URLs.
    pub fn entity_set(self) -> &'static str {
        match self {
            Table::Lead => "leads",
            Table::Contact => "contacts",
        }
    }

    /// `leadid`.
    pub fn id_column(self) -> &'static str {
        match self {
            Table::Lead => "leadid",
            Table::Contact => "contactid",
        }
    }

    /// A table by logical name (`lead`) or entity set name (`leads`),
    /// ignoring case.
    pub fn parse(name: &str) -> Option<Table> {
        let name = name.trim().to_ascii_lowercase();
        Table::ALL
            .into_iter()
            .find(|t| name == t.logical_name() || name == t.entity_set())
    }

    /// By entity set name only, exactly (URLs are case-sensitive).
    pub fn from_entity_set(set: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.entity_set() == set)
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Table::Lead => 0,
            Table::Contact => 1,
        }
    }
}

/// What a column holds and how a write of it is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Edm.String` with a maximum length.
    Text(usize),
    /// A choice (option set): `Edm.Int32`, one of the values.
    Choice(&'static [i64]),
    /// A lookup, written with `{nav}@odata.bind` and read as
    /// `_{column}_value`: the navigation properties and the entity sets
    /// each may point at.
    Lookup(&'static [(&'static str, &'static str)]),
    /// Set by the platform; a write of it is ignored.
    System,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

impl Column {
    fn text(name: &str, max: usize) -> Column {
        Column {
            name: name.to_owned(),
            kind: Kind::Text(max),
        }
    }
}

/// `leadsourcecode`: Advertisement … Other.
const LEAD_SOURCES: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
/// `leadqualitycode`: Hot, Warm, Cold.
const LEAD_QUALITIES: &[i64] = &[1, 2, 3];
const LEAD_STATES: &[i64] = &[0, 1, 2];
const LEAD_STATUSES: &[i64] = &[1, 2, 3, 4, 5, 6, 7];
const CONTACT_STATES: &[i64] = &[0, 1];
const CONTACT_STATUSES: &[i64] = &[1, 2];

const ADDRESS: [(&str, usize); 5] = [
    ("address1_line1", 250),
    ("address1_city", 80),
    ("address1_stateorprovince", 50),
    ("address1_postalcode", 20),
    ("address1_country", 80),
];

/// Columns every record carries that the platform sets.
pub const SYSTEM_COLUMNS: [&str; 4] = ["createdon", "modifiedon", "versionnumber", "fullname"];

fn standard_columns(table: Table) -> Vec<Column> {
    let mut columns = vec![
        Column::text("firstname", 50),
        Column::text("lastname", 50),
        Column::text("emailaddress1", 100),
        Column::text("emailaddress2", 100),
        Column::text("telephone1", 50),
        Column::text("jobtitle", 100),
        Column::text("websiteurl", 200),
        Column::text("description", 2000),
    ];
    columns.extend(ADDRESS.iter().map(|(n, max)| Column::text(n, *max)));
    match table {
        Table::Lead => {
            columns.extend([
                Column::text("mobilephone", 20),
                Column::text("companyname", 100),
                Column::text("subject", 300),
                Column {
                    name: "leadsourcecode".into(),
                    kind: Kind::Choice(LEAD_SOURCES),
                },
                Column {
                    name: "leadqualitycode".into(),
                    kind: Kind::Choice(LEAD_QUALITIES),
                },
                Column {
                    name: "statecode".into(),
                    kind: Kind::Choice(LEAD_STATES),
                },
                Column {
                    name: "statuscode".into(),
                    kind: Kind::Choice(LEAD_STATUSES),
                },
                Column {
                    name: "parentcontactid".into(),
                    kind: Kind::Lookup(&[("parentcontactid", "contacts")]),
                },
                Column {
                    name: "parentaccountid".into(),
                    kind: Kind::Lookup(&[("parentaccountid", "accounts")]),
                },
            ]);
        }
        Table::Contact => {
            columns.extend([
                Column::text("mobilephone", 50),
                Column {
                    name: "statecode".into(),
                    kind: Kind::Choice(CONTACT_STATES),
                },
                Column {
                    name: "statuscode".into(),
                    kind: Kind::Choice(CONTACT_STATUSES),
                },
                Column {
                    name: "parentcustomerid".into(),
                    kind: Kind::Lookup(&[
                        ("parentcustomerid_account", "accounts"),
                        ("parentcustomerid_contact", "contacts"),
                    ]),
                },
            ]);
        }
    }
    for name in SYSTEM_COLUMNS {
        columns.push(Column {
            name: name.into(),
            kind: Kind::System,
        });
    }
    columns.push(Column::text(LEADGATE_KEY_COLUMN, 100));
    columns
}

/// An alternate key (entity key): its display name and columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AltKey {
    pub name: String,
    pub columns: Vec<String>,
}

/// Columns and keys of both tables.
#[derive(Clone, Debug)]
pub struct Schema {
    columns: BTreeMap<Table, Vec<Column>>,
    keys: BTreeMap<Table, Vec<AltKey>>,
}

impl Default for Schema {
    fn default() -> Self {
        let mut columns = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for table in Table::ALL {
            columns.insert(table, standard_columns(table));
            keys.insert(
                table,
                vec![AltKey {
                    name: "Leadgate Id".into(),
                    columns: vec![LEADGATE_KEY_COLUMN.into()],
                }],
            );
        }
        Schema { columns, keys }
    }
}

impl Schema {
    pub fn columns(&self, table: Table) -> &[Column] {
        self.columns.get(&table).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A column by logical name (exact: logical names are lowercase and
    /// the Web API matches them case-sensitively).
    pub fn column(&self, table: Table, name: &str) -> Option<&Column> {
        self.columns(table).iter().find(|c| c.name == name)
    }

    /// The lookup column whose navigation property is `nav`, and the
    /// entity set it points at.
    pub fn navigation(&self, table: Table, nav: &str) -> Option<(&Column, &'static str)> {
        self.columns(table).iter().find_map(|c| match &c.kind {
            Kind::Lookup(navs) => navs
                .iter()
                .find(|(n, _)| *n == nav)
                .map(|(_, set)| (c, *set)),
            _ => None,
        })
    }

    /// Whether `name` can be read (`$select`, `$filter`): a column, the id
    /// column, or a lookup's `_x_value`.
    pub fn readable(&self, table: Table, name: &str) -> bool {
        name == table.id_column()
            || self
                .column(table, name)
                .is_some_and(|c| !matches!(c.kind, Kind::Lookup(_)))
            || lookup_of_value(name).is_some_and(|n| {
                self.column(table, n)
                    .is_some_and(|c| matches!(c.kind, Kind::Lookup(_)))
            })
    }

    /// Every readable name, in the order a record lists them.
    pub fn readable_names(&self, table: Table) -> Vec<String> {
        let mut names = vec![table.id_column().to_owned()];
        for c in self.columns(table) {
            match c.kind {
                Kind::Lookup(_) => names.push(format!("_{}_value", c.name)),
                _ => names.push(c.name.clone()),
            }
        }
        names
    }

    /// Adds a text column (no-op when it exists); false for a name that
    /// is not a logical name.
    pub fn define_column(&mut self, table: Table, name: &str, max_length: usize) -> bool {
        if !is_logical_name(name) {
            return false;
        }
        if self.column(table, name).is_none() && name != table.id_column() {
            self.columns
                .entry(table)
                .or_default()
                .push(Column::text(name, max_length.max(1)));
        }
        true
    }

    pub fn keys(&self, table: Table) -> &[AltKey] {
        self.keys.get(&table).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The key made of exactly `columns` (any order).
    pub fn key_for(&self, table: Table, columns: &[&str]) -> Option<&AltKey> {
        self.keys(table).iter().find(|k| {
            k.columns.len() == columns.len()
                && columns.iter().all(|c| k.columns.iter().any(|k| k == c))
        })
    }

    /// Defines an alternate key on `columns` (adding text columns that do
    /// not exist yet); false for a bad name or an empty key.
    pub fn define_key(&mut self, table: Table, columns: &[&str]) -> bool {
        if columns.is_empty() || columns.iter().any(|c| !is_logical_name(c)) {
            return false;
        }
        for c in columns {
            if self.column(table, c).is_none() && !self.define_column(table, c, 100) {
                return false;
            }
        }
        if self.key_for(table, columns).is_none() {
            self.keys.entry(table).or_default().push(AltKey {
                name: columns.join("_") + "_key",
                columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            });
        }
        true
    }
}

/// `_parentcustomerid_value` → `parentcustomerid`.
pub fn lookup_of_value(name: &str) -> Option<&str> {
    name.strip_prefix('_')?.strip_suffix("_value")
}

/// Lowercase letters, digits and underscores, starting with a letter.
pub fn is_logical_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_columns_and_keys() {
        assert_eq!(Table::parse("Leads"), Some(Table::Lead));
        assert_eq!(Table::parse("contact"), Some(Table::Contact));
        assert_eq!(Table::from_entity_set("Leads"), None);
        let mut schema = Schema::default();
        assert!(schema.readable(Table::Lead, "leadid"));
        assert!(schema.readable(Table::Contact, "_parentcustomerid_value"));
        assert!(!schema.readable(Table::Contact, "parentcustomerid"));
        assert!(!schema.readable(Table::Contact, "companyname"));
        assert!(schema.key_for(Table::Lead, &["new_leadgateid"]).is_some());
        assert!(schema.key_for(Table::Lead, &["emailaddress1"]).is_none());
        assert!(schema.define_key(Table::Lead, &["emailaddress1"]));
        assert!(schema.key_for(Table::Lead, &["emailaddress1"]).is_some());
        assert!(schema.define_key(Table::Contact, &["new_a", "new_b"]));
        assert!(
            schema
                .key_for(Table::Contact, &["new_b", "new_a"])
                .is_some()
        );
        assert!(matches!(
            schema.column(Table::Contact, "new_a").map(|c| &c.kind),
            Some(Kind::Text(100))
        ));
        assert!(!schema.define_key(Table::Lead, &["Bad Name"]));
        assert_eq!(
            schema
                .navigation(Table::Contact, "parentcustomerid_account")
                .map(|(c, s)| (c.name.as_str(), s)),
            Some(("parentcustomerid", "accounts"))
        );
    }
}

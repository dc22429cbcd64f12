//! Merge: survivorship. When dedupe decides a lead is an earlier person,
//! the lead's fields are merged into the person's golden record field
//! group by field group, each by its configured rule, and every field
//! remembers where its value came from (source, lead, time, rule).
//!
//! Field groups move as a whole, so a record never mixes the first name of
//! one lead with the last name of another, or one lead's street with
//! another's city: `email` (with its typo suggestion and role/disposable
//! flags), `phone` (with extension and type), `name` (prefix, first,
//! middle, last, suffix, full), `company` (with its key and domain),
//! `title`, `website`, `address` (street, city, region, postcode, country),
//! `date_of_birth`, `priority`, and each custom attribute on its own
//! (`custom`).
//!
//! Rules:
//! - `newest`: the newest lead's non-empty value wins;
//! - `oldest`: the first value stays; later leads only fill gaps;
//! - `most_trusted`: the value from the most trusted source wins (trust per
//!   source in `[merge.trust]`, default 0); equal trust → newest;
//! - `most_complete`: the value with more non-empty parts, then more
//!   characters, wins (so "Jon" gives way to "Jonathan Smith");
//! - `keep_all` (email and phone): the first value stays primary, so the
//!   CRM's upsert key never changes, and every other value is kept as an
//!   alternate (`other_emails`, `other_phones` for the mappings).
//!
//! [`merge`] is a pure function of the person, the lead and the settings;
//! the outbox writer calls it in acceptance order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use litemap::LiteMap;
use serde::{Deserialize, Serialize};

use crate::pipeline::field::LeadField;
use crate::pipeline::mapping::LeadFields;
use crate::pipeline::normalize::NormalizedLead;

/// Most alternates kept per kind (emails, phones).
pub const MAX_ALTERNATES: usize = 20;

/// A survivorship rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Newest,
    Oldest,
    MostTrusted,
    MostComplete,
    KeepAll,
}

impl Rule {
    fn as_str(self) -> &'static str {
        match self {
            Rule::Newest => "newest",
            Rule::Oldest => "oldest",
            Rule::MostTrusted => "most_trusted",
            Rule::MostComplete => "most_complete",
            Rule::KeepAll => "keep_all",
        }
    }
}

/// The `[merge]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// The rule of every group not named in `fields`.
    pub default: Rule,
    /// Rules per field group (`email`, `phone`, `name`, `company`, `title`,
    /// `website`, `address`, `date_of_birth`, `priority`, `provenance`,
    /// `consent`, `custom`).
    pub fields: BTreeMap<String, Rule>,
    /// Trust per source name for `most_trusted` (higher wins; default 0).
    pub trust: BTreeMap<String, i64>,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            default: Rule::Newest,
            fields: BTreeMap::from([
                ("email".into(), Rule::KeepAll),
                ("phone".into(), Rule::KeepAll),
                ("name".into(), Rule::MostComplete),
            ]),
            trust: BTreeMap::new(),
        }
    }
}

impl MergeConfig {
    /// Checks group names and that `keep_all` is used only where it can.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.default == Rule::KeepAll {
            return Err((
                "merge.default".into(),
                "keep_all applies to email and phone only".into(),
            ));
        }
        for (name, rule) in &self.fields {
            let key = format!("merge.fields.{name}");
            let Some(group) = GROUPS.iter().find(|g| g.name == name) else {
                let names: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
                return Err((key, format!("unknown field group; one of {names:?}")));
            };
            if *rule == Rule::KeepAll && group.alternates.is_none() {
                return Err((key, "keep_all applies to email and phone only".into()));
            }
        }
        Ok(())
    }

    fn rule(&self, group: &str) -> Rule {
        self.fields.get(group).copied().unwrap_or(self.default)
    }

    fn trust(&self, source: &str) -> i64 {
        self.trust.get(source).copied().unwrap_or(0)
    }
}

/// Where a field's value came from. Every field a lead supplied shares
/// that lead's source and id (one `Arc` each), and the rule is a static
/// name: a golden record of a dozen fields holds no per-field strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: Arc<str>,
    pub lead_id: Arc<str>,
    pub at_ms: i64,
    /// The rule that put it there (`first` for the person's first lead).
    #[serde(deserialize_with = "rule_name")]
    pub rule: Cow<'static, str>,
}

impl Provenance {
    fn new(meta: &LeadMeta, rule: &'static str) -> Provenance {
        Provenance {
            source: meta.source.into(),
            lead_id: meta.lead_id.into(),
            at_ms: meta.at_ms,
            rule: Cow::Borrowed(rule),
        }
    }
}

/// A person's field name (`custom.KEY` for custom attributes) →
/// provenance, sorted by name, in one allocation: a golden record's dozen
/// entries take ~1 KB where a `BTreeMap` took three nodes, ~3 KB, and
/// the outbox writer keeps thousands of golden records in memory. Read
/// back from the store, a lead field's name is its static name and equal
/// sources and lead ids share one `Arc`, as they did when written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenances(LiteMap<Cow<'static, str>, Provenance>);

impl Provenances {
    pub fn get(&self, field: &str) -> Option<&Provenance> {
        self.0.get(field)
    }

    pub fn contains_key(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    pub fn insert(&mut self, field: Cow<'static, str>, provenance: Provenance) {
        self.0.insert(field, provenance);
    }

    pub fn remove(&mut self, field: &str) {
        self.0.remove(field);
    }

    /// Entries in field-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Provenance)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }
}

impl std::ops::Index<&str> for Provenances {
    type Output = Provenance;

    fn index(&self, field: &str) -> &Provenance {
        self.get(field)
            .unwrap_or_else(|| panic!("no provenance for {field}"))
    }
}

impl Serialize for Provenances {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Provenances {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Provenances;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of field names to provenances")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Provenances, A::Error> {
                let mut out = LiteMap::with_capacity(map.size_hint().unwrap_or(0));
                let mut shared: Vec<Arc<str>> = Vec::new();
                while let Some((field, mut p)) = map.next_entry::<String, Provenance>()? {
                    p.source = share(&mut shared, p.source);
                    p.lead_id = share(&mut shared, p.lead_id);
                    let field = match field.parse::<LeadField>() {
                        Ok(known) if known.name() == field => Cow::Borrowed(known.name()),
                        _ => Cow::Owned(field),
                    };
                    // Stored in order: appended; otherwise put in its place.
                    if let Some((field, p)) = out.try_append(field, p) {
                        out.insert(field, p);
                    }
                }
                Ok(Provenances(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// The `Arc` of `shared` equal to `s` (a person has a few distinct
/// sources and leads), or `s`, now shared.
fn share(shared: &mut Vec<Arc<str>>, s: Arc<str>) -> Arc<str> {
    if let Some(same) = shared.iter().find(|x| **x == s) {
        return same.clone();
    }
    shared.push(s.clone());
    s
}

/// A stored rule name, borrowed from the known names when it is one.
fn rule_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'static, str>, D::Error> {
    let name = String::deserialize(d)?;
    Ok([
        "first",
        "newest",
        "oldest",
        "most_trusted",
        "most_complete",
        "keep_all",
    ]
    .into_iter()
    .find(|known| *known == name)
    .map_or(Cow::Owned(name), Cow::Borrowed))
}

/// A person's golden record: the merged fields, their provenance and the
/// alternates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    /// Starts at 0; each merge that changed something adds one.
    pub revision: u32,
    pub record: NormalizedLead,
    /// Field name (`custom.KEY` for custom attributes) → provenance.
    pub provenance: Provenances,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_phones: Vec<String>,
    /// Leads merged into this person, the first included.
    pub leads: u32,
}

/// The lead being merged: who sent it and when.
#[derive(Clone, Debug)]
pub struct LeadMeta<'a> {
    pub lead_id: &'a str,
    pub source: &'a str,
    pub at_ms: i64,
}

/// One change a merge made, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The field group (`name`, `address`, `custom.utm`, …).
    pub group: String,
    /// `filled` (it was empty), `replaced` or `alternate_added`.
    pub action: String,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// The source that supplied the new value.
    pub source: String,
}

impl Person {
    /// A person whose first lead is `lead`.
    pub fn first(id: &str, lead: NormalizedLead, meta: &LeadMeta) -> Person {
        let prov = Provenance::new(meta, "first");
        let fields = GROUPS
            .iter()
            .flat_map(|group| group.fields)
            .filter(|field| get_field(&lead, **field).is_some())
            .map(|field| Cow::Borrowed(field.name()));
        let custom = lead
            .custom
            .keys()
            .map(|key| Cow::Owned(format!("custom.{key}")));
        let provenance = Provenances(
            fields
                .chain(custom)
                .map(|field| (field, prov.clone()))
                .collect(),
        );
        Person {
            id: id.to_string(),
            revision: 0,
            record: lead,
            provenance,
            other_emails: Vec::new(),
            other_phones: Vec::new(),
            leads: 1,
        }
    }
}

impl LeadFields for Person {
    /// The golden record's fields, plus `other_emails` and `other_phones`
    /// (the alternates, comma-separated).
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [one] if one == "other_emails" => {
                Some(self.other_emails.join(",")).filter(|s| !s.is_empty())
            }
            [one] if one == "other_phones" => {
                Some(self.other_phones.join(",")).filter(|s| !s.is_empty())
            }
            _ => self.record.field(path),
        }
    }
}

/// Merges `lead` into `person` by `config`; returns what changed (empty:
/// the lead added nothing) and bumps the revision when something did.
pub fn merge(
    person: &mut Person,
    lead: &NormalizedLead,
    meta: &LeadMeta,
    config: &MergeConfig,
) -> Vec<Change> {
    person.leads += 1;
    let mut changes = Vec::new();
    for group in GROUPS {
        let rule = config.rule(group.name);
        let incoming = group.text(lead);
        if incoming.is_empty() {
            continue;
        }
        let current = group.text(&person.record);
        if incoming == current {
            // The same value again: nothing changes, provenance included.
            continue;
        }
        let take = current.is_empty()
            || match rule {
                Rule::Newest => true,
                Rule::Oldest | Rule::KeepAll => false,
                Rule::MostTrusted => {
                    let holder = group
                        .fields
                        .iter()
                        .find_map(|f| person.provenance.get(f.name()))
                        .map(|p| config.trust(&p.source))
                        .unwrap_or(i64::MIN);
                    config.trust(meta.source) >= holder
                }
                Rule::MostComplete => {
                    completeness(group, lead) > completeness(group, &person.record)
                }
            };
        if take {
            for field in group.fields {
                field.copy(&mut person.record, lead);
            }
            retake_flags(&mut person.record, lead, group.fields);
            let prov = Provenance::new(meta, rule.as_str());
            for field in group.fields {
                if get_field(&person.record, *field).is_some() {
                    person
                        .provenance
                        .insert(Cow::Borrowed(field.name()), prov.clone());
                } else {
                    person.provenance.remove(field.name());
                }
            }
            changes.push(Change {
                group: group.name.into(),
                action: if current.is_empty() {
                    "filled"
                } else {
                    "replaced"
                }
                .into(),
                rule: rule.as_str().into(),
                from: Some(current).filter(|c| !c.is_empty()),
                to: incoming,
                source: meta.source.into(),
            });
        } else if rule == Rule::KeepAll
            && let Some(alternates) = group.alternates
        {
            let value = get_field(lead, group.fields[0]).unwrap_or_default();
            let list = alternates(person);
            if !list.contains(&value) && list.len() < MAX_ALTERNATES {
                list.push(value.clone());
                changes.push(Change {
                    group: group.name.into(),
                    action: "alternate_added".into(),
                    rule: rule.as_str().into(),
                    from: None,
                    to: value,
                    source: meta.source.into(),
                });
            }
        }
    }
    merge_custom(person, lead, meta, config, &mut changes);
    if !changes.is_empty() {
        person.revision += 1;
    }
    changes
}

fn merge_custom(
    person: &mut Person,
    lead: &NormalizedLead,
    meta: &LeadMeta,
    config: &MergeConfig,
    changes: &mut Vec<Change>,
) {
    let rule = match config.rule("custom") {
        Rule::KeepAll | Rule::MostComplete => Rule::Newest,
        r => r,
    };
    for (key, value) in &lead.custom {
        if value.is_null() {
            continue;
        }
        let field = format!("custom.{key}");
        let current = person.record.custom.get(key);
        if current == Some(value) {
            continue;
        }
        let take = current.is_none_or(|c| c.is_null())
            || match rule {
                Rule::Oldest => false,
                Rule::MostTrusted => {
                    let holder = person
                        .provenance
                        .get(field.as_str())
                        .map(|p| config.trust(&p.source))
                        .unwrap_or(i64::MIN);
                    config.trust(meta.source) >= holder
                }
                _ => true,
            };
        if !take {
            continue;
        }
        let from = current.map(value_text);
        person.record.custom.insert(key.clone(), value.clone());
        person.provenance.insert(
            Cow::Owned(field.clone()),
            Provenance::new(meta, rule.as_str()),
        );
        changes.push(Change {
            group: field,
            action: if from.is_some() { "replaced" } else { "filled" }.into(),
            rule: rule.as_str().into(),
            from,
            to: value_text(value),
            source: meta.source.into(),
        });
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The flags of a group's fields follow the values they describe.
fn retake_flags(record: &mut NormalizedLead, lead: &NormalizedLead, fields: &[LeadField]) {
    let of_group = |name: &str| fields.iter().any(|f| f.name() == name);
    record.flags.retain(|f| !of_group(&f.field));
    record
        .flags
        .extend(lead.flags.iter().filter(|f| of_group(&f.field)).cloned());
    for field in fields {
        match lead.original.get(field.name()) {
            Some(o) => record.original.insert(field.name().to_string(), o.clone()),
            None => record.original.remove(field.name()),
        };
    }
}

fn completeness(group: &Group, lead: &NormalizedLead) -> (usize, usize) {
    let mut parts = 0;
    let mut chars = 0;
    for field in group.fields {
        if let Some(v) = get_field(lead, *field) {
            parts += 1;
            chars += v.chars().count();
        }
    }
    (parts, chars)
}

/// A field group: its fields (the first is the one that names it), how
/// it reads as one value (default: its fields' values joined), and where
/// `keep_all` keeps alternates.
struct Group {
    name: &'static str,
    fields: &'static [LeadField],
    text: Option<fn(&NormalizedLead) -> String>,
    alternates: Option<fn(&mut Person) -> &mut Vec<String>>,
}

impl Group {
    /// The group's value, to compare a lead's with the person's.
    fn text(&self, lead: &NormalizedLead) -> String {
        match self.text {
            Some(text) => text(lead),
            None => {
                let parts: Vec<_> = self.fields.iter().filter_map(|f| f.text(lead)).collect();
                parts.join(", ")
            }
        }
    }
}

/// A field's value, when it has one (a flag only when set).
fn get_field(lead: &NormalizedLead, field: LeadField) -> Option<String> {
    field
        .text(lead)
        .filter(|v| !v.is_empty() && v != "false")
        .map(|v| v.into_owned())
}

use LeadField::*;

static GROUPS: &[Group] = &[
    Group {
        name: "email",
        fields: &[Email, EmailSuggestion, EmailRole, EmailDisposable],
        text: Some(|l| l.email.clone().unwrap_or_default()),
        alternates: Some(|p| &mut p.other_emails),
    },
    Group {
        name: "phone",
        fields: &[Phone, PhoneExtension, PhoneType],
        text: Some(|l| match (&l.phone, &l.phone_extension) {
            (Some(p), Some(x)) => format!("{p};ext={x}"),
            (Some(p), None) => p.clone(),
            _ => String::new(),
        }),
        alternates: Some(|p| &mut p.other_phones),
    },
    Group {
        name: "name",
        fields: &[
            NamePrefix, FirstName, MiddleName, LastName, NameSuffix, FullName,
        ],
        text: None,
        alternates: None,
    },
    // The key and the domain are derived (the domain even from an email):
    // the company's name alone says whether a lead brings one.
    Group {
        name: "company",
        fields: &[Company, CompanyKey, CompanyDomain],
        text: Some(|l| l.company.clone().unwrap_or_default()),
        alternates: None,
    },
    Group {
        name: "title",
        fields: &[Title],
        text: None,
        alternates: None,
    },
    Group {
        name: "website",
        fields: &[Website],
        text: None,
        alternates: None,
    },
    Group {
        name: "address",
        fields: &[Street, City, Region, Postcode, Country],
        text: None,
        alternates: None,
    },
    Group {
        name: "date_of_birth",
        fields: &[DateOfBirth],
        text: None,
        alternates: None,
    },
    Group {
        name: "priority",
        fields: &[Priority],
        text: None,
        alternates: None,
    },
    // Where and when the person's data was collected, and the consent
    // given: each moves as one (a newer consent replaces the whole
    // record of the older one, never half of it).
    Group {
        name: "provenance",
        fields: &[SourceUrl, CollectedAt, Collector],
        text: None,
        alternates: None,
    },
    Group {
        name: "consent",
        fields: &[
            ConsentBasis,
            ConsentGivenAt,
            ConsentText,
            ConsentVersion,
            ConsentCollectedBy,
        ],
        text: None,
        alternates: None,
    },
    // A withdrawal stays when a later lead brings the older consent again.
    Group {
        name: "withdrawal",
        fields: &[ConsentWithdrawnAt],
        text: None,
        alternates: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(fields: &[(&str, &str)]) -> NormalizedLead {
        let mut map = serde_json::Map::new();
        for (k, v) in fields {
            map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    #[test]
    fn provenance_reads_back_as_written_sorted_with_shared_names() {
        let json = r#"{"phone":{"source":"web","lead_id":"L1","at_ms":1,"rule":"first"},
            "custom.utm":{"source":"crm","lead_id":"L2","at_ms":2,"rule":"house_rule"},
            "email":{"source":"web","lead_id":"L1","at_ms":1,"rule":"first"}}"#;
        let p: Provenances = serde_json::from_str(json).unwrap();
        // In name order, whatever the order read.
        let names: Vec<&str> = p.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["custom.utm", "email", "phone"]);
        // Equal sources and lead ids are one allocation again; a lead
        // field's name is its static name, a custom one is kept as read.
        assert!(Arc::ptr_eq(&p["email"].source, &p["phone"].source));
        assert!(Arc::ptr_eq(&p["email"].lead_id, &p["phone"].lead_id));
        let keys: Vec<bool> = p.0.keys().map(|k| matches!(k, Cow::Borrowed(_))).collect();
        assert_eq!(keys, [false, true, true]);
        assert_eq!(p["custom.utm"].rule, "house_rule");
        // Written back, it is the map a BTreeMap made: sorted names.
        let back = serde_json::to_value(&p).unwrap();
        let sorted: BTreeMap<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        assert_eq!(back, serde_json::to_value(sorted).unwrap());
        assert_eq!(serde_json::from_value::<Provenances>(back).unwrap(), p);
        assert!(serde_json::from_str::<Provenances>("[1]").is_err());
    }

    fn meta<'a>(id: &'a str, source: &'a str, at_ms: i64) -> LeadMeta<'a> {
        LeadMeta {
            lead_id: id,
            source,
            at_ms,
        }
    }

    fn first() -> Person {
        Person::first(
            "L1",
            lead(&[
                ("email", "ann@acme.com"),
                ("phone", "+14155550100"),
                ("first_name", "Ann"),
                ("company", "Acme"),
                ("city", "Boston"),
                ("country", "US"),
            ]),
            &meta("L1", "webform", 1_000),
        )
    }

    #[test]
    fn keep_all_keeps_the_primary_and_collects_alternates() {
        let mut p = first();
        let changes = merge(
            &mut p,
            &lead(&[("email", "ann.lee@gmail.com"), ("phone", "+14155550100")]),
            &meta("L2", "scraper", 2_000),
            &MergeConfig::default(),
        );
        assert_eq!(
            p.record.email.as_deref(),
            Some("ann@acme.com"),
            "the upsert key stays"
        );
        assert_eq!(p.other_emails, vec!["ann.lee@gmail.com"]);
        assert!(p.other_phones.is_empty(), "the same phone is no alternate");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].action, "alternate_added");
        assert_eq!(p.revision, 1);
        assert_eq!(
            p.field(&["other_emails".into()]).as_deref(),
            Some("ann.lee@gmail.com")
        );
        // The same lead again changes nothing.
        let again = merge(
            &mut p,
            &lead(&[("email", "ann.lee@gmail.com")]),
            &meta("L3", "scraper", 3_000),
            &MergeConfig::default(),
        );
        assert!(again.is_empty());
        assert_eq!((p.revision, p.leads), (1, 3));
    }

    #[test]
    fn newest_replaces_whole_groups_and_records_provenance() {
        let mut p = first();
        let changes = merge(
            &mut p,
            &lead(&[("city", "Cambridge"), ("title", "CTO")]),
            &meta("L2", "crm", 2_000),
            &MergeConfig::default(),
        );
        // The address moves as one: no Boston country mixed with a
        // Cambridge street.
        assert_eq!(p.record.city.as_deref(), Some("Cambridge"));
        assert_eq!(p.record.country, None, "the group is taken whole");
        assert_eq!(p.record.title.as_deref(), Some("CTO"));
        assert_eq!(&*p.provenance["city"].lead_id, "L2");
        assert_eq!(p.provenance["city"].rule, "newest");
        assert!(!p.provenance.contains_key("country"));
        assert_eq!(p.provenance["company"].rule, "first");
        let groups: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.group.as_str(), c.action.as_str()))
            .collect();
        assert_eq!(groups, vec![("title", "filled"), ("address", "replaced")]);
        assert_eq!(changes[1].from.as_deref(), Some("Boston, US"));
    }

    #[test]
    fn a_derived_company_domain_alone_does_not_replace_the_company() {
        let mut p = first();
        let changes = merge(
            &mut p,
            &lead(&[("email", "ann@acme.com"), ("company_domain", "acme.com")]),
            &meta("L2", "x", 2_000),
            &MergeConfig::default(),
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(p.record.company.as_deref(), Some("Acme"));
    }

    #[test]
    fn oldest_only_fills_gaps() {
        let config = MergeConfig {
            default: Rule::Oldest,
            ..MergeConfig::default()
        };
        let mut p = first();
        merge(
            &mut p,
            &lead(&[("company", "Other Co"), ("website", "https://acme.com")]),
            &meta("L2", "x", 2_000),
            &config,
        );
        assert_eq!(p.record.company.as_deref(), Some("Acme"));
        assert_eq!(p.record.website.as_deref(), Some("https://acme.com"));
    }

    #[test]
    fn most_trusted_source_wins_and_ties_go_to_the_newest() {
        let config = MergeConfig {
            default: Rule::MostTrusted,
            trust: BTreeMap::from([("crm".into(), 10), ("scraper".into(), -5)]),
            ..MergeConfig::default()
        };
        let mut p = first(); // from webform, trust 0
        merge(
            &mut p,
            &lead(&[("company", "Scraped Inc")]),
            &meta("L2", "scraper", 2_000),
            &config,
        );
        assert_eq!(p.record.company.as_deref(), Some("Acme"), "less trusted");
        merge(
            &mut p,
            &lead(&[("company", "Acme Corp")]),
            &meta("L3", "crm", 3_000),
            &config,
        );
        assert_eq!(p.record.company.as_deref(), Some("Acme Corp"));
        merge(
            &mut p,
            &lead(&[("company", "Acme Web")]),
            &meta("L4", "webform", 4_000),
            &config,
        );
        assert_eq!(
            p.record.company.as_deref(),
            Some("Acme Corp"),
            "crm still wins"
        );
        merge(
            &mut p,
            &lead(&[("company", "ACME Corporation")]),
            &meta("L5", "crm", 5_000),
            &config,
        );
        assert_eq!(
            p.record.company.as_deref(),
            Some("ACME Corporation"),
            "tie: newest"
        );
        assert_eq!(&*p.provenance["company"].source, "crm");
    }

    #[test]
    fn most_complete_name_wins() {
        let mut p = first();
        merge(
            &mut p,
            &lead(&[
                ("first_name", "Ann"),
                ("last_name", "Lee"),
                ("full_name", "Ann Lee"),
            ]),
            &meta("L2", "x", 2_000),
            &MergeConfig::default(),
        );
        assert_eq!(p.record.last_name.as_deref(), Some("Lee"));
        // A shorter name later does not undo it.
        let changes = merge(
            &mut p,
            &lead(&[("first_name", "A")]),
            &meta("L3", "x", 3_000),
            &MergeConfig::default(),
        );
        assert!(changes.is_empty());
        assert_eq!(p.record.full_name.as_deref(), Some("Ann Lee"));
    }

    #[test]
    fn custom_attributes_merge_by_key() {
        let mut p = first();
        let mut l = NormalizedLead::default();
        l.custom.insert("utm".into(), serde_json::json!("spring"));
        let changes = merge(&mut p, &l, &meta("L2", "x", 2_000), &MergeConfig::default());
        assert_eq!(changes[0].group, "custom.utm");
        assert_eq!(p.record.custom["utm"], "spring");
        assert_eq!(&*p.provenance["custom.utm"].lead_id, "L2");
    }

    #[test]
    fn config_is_validated() {
        let mut c = MergeConfig::default();
        assert!(c.validate().is_ok());
        c.fields.insert("name".into(), Rule::KeepAll);
        assert_eq!(c.validate().unwrap_err().0, "merge.fields.name");
        c.fields.remove("name");
        c.fields.insert("nmae".into(), Rule::Newest);
        assert!(c.validate().unwrap_err().1.contains("unknown field group"));
    }

    #[test]
    fn persons_round_trip_through_json() {
        let mut p = first();
        merge(
            &mut p,
            &lead(&[("email", "b@x.com")]),
            &meta("L2", "x", 2),
            &MergeConfig::default(),
        );
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Person>(&text).unwrap(), p);
    }
}

//! Lead fields: the one list of the fields leadgate knows. The fields a
//! lead may be posted with, the presence checks of the acceptance rule,
//! the round trip back to a raw lead, the paths a mapping reads and the
//! groups a merge moves all derive from [`LeadField`]; a field added here
//! is known everywhere.

use std::borrow::Cow;

use super::normalize::NormalizedLead;

/// A field of a normalized lead; its name (the normalized lead's JSON
/// key, a mapping's path, a provenance key) is the variant in snake case.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum LeadField {
    Email,
    /// The address probably meant (`gmial.com` → `gmail.com`).
    EmailSuggestion,
    /// A role or shared inbox (`info@`).
    EmailRole,
    /// A throw-away mail domain.
    EmailDisposable,
    Phone,
    PhoneExtension,
    /// `mobile`, `fixed_line`, …
    PhoneType,
    NamePrefix,
    FirstName,
    MiddleName,
    LastName,
    NameSuffix,
    /// Posted as `name`.
    FullName,
    Company,
    /// The company's matching key.
    CompanyKey,
    /// From the website or a non-free email domain.
    CompanyDomain,
    Title,
    Website,
    Street,
    City,
    Region,
    Postcode,
    /// ISO 3166-1 alpha-2.
    Country,
    DateOfBirth,
    Priority,
    /// Provenance: the page the lead was collected on (an http(s) URL).
    SourceUrl,
    /// Provenance: when the lead was collected (RFC 3339, UTC).
    CollectedAt,
    /// Provenance: who or what collected it (a scraper, a form, a person).
    Collector,
    /// Consent: the lawful basis (GDPR art. 6: `consent`, `contract`,
    /// `legal_obligation`, `vital_interests`, `public_task`,
    /// `legitimate_interests`). Posted flat or as `consent.basis`.
    ConsentBasis,
    /// Consent: when it was given (RFC 3339, UTC).
    ConsentGivenAt,
    /// Consent: the wording the person agreed to.
    ConsentText,
    /// Consent: the version of that wording.
    ConsentVersion,
    /// Consent: who collected it.
    ConsentCollectedBy,
    /// Consent: when the person withdrew it (RFC 3339, UTC): nothing more
    /// is pushed for the person until a consent given later.
    ConsentWithdrawnAt,
}

use LeadField::*;

impl LeadField {
    /// Every field, in the order a raw lead lists them.
    pub fn all() -> impl Iterator<Item = LeadField> {
        <LeadField as strum::IntoEnumIterator>::iter()
    }

    /// The field's name in a normalized lead (its JSON key, a mapping's
    /// path, a provenance key).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The key a lead is posted with, for the fields a source sends (the
    /// others are derived by normalization).
    pub fn posted_name(self) -> Option<&'static str> {
        match self {
            FullName => Some("name"),
            Email | Phone | FirstName | MiddleName | LastName | Company | Title | Website
            | Street | City | Region | Postcode | Country | DateOfBirth | Priority | SourceUrl
            | CollectedAt | Collector | ConsentBasis | ConsentGivenAt | ConsentText
            | ConsentVersion | ConsentCollectedBy | ConsentWithdrawnAt => Some(self.name()),
            EmailSuggestion | EmailRole | EmailDisposable | PhoneExtension | PhoneType
            | NamePrefix | NameSuffix | CompanyKey | CompanyDomain => None,
        }
    }

    /// The fields a lead may be posted with; any other key is kept as a
    /// custom attribute.
    pub fn posted() -> impl Iterator<Item = LeadField> {
        Self::all().filter(|f| f.posted_name().is_some())
    }

    /// The field posted under `key`.
    pub fn from_posted(key: &str) -> Option<LeadField> {
        Self::posted().find(|f| f.posted_name() == Some(key))
    }

    /// The field named `name` (its normalized name, or `name` for the
    /// full name).
    pub fn parse(name: &str) -> Option<LeadField> {
        if name == "name" {
            return Some(FullName);
        }
        name.parse().ok()
    }

    /// The field's value as text; a flag reads `true` or `false`.
    pub fn text(self, lead: &NormalizedLead) -> Option<Cow<'_, str>> {
        let flag = |b: bool| Some(Cow::Borrowed(if b { "true" } else { "false" }));
        match self {
            EmailRole => flag(lead.email_role),
            EmailDisposable => flag(lead.email_disposable),
            _ => self.value(lead).as_deref().map(Cow::Borrowed),
        }
    }

    /// Whether the lead has the field: a value, or a flag that is set.
    pub fn is_present(self, lead: &NormalizedLead) -> bool {
        match self {
            EmailRole => lead.email_role,
            EmailDisposable => lead.email_disposable,
            _ => self.value(lead).is_some(),
        }
    }

    /// Copies the field from `src` to `dst`.
    pub fn copy(self, dst: &mut NormalizedLead, src: &NormalizedLead) {
        match self {
            EmailRole => dst.email_role = src.email_role,
            EmailDisposable => dst.email_disposable = src.email_disposable,
            _ => {
                let value = self.value(src).clone();
                if let Some(slot) = self.value_mut(dst) {
                    *slot = value;
                }
            }
        }
    }

    /// The text fields' values (None for the flags).
    fn value(self, lead: &NormalizedLead) -> &Option<String> {
        const NONE: &Option<String> = &None;
        match self {
            Email => &lead.email,
            EmailSuggestion => &lead.email_suggestion,
            Phone => &lead.phone,
            PhoneExtension => &lead.phone_extension,
            PhoneType => &lead.phone_type,
            NamePrefix => &lead.name_prefix,
            FirstName => &lead.first_name,
            MiddleName => &lead.middle_name,
            LastName => &lead.last_name,
            NameSuffix => &lead.name_suffix,
            FullName => &lead.full_name,
            Company => &lead.company,
            CompanyKey => &lead.company_key,
            CompanyDomain => &lead.company_domain,
            Title => &lead.title,
            Website => &lead.website,
            Street => &lead.street,
            City => &lead.city,
            Region => &lead.region,
            Postcode => &lead.postcode,
            Country => &lead.country,
            DateOfBirth => &lead.date_of_birth,
            Priority => &lead.priority,
            SourceUrl => &lead.source_url,
            CollectedAt => &lead.collected_at,
            Collector => &lead.collector,
            ConsentBasis => &lead.consent_basis,
            ConsentGivenAt => &lead.consent_given_at,
            ConsentWithdrawnAt => &lead.consent_withdrawn_at,
            ConsentText => &lead.consent_text,
            ConsentVersion => &lead.consent_version,
            ConsentCollectedBy => &lead.consent_collected_by,
            EmailRole | EmailDisposable => NONE,
        }
    }

    /// The text fields' slots (None for the flags).
    pub(crate) fn value_mut(self, lead: &mut NormalizedLead) -> Option<&mut Option<String>> {
        Some(match self {
            Email => &mut lead.email,
            EmailSuggestion => &mut lead.email_suggestion,
            Phone => &mut lead.phone,
            PhoneExtension => &mut lead.phone_extension,
            PhoneType => &mut lead.phone_type,
            NamePrefix => &mut lead.name_prefix,
            FirstName => &mut lead.first_name,
            MiddleName => &mut lead.middle_name,
            LastName => &mut lead.last_name,
            NameSuffix => &mut lead.name_suffix,
            FullName => &mut lead.full_name,
            Company => &mut lead.company,
            CompanyKey => &mut lead.company_key,
            CompanyDomain => &mut lead.company_domain,
            Title => &mut lead.title,
            Website => &mut lead.website,
            Street => &mut lead.street,
            City => &mut lead.city,
            Region => &mut lead.region,
            Postcode => &mut lead.postcode,
            Country => &mut lead.country,
            DateOfBirth => &mut lead.date_of_birth,
            Priority => &mut lead.priority,
            SourceUrl => &mut lead.source_url,
            CollectedAt => &mut lead.collected_at,
            Collector => &mut lead.collector,
            ConsentBasis => &mut lead.consent_basis,
            ConsentGivenAt => &mut lead.consent_given_at,
            ConsentWithdrawnAt => &mut lead.consent_withdrawn_at,
            ConsentText => &mut lead.consent_text,
            ConsentVersion => &mut lead.consent_version,
            ConsentCollectedBy => &mut lead.consent_collected_by,
            EmailRole | EmailDisposable => return None,
        })
    }
}

impl std::fmt::Display for LeadField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_name_that_parses_back() {
        for field in LeadField::all() {
            assert_eq!(LeadField::parse(field.name()), Some(field), "{field}");
            if let Some(posted) = field.posted_name() {
                assert_eq!(LeadField::from_posted(posted), Some(field), "{posted}");
            }
        }
        assert_eq!(LeadField::parse("name"), Some(LeadField::FullName));
        assert_eq!(LeadField::from_posted("full_name"), None, "a custom key");
        assert_eq!(LeadField::posted().count(), 25);
        assert_eq!(LeadField::all().count(), 34);
    }

    #[test]
    fn every_field_is_read_and_copied_through_the_enum() {
        // Each field round-trips through serde under its name: the enum
        // and the struct agree.
        let mut src = NormalizedLead {
            email_role: true,
            email_disposable: true,
            ..Default::default()
        };
        for field in LeadField::all() {
            if let Some(slot) = field.value_mut(&mut src) {
                *slot = Some(format!("v-{}", field.name()));
            }
        }
        let json = serde_json::to_value(&src).unwrap();
        let mut dst = NormalizedLead::default();
        for field in LeadField::all() {
            let text = field.text(&src).unwrap().into_owned();
            let expected = match field {
                LeadField::EmailRole | LeadField::EmailDisposable => "true".to_string(),
                _ => format!("v-{}", field.name()),
            };
            assert_eq!(text, expected);
            assert_eq!(json[field.name()].as_str().unwrap_or("true"), expected);
            assert!(field.is_present(&src));
            assert!(!field.is_present(&dst));
            field.copy(&mut dst, &src);
        }
        assert_eq!(dst, src);
    }
}

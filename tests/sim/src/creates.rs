//! Every record the simulator created, per CRM, with the emails and phones
//! it was created with. Duplicate checks count creates, not distinct
//! emails: HubSpot's upsert keys contacts by email, so "one record per
//! email" holds by construction there, while a connector that sent one
//! person twice under two emails (or twice to Pipedrive, which never
//! refuses a duplicate, or to Salesforce with the duplicate rule bypassed)
//! shows up here as two creates for one person. A Salesforce create logs
//! the record's Email and its Phone and MobilePhone; a Zoho create its
//! Email, Phone and Mobile; a Dataverse create its emailaddress1 and
//! emailaddress2, telephone1 and mobilephone.

use serde::{Deserialize, Serialize};

/// The simulated CRM a record was created in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crm {
    Hubspot,
    Pipedrive,
    Salesforce,
    Zoho,
    /// Microsoft Dynamics 365 (Dataverse).
    Dynamics,
}

impl Crm {
    pub(crate) fn parse(s: &str) -> Option<Crm> {
        match s {
            "hubspot" => Some(Crm::Hubspot),
            "pipedrive" => Some(Crm::Pipedrive),
            "salesforce" => Some(Crm::Salesforce),
            "zoho" => Some(Crm::Zoho),
            "dynamics" | "dataverse" => Some(Crm::Dynamics),
            _ => None,
        }
    }
}

/// One create, as it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub crm: Crm,
    /// The new record's id.
    pub id: String,
    /// Its emails at creation, lowercase.
    pub emails: Vec<String>,
    /// Its phones at creation, as sent.
    pub phones: Vec<String>,
}

impl Created {
    /// Whether the record was created with one of `emails` (ignoring case)
    /// or one of `phones` (digits compared): the person key of a check.
    pub fn matches(&self, emails: &[&str], phones: &[&str]) -> bool {
        self.emails
            .iter()
            .any(|e| emails.iter().any(|x| x.trim().eq_ignore_ascii_case(e)))
            || self.phones.iter().any(|p| {
                phones
                    .iter()
                    .any(|x| !digits(x).is_empty() && digits(x) == digits(p))
            })
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The log of creates, oldest first. Kept until a reset.
#[derive(Debug, Default)]
pub(crate) struct CreateLog {
    creates: Vec<Created>,
}

impl CreateLog {
    pub(crate) fn record(
        &mut self,
        crm: Crm,
        id: String,
        emails: Vec<String>,
        phones: Vec<String>,
    ) {
        let emails = emails.into_iter().map(|e| e.to_ascii_lowercase()).collect();
        self.creates.push(Created {
            crm,
            id,
            emails,
            phones,
        });
    }

    /// Creates in `crm` (every CRM when `None`) matching the person key.
    pub(crate) fn find(&self, crm: Option<Crm>, emails: &[&str], phones: &[&str]) -> Vec<Created> {
        self.creates
            .iter()
            .filter(|c| crm.is_none_or(|crm| c.crm == crm))
            .filter(|c| (emails.is_empty() && phones.is_empty()) || c.matches(emails, phones))
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        self.creates.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_key_finds_creates_by_any_email_or_phone() {
        let mut log = CreateLog::default();
        log.record(Crm::Hubspot, "1".into(), vec!["A@x.io".into()], vec![]);
        log.record(
            Crm::Pipedrive,
            "2".into(),
            vec!["b@x.io".into()],
            vec!["+1 415 555 0100".into()],
        );
        log.record(Crm::Hubspot, "3".into(), vec!["c@x.io".into()], vec![]);
        let ids = |v: Vec<Created>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(log.find(None, &["a@X.io", "b@x.io"], &[])), ["1", "2"]);
        assert_eq!(
            ids(log.find(Some(Crm::Hubspot), &["b@x.io"], &[])),
            [] as [&str; 0]
        );
        assert_eq!(
            ids(log.find(None, &[], &["(415) 555-0100"])),
            [] as [&str; 0]
        );
        assert_eq!(ids(log.find(None, &[], &["+14155550100"])), ["2"]);
        assert_eq!(ids(log.find(Some(Crm::Hubspot), &[], &[])), ["1", "3"]);
        log.clear();
        assert!(log.find(None, &[], &[]).is_empty());
    }
}

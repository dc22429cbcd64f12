//! `$batch` bodies (OData v4 multipart, as Dataverse takes them,
//! `shared/crm-apis.md` §4.3 and Microsoft's "Execute batch operations
//! using the Web API"): the request's `multipart/mixed` parts, each an
//! `application/http` request or a change set (`multipart/mixed` of
//! requests); and the answer's `batchresponse_<guid>` parts, each
//! `HTTP/1.1 <status>` with its headers and body, a change set's inside
//! `changesetresponse_<guid>`.

use axum::http::StatusCode;

use super::wire::{Answer, DvError, JSON_TYPE};

/// Most requests one batch may carry (change set members included).
pub const MAX_REQUESTS: usize = 1000;

/// One request inside a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub method: String,
    /// As written: absolute, `/api/data/…` or relative to the service.
    pub url: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub content_id: Option<String>,
}

impl Operation {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Single(Operation),
    ChangeSet(Vec<Operation>),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Single(_) => 1,
            Item::ChangeSet(ops) => ops.len(),
        }
    }
}

/// How one item was answered.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemAnswer {
    Single(Answer, Option<String>),
    ChangeSet(Vec<(Answer, Option<String>)>),
    /// A change set rolled back: one answer, its failing request's.
    Failed(Answer, Option<String>),
}

/// `boundary=…` of a content type (quotes removed).
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/mixed")
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn split_parts<'a>(body: &'a str, boundary: &str) -> Result<Vec<&'a str>, DvError> {
    let delimiter = format!("--{boundary}");
    let missing_end = || {
        DvError::batch(format!(
            "Unexpected end of input was found in the batch payload. The closing boundary delimiter '--{boundary}--' is missing."
        ))
    };
    // The first delimiter, at the start of the body or of a line.
    let mut at = if body.starts_with(&delimiter) {
        0
    } else {
        body.find(&format!("\n{delimiter}"))
            .map(|i| i + 1)
            .ok_or_else(|| {
                DvError::batch(format!(
                    "The batch payload has no part: the boundary '{boundary}' was not found."
                ))
            })?
    };
    let mut parts = Vec::new();
    loop {
        let after = &body[at + delimiter.len()..];
        if after.starts_with("--") {
            return Ok(parts);
        }
        // The rest of the delimiter line.
        let line_end = after.find('\n').ok_or_else(missing_end)?;
        let content_start = at + delimiter.len() + line_end + 1;
        let rest = &body[content_start..];
        let next = rest
            .find(&format!("\n{delimiter}"))
            .ok_or_else(missing_end)?;
        let mut content = &rest[..next];
        content = content.strip_suffix('\r').unwrap_or(content);
        parts.push(content);
        at = content_start + next + 1;
    }
}

/// Headers (names lowercased) and the content after the first blank line.
fn split_head(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, content) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text, ""),
    };
    let headers = head
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    (headers, content)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An `application/http` part: request line, headers, body.
fn operation(part_headers: &[(String, String)], content: &str) -> Result<Operation, DvError> {
    let content = content.trim_start_matches(['\r', '\n']);
    let (line, rest) = match content.find('\n') {
        Some(i) => (content[..i].trim_end_matches('\r'), &content[i + 1..]),
        None => (content, ""),
    };
    // `METHOD URL HTTP/1.1`; the URL may hold spaces (Microsoft's Python
    // SDK leaves a `$filter` unencoded in batch parts).
    let invalid = || {
        DvError::batch(format!(
            "The HTTP request line '{line}' in the batch payload is not valid."
        ))
    };
    let (method, target) = line.trim().split_once(' ').ok_or_else(invalid)?;
    let url = target
        .rsplit_once(' ')
        .filter(|(_, version)| version.starts_with("HTTP/"))
        .map_or(target, |(url, _)| url)
        .trim();
    if url.is_empty() {
        return Err(invalid());
    }
    let (headers, body) = if rest.trim().is_empty() {
        (Vec::new(), "")
    } else if rest.starts_with("\r\n") || rest.starts_with('\n') {
        (Vec::new(), rest.trim_start_matches(['\r', '\n']))
    } else {
        split_head(rest)
    };
    let body = body.trim_end_matches(['\r', '\n']);
    Ok(Operation {
        method: method.to_ascii_uppercase(),
        url: url.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
        content_id: header(part_headers, "content-id").map(str::to_owned),
    })
}

/// Parses a `$batch` body.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Item>, DvError> {
    let content_type = content_type.unwrap_or_default();
    if !is_multipart(content_type) {
        return Err(DvError::batch(
            "The batch request must have a \"Content-Type\" header of \"multipart/mixed\" with a boundary.",
        ));
    }
    let boundary = boundary_of(content_type).ok_or_else(|| {
        DvError::batch("The batch request's \"Content-Type\" header has no boundary parameter.")
    })?;
    let text = String::from_utf8_lossy(body);
    let mut items = Vec::new();
    for part in split_parts(&text, &boundary)? {
        let (headers, content) = split_head(part);
        let part_type = header(&headers, "content-type").unwrap_or("application/http");
        if is_multipart(part_type) {
            let inner = boundary_of(part_type).ok_or_else(|| {
                DvError::batch("A change set's \"Content-Type\" header has no boundary parameter.")
            })?;
            let mut ops = Vec::new();
            for member in split_parts(content, &inner)? {
                let (member_headers, member_content) = split_head(member);
                if header(&member_headers, "content-type").is_some_and(is_multipart) {
                    return Err(DvError::batch(
                        "A change set cannot contain another change set.",
                    ));
                }
                ops.push(operation(&member_headers, member_content)?);
            }
            items.push(Item::ChangeSet(ops));
        } else {
            items.push(Item::Single(operation(&headers, content)?));
        }
    }
    let total: usize = items.iter().map(Item::len).sum();
    if total > MAX_REQUESTS {
        return Err(DvError::batch(format!(
            "The current batch message contains too many parts. Only batch messages with a maximum number of '{MAX_REQUESTS}' query operations, including changeset operations, are allowed."
        )));
    }
    Ok(items)
}

/// One answer as an `application/http` part.
fn push_part(out: &mut String, answer: &Answer, content_id: Option<&str>) {
    out.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        out.push_str(&format!("Content-ID: {id}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&format!(
        "HTTP/1.1 {} {}\r\n",
        answer.status.as_u16(),
        answer.status.canonical_reason().unwrap_or("")
    ));
    if !answer.is_success() {
        out.push_str(&format!("REQ_ID: {}\r\n", super::store::new_guid()));
    }
    if answer.body.is_some() {
        out.push_str(&format!("Content-Type: {JSON_TYPE}\r\n"));
    }
    out.push_str("OData-Version: 4.0\r\n");
    // A write's part names the row twice, as Dataverse's do.
    if let Some(url) = answer.header("OData-EntityId") {
        out.push_str(&format!("Location: {url}\r\n"));
    }
    for (name, value) in &answer.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&answer.body_text());
    out.push_str("\r\n");
}

/// The answer's body and its boundary (`batchresponse_<guid>`).
pub fn render(items: &[ItemAnswer]) -> (String, String) {
    let boundary = format!("batchresponse_{}", super::store::new_guid());
    let mut out = String::new();
    for item in items {
        out.push_str(&format!("--{boundary}\r\n"));
        match item {
            ItemAnswer::Single(answer, id) | ItemAnswer::Failed(answer, id) => {
                push_part(&mut out, answer, id.as_deref());
            }
            ItemAnswer::ChangeSet(answers) => {
                let inner = format!("changesetresponse_{}", super::store::new_guid());
                out.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary={inner}\r\n\r\n"
                ));
                for (answer, id) in answers {
                    out.push_str(&format!("--{inner}\r\n"));
                    push_part(&mut out, answer, id.as_deref());
                }
                out.push_str(&format!("--{inner}--\r\n"));
            }
        }
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    (boundary, out)
}

/// The status of an item's answer (a change set's: its first failure or
/// 200).
pub fn failed_status(item: &ItemAnswer) -> Option<StatusCode> {
    match item {
        ItemAnswer::Single(a, _) | ItemAnswer::Failed(a, _) => {
            (!a.is_success()).then_some(a.status)
        }
        ItemAnswer::ChangeSet(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "--batch_AAA123\r\n\
Content-Type: multipart/mixed; boundary=changeset_BBB456\r\n\
\r\n\
--changeset_BBB456\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding:binary\r\n\
Content-ID: 1\r\n\
\r\n\
POST https://org.crm.dynamics.com/api/data/v9.2/leads HTTP/1.1\r\n\
Content-Type: application/json;type=entry\r\n\
\r\n\
{\"lastname\":\"A\"}\r\n\
--changeset_BBB456\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding:binary\r\n\
Content-ID: 2\r\n\
\r\n\
PATCH leads(new_leadgateid='x') HTTP/1.1\r\n\
Content-Type: application/json\r\n\
If-Match: *\r\n\
\r\n\
{\"lastname\":\"B\"}\r\n\
--changeset_BBB456--\r\n\
\r\n\
--batch_AAA123\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding:binary\r\n\
\r\n\
GET /api/data/v9.2/leads?$select=lastname&$filter=lastname eq 'A B' HTTP/1.1\r\n\
Accept: application/json\r\n\
\r\n\
\r\n\
--batch_AAA123--\r\n";

    #[test]
    fn parses_change_sets_and_plain_parts() {
        let items = parse(
            Some("multipart/mixed; boundary=\"batch_AAA123\""),
            BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let Item::ChangeSet(ops) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].method, "POST");
        assert_eq!(
            ops[0].url,
            "https://org.crm.dynamics.com/api/data/v9.2/leads"
        );
        assert_eq!(ops[0].body, b"{\"lastname\":\"A\"}");
        assert_eq!(ops[0].content_id.as_deref(), Some("1"));
        assert_eq!(ops[1].header("if-match"), Some("*"));
        let Item::Single(get) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(get.method, "GET");
        assert_eq!(
            get.url,
            "/api/data/v9.2/leads?$select=lastname&$filter=lastname eq 'A B'"
        );
        assert!(get.body.is_empty());
        // LF-only line ends work too.
        let lf = BODY.replace("\r\n", "\n");
        assert_eq!(
            parse(Some("multipart/mixed;boundary=batch_AAA123"), lf.as_bytes()).unwrap(),
            items
        );
    }

    #[test]
    fn refuses_what_is_no_batch() {
        assert_eq!(
            parse(Some("application/json"), b"{}").unwrap_err().code,
            "0x0"
        );
        assert!(parse(Some("multipart/mixed"), b"").is_err());
        let open = BODY.replace("--batch_AAA123--\r\n", "");
        assert!(
            parse(
                Some("multipart/mixed; boundary=batch_AAA123"),
                open.as_bytes()
            )
            .is_err()
        );
        let mut many = String::new();
        for _ in 0..=MAX_REQUESTS {
            many.push_str(
                "--b\r\nContent-Type: application/http\r\n\r\nGET leads HTTP/1.1\r\n\r\n\r\n",
            );
        }
        many.push_str("--b--\r\n");
        let err = parse(Some("multipart/mixed; boundary=b"), many.as_bytes()).unwrap_err();
        assert!(
            err.message.contains("maximum number of '1000'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn renders_parts_in_order() {
        let created = Answer::empty(StatusCode::NO_CONTENT).with("OData-EntityId", "x/leads(1)");
        let failed = Answer::from(DvError::duplicate_detected());
        let (boundary, text) = render(&[
            ItemAnswer::ChangeSet(vec![(created.clone(), Some("1".into()))]),
            ItemAnswer::Failed(failed, Some("2".into())),
            ItemAnswer::Single(created, None),
        ]);
        assert!(boundary.starts_with("batchresponse_"));
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Type: multipart/mixed; boundary=changesetresponse_"
        )));
        assert!(text.contains("Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nLocation: x/leads(1)\r\nOData-EntityId: x/leads(1)\r\n\r\n\r\n"));
        assert!(text.contains("HTTP/1.1 500 Internal Server Error\r\nREQ_ID: "));
        assert!(text.contains("{\"error\":{\"code\":\"0x80040333\""));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}

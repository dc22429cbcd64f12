//! Data tables of the normalization rules. Changing any of them changes
//! what normalization produces: bump `RULES_VERSION` with it.
//! Domain tables are sorted (a test checks the order). Lookups go through
//! sets and maps built from the tables once.

use std::collections::HashMap;
use std::sync::LazyLock;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Legal-form suffixes, as lowercase words after punctuation folding
/// ("S.A." → `sa`, "Pty. Ltd." → `pty ltd`). Stripped from the end of a
/// company name repeatedly, so "GmbH & Co. KG" needs only its parts.
pub const LEGAL_SUFFIXES: &[&[&str]] = &[
    &["inc"],
    &["incorporated"],
    &["corp"],
    &["corporation"],
    &["co"],
    &["company"],
    &["cos"],
    &["llc"],
    &["l", "l", "c"],
    &["llp"],
    &["lp"],
    &["ltd"],
    &["limited"],
    &["plc"],
    &["pllc"],
    &["pc"],
    &["pty"],
    &["pvt"],
    &["private"],
    &["gmbh"],
    &["mbh"],
    &["ag"],
    &["kg"],
    &["kgaa"],
    &["ohg"],
    &["ug"],
    &["haftungsbeschränkt"],
    &["ev"],
    &["sa"],
    &["sas"],
    &["sarl"],
    &["sà", "rl"],
    &["sàrl"],
    &["srl"],
    &["spa"],
    &["sl"],
    &["slu"],
    &["sau"],
    &["sa", "de", "cv"],
    &["de", "cv"],
    &["ltda"],
    &["bv"],
    &["nv"],
    &["vof"],
    &["ab"],
    &["as"],
    &["asa"],
    &["aps"],
    &["oy"],
    &["oyj"],
    &["kk"],
    &["sp", "z", "oo"],
    &["spółka", "z", "oo"],
    &["sro"],
    &["as"],
    &["doo"],
    &["kft"],
    &["zrt"],
    &["bhd"],
    &["sdn", "bhd"],
    &["pte"],
    &["holdings"],
    &["group"],
];

/// Free consumer mail providers: their domain says nothing about a company.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "163.com",
    "aim.com",
    "aol.com",
    "bigpond.com",
    "btinternet.com",
    "comcast.net",
    "cox.net",
    "fastmail.com",
    "free.fr",
    "gmail.com",
    "gmx.at",
    "gmx.ch",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.es",
    "hotmail.fr",
    "hotmail.it",
    "icloud.com",
    "laposte.net",
    "libero.it",
    "live.co.uk",
    "live.com",
    "live.de",
    "live.fr",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.com",
    "outlook.de",
    "outlook.fr",
    "pm.me",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "rediffmail.com",
    "rocketmail.com",
    "sbcglobal.net",
    "seznam.cz",
    "sky.com",
    "t-online.de",
    "tutanota.com",
    "verizon.net",
    "virginmedia.com",
    "wanadoo.fr",
    "web.de",
    "yahoo.ca",
    "yahoo.co.in",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.com.au",
    "yahoo.com.br",
    "yahoo.de",
    "yahoo.es",
    "yahoo.fr",
    "yahoo.it",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

/// Disposable (throw-away) mail domains, the widely used ones.
pub const DISPOSABLE_DOMAINS: &[&str] = &[
    "10minutemail.com",
    "33mail.com",
    "discard.email",
    "dispostable.com",
    "emailondeck.com",
    "fakeinbox.com",
    "getairmail.com",
    "getnada.com",
    "guerrillamail.biz",
    "guerrillamail.com",
    "guerrillamail.de",
    "guerrillamail.info",
    "guerrillamail.net",
    "guerrillamail.org",
    "guerrillamailblock.com",
    "harakirimail.com",
    "incognitomail.org",
    "mailcatch.com",
    "maildrop.cc",
    "mailinator.com",
    "mailinator.net",
    "mailnesia.com",
    "mintemail.com",
    "moakt.com",
    "mohmal.com",
    "mytemp.email",
    "sharklasers.com",
    "spam4.me",
    "spamgourmet.com",
    "temp-mail.org",
    "tempail.com",
    "tempmail.com",
    "tempmail.net",
    "tempmailo.com",
    "tempr.email",
    "throwawaymail.com",
    "trashmail.com",
    "trashmail.de",
    "yopmail.com",
    "yopmail.fr",
    "yopmail.net",
];

/// Local parts that name a role or a shared inbox, not a person.
pub const ROLE_LOCAL_PARTS: &[&str] = &[
    "abuse",
    "accounting",
    "accounts",
    "admin",
    "administrator",
    "billing",
    "booking",
    "bookings",
    "careers",
    "contact",
    "enquiries",
    "enquiry",
    "hello",
    "help",
    "helpdesk",
    "hi",
    "hostmaster",
    "hr",
    "info",
    "inquiries",
    "jobs",
    "legal",
    "mail",
    "marketing",
    "media",
    "no-reply",
    "noc",
    "noreply",
    "office",
    "orders",
    "postmaster",
    "press",
    "privacy",
    "reception",
    "sales",
    "security",
    "service",
    "support",
    "team",
    "webmaster",
];

/// Misspelt consumer mail domains and what was meant.
pub const DOMAIN_TYPOS: &[(&str, &str)] = &[
    ("aol.co", "aol.com"),
    ("aol.con", "aol.com"),
    ("gail.com", "gmail.com"),
    ("gamil.com", "gmail.com"),
    ("gmai.com", "gmail.com"),
    ("gmail.cm", "gmail.com"),
    ("gmail.cmo", "gmail.com"),
    ("gmail.co", "gmail.com"),
    ("gmail.comm", "gmail.com"),
    ("gmail.con", "gmail.com"),
    ("gmail.om", "gmail.com"),
    ("gmail.vom", "gmail.com"),
    ("gmaill.com", "gmail.com"),
    ("gmal.com", "gmail.com"),
    ("gmali.com", "gmail.com"),
    ("gmial.com", "gmail.com"),
    ("gmil.com", "gmail.com"),
    ("gmsil.com", "gmail.com"),
    ("gnail.com", "gmail.com"),
    ("hitmail.com", "hotmail.com"),
    ("hormail.com", "hotmail.com"),
    ("hotamil.com", "hotmail.com"),
    ("hotmai.com", "hotmail.com"),
    ("hotmail.cm", "hotmail.com"),
    ("hotmail.cmo", "hotmail.com"),
    ("hotmail.co", "hotmail.com"),
    ("hotmail.con", "hotmail.com"),
    ("hotmal.com", "hotmail.com"),
    ("hotmali.com", "hotmail.com"),
    ("hotmial.com", "hotmail.com"),
    ("hotmil.com", "hotmail.com"),
    ("hotnail.com", "hotmail.com"),
    ("icloud.co", "icloud.com"),
    ("icloud.con", "icloud.com"),
    ("iclod.com", "icloud.com"),
    ("iclould.com", "icloud.com"),
    ("icoud.com", "icloud.com"),
    ("outlok.com", "outlook.com"),
    ("outlook.co", "outlook.com"),
    ("outlook.con", "outlook.com"),
    ("outloo.com", "outlook.com"),
    ("outloock.com", "outlook.com"),
    ("outlool.com", "outlook.com"),
    ("yaho.com", "yahoo.com"),
    ("yahoo.cm", "yahoo.com"),
    ("yahoo.cmo", "yahoo.com"),
    ("yahoo.co", "yahoo.com"),
    ("yahoo.con", "yahoo.com"),
    ("yahooo.com", "yahoo.com"),
    ("yahho.com", "yahoo.com"),
    ("yhaoo.com", "yahoo.com"),
    ("yhoo.com", "yahoo.com"),
];

/// Top-level-domain typos fixed on any domain: `.con`, `.cmo`, … → `.com`.
pub const TLD_TYPOS: &[(&str, &str)] = &[
    ("cmo", "com"),
    ("cim", "com"),
    ("comm", "com"),
    ("con", "com"),
    ("ocm", "com"),
    ("vom", "com"),
    ("xom", "com"),
    ("nte", "net"),
    ("ner", "net"),
    ("ogr", "org"),
    ("orgg", "org"),
];

/// Country names and common aliases (lowercase, without accents on the
/// ASCII side) → ISO 3166-1 alpha-2, beyond the official short names.
pub const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("america", "US"),
    ("britain", "GB"),
    ("côte d'ivoire", "CI"),
    ("czech republic", "CZ"),
    ("deutschland", "DE"),
    ("england", "GB"),
    ("españa", "ES"),
    ("espana", "ES"),
    ("great britain", "GB"),
    ("holland", "NL"),
    ("iran", "IR"),
    ("italia", "IT"),
    ("korea", "KR"),
    ("méxico", "MX"),
    ("nederland", "NL"),
    ("northern ireland", "GB"),
    ("österreich", "AT"),
    ("oesterreich", "AT"),
    ("russia", "RU"),
    ("schweiz", "CH"),
    ("scotland", "GB"),
    ("south korea", "KR"),
    ("suisse", "CH"),
    ("the netherlands", "NL"),
    ("turkey", "TR"),
    ("türkiye", "TR"),
    ("u.k.", "GB"),
    ("u.s.", "US"),
    ("u.s.a.", "US"),
    ("uae", "AE"),
    ("uk", "GB"),
    ("united kingdom", "GB"),
    ("united states", "US"),
    ("united states of america", "US"),
    ("usa", "US"),
    ("vietnam", "VN"),
    ("wales", "GB"),
];

/// [`DOMAIN_TYPOS`] by typo (the first entry of a typo wins).
static DOMAIN_TYPO_MAP: LazyLock<Map<&'static str, &'static str>> = LazyLock::new(|| {
    let mut m = Map::default();
    for (typo, fixed) in DOMAIN_TYPOS {
        m.entry(*typo).or_insert(*fixed);
    }
    m
});

/// The consumer domain a misspelt one stands for ([`DOMAIN_TYPOS`]).
pub fn domain_typo(domain: &str) -> Option<&'static str> {
    DOMAIN_TYPO_MAP.get(domain).copied()
}

/// The top-level domain a misspelt one stands for ([`TLD_TYPOS`]).
pub fn tld_typo(tld: &str) -> Option<&'static str> {
    // Eleven short entries: a scan beats hashing.
    TLD_TYPOS
        .iter()
        .find(|(typo, _)| *typo == tld)
        .map(|(_, fixed)| *fixed)
}

/// [`LEGAL_SUFFIXES`] by their last word, each list in table order (so the
/// first suffix of the table that ends a name is the first of its list).
pub static LEGAL_SUFFIXES_BY_LAST_WORD: LazyLock<Map<&'static str, Vec<&'static [&'static str]>>> =
    LazyLock::new(|| {
        let mut m: Map<&'static str, Vec<&'static [&'static str]>> = Map::default();
        for suffix in LEGAL_SUFFIXES {
            if let Some(last) = suffix.last() {
                m.entry(*last).or_default().push(*suffix);
            }
        }
        m
    });

/// A set of one of the tables above.
fn set(
    table: &'static [&'static str],
) -> std::collections::HashSet<&'static str, foldhash::fast::RandomState> {
    table.iter().copied().collect()
}

static ROLE_SET: LazyLock<std::collections::HashSet<&'static str, foldhash::fast::RandomState>> =
    LazyLock::new(|| set(ROLE_LOCAL_PARTS));
static DISPOSABLE_SET: LazyLock<
    std::collections::HashSet<&'static str, foldhash::fast::RandomState>,
> = LazyLock::new(|| set(DISPOSABLE_DOMAINS));
static FREE_MAIL_SET: LazyLock<
    std::collections::HashSet<&'static str, foldhash::fast::RandomState>,
> = LazyLock::new(|| set(FREE_MAIL_DOMAINS));

/// Whether `local` is one of [`ROLE_LOCAL_PARTS`].
pub fn is_role_local_part(local: &str) -> bool {
    ROLE_SET.contains(local)
}

/// Whether `domain` is one of [`DISPOSABLE_DOMAINS`].
pub fn is_disposable_domain(domain: &str) -> bool {
    DISPOSABLE_SET.contains(domain)
}

/// Whether `domain` is one of [`FREE_MAIL_DOMAINS`].
pub fn is_free_mail_domain(domain: &str) -> bool {
    FREE_MAIL_SET.contains(domain)
}

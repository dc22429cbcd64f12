//! A labelled corpus for dedupe: persons with a known identity, each
//! rendered as one or more leads with realistic noise (typos, swapped
//! names, nicknames, missing fields, reformatted phones, company suffixes,
//! other email addresses), plus namesakes (same name, other company) as
//! hard negatives. Deterministic for a seed. Also pairwise metrics.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Christopher",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Andrew",
    "Emily",
    "Joshua",
    "Donna",
    "Kenneth",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "Timothy",
    "Melissa",
    "Ronald",
    "Deborah",
    "Jason",
    "Stephanie",
    "Jeffrey",
    "Rebecca",
    "Ryan",
    "Laura",
    "Jacob",
    "Helen",
    "Gary",
    "Sharon",
    "Nicholas",
    "Cynthia",
    "Eric",
    "Kathleen",
    "Jonathan",
    "Amy",
    "Samuel",
    "Olivia",
    "Benjamin",
    "Emma",
    "Alexander",
    "Sophia",
    "Edward",
    "Isabelle",
    "Priya",
    "Wei",
    "Aisha",
    "Mohammed",
    "Sunita",
    "Nour",
    "Kenji",
    "Yuki",
    "Lars",
    "Ingrid",
    "Pierre",
    "Chloe",
    "Mateo",
    "Lucia",
    "Oluwaseun",
    "Chidi",
    "Fatima",
    "Omar",
    "Hannah",
    "Victoria",
    "Abigail",
    "Katherine",
    "Gregory",
    "Peter",
    "Eleanor",
    "Jessie",
    "Niamh",
    "Siobhan",
    "Dmitri",
    "Anastasia",
    "Rahul",
];

const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Cunningham",
    "O'Neill",
    "Suzuki",
    "Tanaka",
    "Müller",
    "Schmidt",
    "Fischer",
    "Dubois",
    "Lefebvre",
    "Rossi",
    "Bianchi",
    "Kowalski",
    "Nowak",
    "Ivanov",
    "Petrov",
    "Patel",
    "Sharma",
    "Singh",
    "Khan",
    "Ahmed",
    "Okafor",
    "Adeyemi",
    "Mensah",
    "Hansen",
    "Johansson",
    "Larsen",
    "Murphy",
    "Kelly",
    "Byrne",
    "Walsh",
    "MacDonald",
    "Fraser",
    "Reid",
    "Stewart",
    "Morrison",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Kim",
    "Park",
    "Choi",
    "Silva",
    "Santos",
    "Oliveira",
    "Costa",
    "Pereira",
    "Ferreira",
    "Van der Berg",
    "De Vries",
    "Jansen",
    "Bakker",
    "Visser",
    "Mason",
    "Hughes",
    "Evans",
];

const COMPANY_A: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vandelay",
    "Maple & Main",
    "Clydeside",
    "Camden Print",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Blue Yonder",
    "Litware",
    "Proseware",
    "Adventure Works",
    "Lucerne",
    "Margie",
    "Coho",
    "Alpine",
    "Fourth Coffee",
    "Trey",
    "Woodgrove",
    "Humongous",
    "Graphic Design",
    "Wide World",
    "Bellows",
    "Cobalt",
    "Granite",
    "Harbor",
    "Iron Oak",
    "Juniper",
    "Keystone",
    "Lakeside",
    "Meridian",
    "Nimbus",
    "Orchard",
    "Pinnacle",
    "Quarry",
    "Redwood",
    "Summit",
    "Tidewater",
];

const COMPANY_B: &[&str] = &[
    "Logistics",
    "Shipping",
    "Legal",
    "Analytics",
    "Foods",
    "Systems",
    "Media",
    "Labs",
    "Partners",
    "Consulting",
    "Holdings",
    "Energy",
    "Dental",
    "Robotics",
    "Works",
    "Studio",
];

const SUFFIX: &[&str] = &[
    "Inc", "Inc.", ", Inc.", "LLC", "Ltd", "Limited", "GmbH", "Corp", "",
];

const AREA: &[&str] = &[
    "212", "312", "415", "617", "206", "303", "512", "404", "646", "718",
];

const CITY: &[&str] = &[
    "New York",
    "Chicago",
    "San Francisco",
    "Boston",
    "Seattle",
    "Denver",
    "Austin",
    "Atlanta",
];

const NICK: &[(&str, &str)] = &[
    ("Robert", "Bob"),
    ("William", "Bill"),
    ("James", "Jim"),
    ("Michael", "Mike"),
    ("Thomas", "Tom"),
    ("Christopher", "Chris"),
    ("Matthew", "Matt"),
    ("Daniel", "Dan"),
    ("Joseph", "Joe"),
    ("Anthony", "Tony"),
    ("Andrew", "Andy"),
    ("Alexander", "Alex"),
    ("Samuel", "Sam"),
    ("Benjamin", "Ben"),
    ("Nicholas", "Nick"),
    ("Edward", "Ed"),
    ("Richard", "Rick"),
    ("Jeffrey", "Jeff"),
    ("Jonathan", "Jon"),
    ("Katherine", "Kate"),
    ("Elizabeth", "Liz"),
    ("Jennifer", "Jenny"),
    ("Susan", "Sue"),
    ("Margaret", "Maggie"),
    ("Rebecca", "Becky"),
    ("Amanda", "Mandy"),
    ("Patricia", "Pat"),
    ("Deborah", "Debbie"),
    ("Jessica", "Jess"),
    ("Victoria", "Vicky"),
    ("Abigail", "Abby"),
    ("Gregory", "Greg"),
    ("Peter", "Pete"),
    ("Steven", "Steve"),
    ("Eleanor", "Ellie"),
];

/// A person's true identity.
#[derive(Clone, Debug)]
struct Person {
    first: String,
    last: String,
    company: String,
    domain: String,
    phone: String,
    city: String,
    personal_email: String,
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(super::phonetic::fold)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

fn person(rng: &mut Rng, i: usize, namesake_of: Option<&Person>) -> Person {
    let (first, last) = match namesake_of {
        Some(p) => (p.first.clone(), p.last.clone()),
        None => (rng.pick(FIRST).to_string(), rng.pick(LAST).to_string()),
    };
    let company = format!("{} {}", rng.pick(COMPANY_A), rng.pick(COMPANY_B));
    let domain = format!("{}.com", ascii_lower(&company));
    let phone = format!(
        "{}{}{:02}{:04}",
        rng.pick(AREA),
        2 + rng.below(8),
        rng.below(100),
        rng.below(10_000)
    );
    let personal_email = format!(
        "{}.{}{}@{}",
        ascii_lower(&first),
        ascii_lower(&last),
        i % 97,
        rng.pick(&["gmail.com", "outlook.com", "yahoo.com"])
    );
    Person {
        first,
        last,
        company,
        domain,
        phone,
        city: rng.pick(CITY).to_string(),
        personal_email,
    }
}

fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 4 {
        return s.to_string();
    }
    // Keep the first letter: people rarely get it wrong.
    let i = 1 + rng.below(c.len() - 1);
    match rng.below(3) {
        0 => {
            c.remove(i);
        }
        1 if i + 1 < c.len() => c.swap(i, i + 1),
        _ => c[i] = (b'a' + rng.below(26) as u8) as char,
    }
    c.into_iter().collect()
}

fn case_noise(rng: &mut Rng, s: &str) -> String {
    match rng.below(6) {
        0 => s.to_uppercase(),
        1 => s.to_lowercase(),
        2 => format!("  {s} "),
        _ => s.to_string(),
    }
}

fn render_phone(rng: &mut Rng, p: &str) -> String {
    let (a, b, c) = (&p[..3], &p[3..6], &p[6..]);
    match rng.below(5) {
        0 => format!("+1{p}"),
        1 => format!("({a}) {b}-{c}"),
        2 => format!("{a}.{b}.{c}"),
        3 => format!("+1 {a} {b} {c}"),
        _ => format!("{a}-{b}-{c}"),
    }
}

fn render(rng: &mut Rng, p: &Person, id: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    let mut first = p.first.clone();
    let mut last = p.last.clone();
    if rng.chance(0.12)
        && let Some((_, n)) = NICK.iter().find(|(f, _)| *f == first)
    {
        first = n.to_string();
    }
    if rng.chance(0.15) {
        first = typo(rng, &first);
    } else if rng.chance(0.15) {
        last = typo(rng, &last);
    }
    if rng.chance(0.06) {
        std::mem::swap(&mut first, &mut last);
    }
    if rng.chance(0.1) {
        m.insert(
            "name".into(),
            json!(case_noise(rng, &format!("{first} {last}"))),
        );
    } else {
        if rng.chance(0.97) {
            m.insert("first_name".into(), json!(case_noise(rng, &first)));
        }
        m.insert("last_name".into(), json!(case_noise(rng, &last)));
    }
    let f = ascii_lower(&p.first);
    let l = ascii_lower(&p.last);
    if rng.chance(0.7) {
        let email = match rng.below(8) {
            0..=3 => format!("{f}.{l}@{}", p.domain),
            4 => format!("{}{l}@{}", &f[..1], p.domain),
            5 => format!("{f}@{}", p.domain),
            6 => p.personal_email.clone(),
            _ => format!("{}.{l}@{}", typo(rng, &f), p.domain),
        };
        m.insert("email".into(), json!(case_noise(rng, &email)));
    }
    if rng.chance(0.55) {
        m.insert("phone".into(), json!(render_phone(rng, &p.phone)));
    }
    if rng.chance(0.85) {
        let suffix = rng.pick(SUFFIX);
        let sep = if suffix.starts_with(',') || suffix.is_empty() {
            ""
        } else {
            " "
        };
        m.insert(
            "company".into(),
            json!(case_noise(rng, &format!("{}{sep}{suffix}", p.company))),
        );
    }
    if rng.chance(0.4) {
        m.insert("city".into(), json!(p.city));
    }
    if rng.chance(0.3) {
        m.insert(
            "website".into(),
            json!(format!("https://www.{}/", p.domain)),
        );
    }
    if rng.chance(0.3) {
        m.insert(
            "title".into(),
            json!(rng.pick(&["CTO", "Head of Sales", "Buyer"])),
        );
    }
    Value::Object(m)
}

/// The leads of [`generate`] ready for `Deduper::decide`: (`prefix` + id,
/// fingerprints, features), normalized as US leads without acceptance
/// rules.
pub fn prepared(
    seed: u64,
    persons: usize,
    prefix: &str,
    cfg: &super::DedupeConfig,
) -> Vec<(String, Vec<String>, super::Features)> {
    let opts =
        crate::pipeline::normalize::NormalizeOptions::with_region(phonenumber::country::Id::US)
            .without_acceptance();
    generate(seed, persons)
        .into_iter()
        .map(|(mut v, _)| {
            let id = v
                .as_object_mut()
                .and_then(|o| o.remove("id"))
                .and_then(|i| i.as_str().map(str::to_string))
                .unwrap_or_default();
            let lead = crate::pipeline::normalize::normalize(&v, &opts).unwrap_or_default();
            let features = super::Features::from_lead(&lead, cfg, 0);
            (
                format!("{prefix}{id}"),
                super::fingerprints(&lead),
                features,
            )
        })
        .collect()
}

/// `persons` identities rendered as 1–5 leads each (about 2.2 on average),
/// shuffled. Returns (lead with an `id`, true person).
pub fn generate(seed: u64, persons: usize) -> Vec<(Value, String)> {
    let mut rng = Rng::new(seed);
    let mut people: Vec<Person> = Vec::with_capacity(persons);
    for i in 0..persons {
        // About 4% are namesakes of an earlier person (another company).
        let namesake = if i > 10 && rng.chance(0.04) {
            Some(people[rng.below(people.len())].clone())
        } else {
            None
        };
        let p = person(&mut rng, i, namesake.as_ref());
        people.push(p);
    }
    let mut out = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let n = match rng.below(10) {
            0..=3 => 1,
            4..=6 => 2,
            7 => 3,
            8 => 4,
            _ => 5,
        };
        for _ in 0..n {
            let id = format!("L{:07}", out.len());
            out.push((render(&mut rng, p, &id), format!("P{i:06}")));
        }
    }
    // Fisher-Yates shuffle.
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// Pairwise precision, recall and F1 of `predicted` clusters against
/// `truth` (both: one label per item, same order).
pub fn pairwise(predicted: &[String], truth: &[String]) -> (f64, f64, f64) {
    fn pairs(n: u64) -> u64 {
        n * n.saturating_sub(1) / 2
    }
    let mut cells: HashMap<(&str, &str), u64> = HashMap::new();
    let mut pc: HashMap<&str, u64> = HashMap::new();
    let mut tc: HashMap<&str, u64> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        *cells.entry((p, t)).or_default() += 1;
        *pc.entry(p).or_default() += 1;
        *tc.entry(t).or_default() += 1;
    }
    let tp: u64 = cells.values().map(|&n| pairs(n)).sum();
    let pp: u64 = pc.values().map(|&n| pairs(n)).sum();
    let tt: u64 = tc.values().map(|&n| pairs(n)).sum();
    let precision = if pp == 0 { 1.0 } else { tp as f64 / pp as f64 };
    let recall = if tt == 0 { 1.0 } else { tp as f64 / tt as f64 };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let a = generate(7, 50);
        let b = generate(7, 50);
        assert_eq!(a, b);
        assert!(a.len() > 60);
    }

    fn debug_pairs(leads: &[Value], truth: &[String], predicted: &[String]) {
        use crate::pipeline::dedupe::{DedupeConfig, Features};
        let cfg = DedupeConfig::default();
        let opts =
            crate::pipeline::normalize::NormalizeOptions::with_region(phonenumber::country::Id::US)
                .without_acceptance();
        let feats: Vec<Features> = leads
            .iter()
            .map(|l| {
                let n = crate::pipeline::normalize::normalize(l, &opts).unwrap_or_default();
                Features::from_lead(&n, &cfg, 0)
            })
            .collect();
        let (mut fn_, mut fp) = (0, 0);
        for i in 0..leads.len() {
            for j in 0..i {
                let same_t = truth[i] == truth[j];
                let same_p = predicted[i] == predicted[j];
                if same_t != same_p && ((same_t && fn_ < 25) || (!same_t && fp < 15)) {
                    if same_t {
                        fn_ += 1
                    } else {
                        fp += 1
                    }
                    let mut e = String::new();
                    let s = super::super::fuzzy::score(
                        &feats[i],
                        &feats[j],
                        &cfg.weights,
                        Some(&mut e),
                    );
                    eprintln!(
                        "{} {s:.2} [{e}]\n   {}\n   {}",
                        if same_t { "MISS" } else { "FALSE" },
                        leads[i],
                        leads[j]
                    );
                }
            }
        }
    }

    #[test]
    fn pairwise_metrics() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (p, r, f) = pairwise(&s(&["a", "a", "b"]), &s(&["x", "x", "x"]));
        assert_eq!((p, r), (1.0, 1.0 / 3.0));
        assert!(f > 0.49 && f < 0.51);
    }

    #[test]
    fn precision_and_recall_on_the_generated_corpus() {
        let corpus = generate(20_241_124, 3000);
        let leads: Vec<Value> = corpus.iter().map(|(v, _)| v.clone()).collect();
        let truth: Vec<String> = corpus.iter().map(|(_, t)| t.clone()).collect();
        let out = crate::cli::dedupe::dedupe_values(&leads, &super::super::DedupeConfig::default());
        let predicted: Vec<String> = out.iter().map(|o| o.cluster_id.clone()).collect();
        let (p, r, f1) = pairwise(&predicted, &truth);
        eprintln!(
            "generated corpus: {} leads, precision {p:.4} recall {r:.4} F1 {f1:.4}",
            leads.len()
        );
        if std::env::var_os("DEDUPE_DEBUG").is_some() {
            debug_pairs(&leads, &truth, &predicted);
        }
        assert!(p >= 0.98, "precision {p}");
        assert!(r >= 0.90, "recall {r}");
    }
}

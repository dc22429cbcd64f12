//! Normalization throughput on one core: the 1,000 messy demo leads (mixed
//! phone formats, case and whitespace noise, IDN domains, invalid rows)
//! plus harder hand-written ones (display names, vanity numbers,
//! extensions, "Last, First", legal suffixes, typos).
//!
//! `cargo bench -p leadgate --bench normalize`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadgate::pipeline::normalize::{Acceptance, NormalizeOptions, normalize};
use serde_json::{Value, json};

fn leads() -> Vec<Value> {
    let mut leads: Vec<Value> = include_str!("../demo/leads.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|mut v| v.get_mut("lead").map(Value::take))
        .collect();
    let hard = [
        json!({"name": "Dr. MARY-ANN o'neill-mcdonald Jr.", "email": "\"Mary\" <Mary.ONeill@GMIAL.CON>", "phone": "+1 (800) FLOWERS ext. 12", "company": "O'Neill & Sons, L.L.C.", "website": "https://www.oneill-sons.com/about", "country": "U.S.A.", "postcode": "2134"}),
        json!({"name": "van der Berg, Jan Pieter", "email": "mailto:JAN@Müller-Bau.DE?subject=hi", "phone": "0044 (0)20 3595 3876", "company": "Müller Bau GmbH & Co. KG", "country": "Deutschland", "postcode": "10115", "city": "BERLIN"}),
        json!({"name": "  ", "email": "info@acme.cmo", "phone": "tel: 06 12 34 56 78", "company": "ACME S.A.", "country": "France", "postcode": "75001"}),
        json!({"first_name": "SUNITA", "last_name": "Suzuki", "email": "n/a", "phone": "12345", "country": "Narnia"}),
    ];
    for _ in 0..25 {
        leads.extend(hard.iter().cloned());
    }
    leads
}

fn bench(c: &mut Criterion) {
    let leads = leads();
    let options = NormalizeOptions {
        default_region: Some("US".parse().unwrap()),
        acceptance: Acceptance {
            require_any: vec![vec!["email".into(), "phone".into()]],
        },
        email_typos: Default::default(),
    };
    // The phone library's first call loads its metadata (~85 ms).
    let _ = normalize(&leads[0], &options);
    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(leads.len() as u64));
    group.bench_function("messy_mix", |b| {
        b.iter(|| {
            for lead in &leads {
                let _ = black_box(normalize(black_box(lead), &options));
            }
        })
    });
    for field in [
        "email",
        "phone",
        "name",
        "first_name",
        "company",
        "country",
        "postcode",
        "website",
    ] {
        let only: Vec<Value> = leads
            .iter()
            .filter_map(|l| l.get(field).map(|v| json!({ field: v })))
            .collect();
        group.throughput(Throughput::Elements(only.len() as u64));
        group.bench_function(format!("only_{field}"), |b| {
            b.iter(|| {
                for lead in &only {
                    let _ = black_box(normalize(black_box(lead), &options));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

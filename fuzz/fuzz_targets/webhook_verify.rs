//! The Rust CRM adapters' webhook verifiers on arbitrary requests (see
//! `tests/webhook-fuzz`): no panic, and no forged request let in.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = leadgate_webhook_fuzz::run(data);
});

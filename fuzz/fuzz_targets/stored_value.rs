#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leadgate::fuzz::stored_value(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revcache_core::fuzzing::check_record(data));

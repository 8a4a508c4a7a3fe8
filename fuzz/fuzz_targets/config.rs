#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revcache::fuzzing::check_config(data));

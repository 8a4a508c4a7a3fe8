#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revcache_shared::fuzzing::check_shared_codec(data));

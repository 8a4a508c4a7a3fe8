#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revcache_http::fuzzing::check_admin_query(data));

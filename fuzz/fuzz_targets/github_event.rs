#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revcache_http::fuzzing::check_github_event(data));

#![no_main]
// Invariants live in `clb::fuzzing::api_query`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::api_query(data));

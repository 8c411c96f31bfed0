#![no_main]
// Request head parse + rewrite; the invariants live in `clb::fuzzing`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::request_head(data));

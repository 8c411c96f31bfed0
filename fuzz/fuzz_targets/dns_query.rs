#![no_main]
// Invariants live in `clb::fuzzing::dns_query`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::dns_query(data));

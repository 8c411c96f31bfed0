#![no_main]
// Invariants live in `clb::fuzzing::flag_specs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::flag_specs(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| payhook_fuzz::pinddpay(data));

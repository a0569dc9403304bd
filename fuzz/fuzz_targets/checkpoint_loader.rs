//! Any bytes as a checkpoint: loading returns `Ok` or an error, never panics; whatever
//! loads serialises back to a checkpoint that loads to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lstm_gpu::model::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = Checkpoint::from_bytes(data) {
        let bytes = ck.to_bytes().expect("a loaded checkpoint serialises");
        let back = Checkpoint::from_bytes(&bytes).expect("and loads again");
        assert_eq!(back.config, ck.config);
        assert_eq!(back.vocab, ck.vocab);
    }
});

//! Arbitrary bytes as a container file (even selector byte), or as a safetensors file to compress
//! (odd): opening, listing, restoring and reading single tensors return typed errors or the
//! right bytes, never panic; what compresses restores bit for bit. No size cap: memory is bounded
//! by the format (a batch of segments), and libFuzzer's -rss_limit_mb catches any allocation that
//! follows a claim instead of the data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shuff_container::{compress, Coding, Container};
use std::io::Write;

/// Counts and hashes what it is given, so files that legitimately restore to gigabytes (constant
/// tensors: 64 KiB per 2 bytes) are checked without holding them.
struct Sink(u64, crc32fast::Hasher);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        self.1.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Ok(c) = Container::open(body) else { return };
        let _ = c.stored_tensors();
        let Ok(sink) = c.restore_to(Sink(0, crc32fast::Hasher::new()), &|_| ()) else { return };
        assert_eq!(sink.0, c.restored_len(), "a restore that succeeds writes the announced length");
        if c.restored_len() <= 16 << 20 {
            let whole = c.restore_to(Vec::new(), &|_| ()).expect("restored once, restores again");
            for t in c.tensors() {
                let (_, bytes) = c.tensor(&t.name).expect("a restorable file reads per tensor");
                assert!(bytes[..] == whole[t.start as usize..t.end as usize]);
            }
        }
    } else if let Ok((packed, _)) = compress(body, Coding::Trained { name: "fuzz", families: true }, Vec::new(), &|_| ()) {
        let c = Container::open(&packed[..]).expect("our own output opens");
        let back = c.restore_to(Vec::new(), &|_| ()).expect("our own output restores");
        assert!(back == body, "compress/restore is not the identity");
    }
});
